"""Render the plan through the Jinja templates into checked Python source.

Imports are derived from the rendered code itself (only what is used is imported), and the result
is `ast.parse`d before anyone can write it.
"""

from __future__ import annotations

import ast
from functools import lru_cache

import jinja2

from specforge.codegen.paths import templates_dir
from specforge.codegen.plan import Plan

# name used in generated code -> the import that provides it (stdlib first, then third party)
STDLIB_IMPORTS = {
    "argparse": "import argparse",
    "copy": "import copy",
    "csv": "import csv",
    "hashlib": "import hashlib",
    "importlib": "import importlib.util",
    "inspect": "import inspect",
    "json": "import json",
    "os": "import os",
    "shutil": "import shutil",
    "sys": "import sys",
    "time": "import time",
    "Path": "from pathlib import Path",
}
THIRD_PARTY_IMPORTS = {
    "huggingface_hub": ("huggingface_hub", None),
    "torch": ("torch", None),
    "Dataset": ("datasets", "Dataset"),
    "load_dataset": ("datasets", "load_dataset"),
    "load_from_disk": ("datasets", "load_from_disk"),
    "LoraConfig": ("peft", "LoraConfig"),
    "PeftModel": ("peft", "PeftModel"),
    "get_peft_model": ("peft", "get_peft_model"),
    "prepare_model_for_kbit_training": ("peft", "prepare_model_for_kbit_training"),
    "TrainableTokensWrapper": ("peft.utils.other", "TrainableTokensWrapper"),
    "AutoModelForCausalLM": ("transformers", "AutoModelForCausalLM"),
    "AutoTokenizer": ("transformers", "AutoTokenizer"),
    "BitsAndBytesConfig": ("transformers", "BitsAndBytesConfig"),
    "TrainerCallback": ("transformers", "TrainerCallback"),
    "set_seed": ("transformers", "set_seed"),
    "SFTConfig": ("trl", "SFTConfig"),
    "SFTTrainer": ("trl", "SFTTrainer"),
}
LINE_LIMIT = 88
IMPORTS_MARKER = "# specforge: imports go here"


class RenderError(Exception):
    pass


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _used_names(source: str) -> set[str]:
    defined, names = set(), set()
    for node in ast.walk(ast.parse(source)):  # one walk: this is most of compile's time
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
    return names - defined


def _from_import(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= LINE_LIMIT:
        return line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def import_lines(source: str) -> list[str]:
    """The import block a rendered body needs: stdlib, blank line, third party (isort order)."""
    used = _used_names(source)
    stdlib = sorted(
        (line for name, line in STDLIB_IMPORTS.items() if name in used),
        key=lambda line: (line.startswith("from"), line.split()[1].lower()),
    )
    modules: dict[str, list[str]] = {}
    plain: list[str] = []
    for name, (module, member) in THIRD_PARTY_IMPORTS.items():
        if name in used:
            if member is None:
                plain.append(module)
            else:
                modules.setdefault(module, []).append(member)
    third = [f"import {m}" for m in sorted(plain)] + [
        _from_import(m, sorted(names, key=lambda n: (not n[0].isupper(), n.lower())))
        for m, names in sorted(modules.items())
    ]
    return stdlib + ([""] if stdlib and third else []) + third


def render_script(template: str, plan: Plan) -> str:
    """Render one script: body first, then its exact imports; the result must parse."""
    script = "train" if template.startswith("train") else "infer"
    # Render once with a marker where the imports go, then fill in exactly what the body uses.
    draft = (
        environment()
        .get_template(template)
        .render(plan=plan, script=script, **{f"{script}_imports": [IMPORTS_MARKER]})
    )
    try:
        lines = import_lines(draft.replace(IMPORTS_MARKER, "", 1))
    except SyntaxError as err:
        raise RenderError(f"{template} rendered invalid Python: {err}") from err
    source = draft.replace(IMPORTS_MARKER, "\n".join(lines), 1)
    source = "\n".join(line.rstrip() for line in source.splitlines()) + "\n"
    try:
        ast.parse(source)
    except SyntaxError as err:
        raise RenderError(f"{template} rendered invalid Python: {err}") from err
    return source
