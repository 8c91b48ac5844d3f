"""A finished run, ready to answer: its spec, its own compiled infer.py imported as a module
(the prompt function, stop token and decoding settings evaluation used), and the model in one of
three forms: the adapter on its base as infer.py loads it, the merged export folder, or the GGUF
export in llama.cpp. Nothing is re-implemented that infer.py already says, so a served answer
is the answer evaluation scored.
"""

from __future__ import annotations

import importlib.util
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from specforge.core.files import file_sha256
from specforge.modelinfo.gguf_runtime import load_llama
from specforge.modelinfo.prepare import prepare_model
from specforge.runs.runner import base_evaluation
from specforge.serve.engine import Engine, LlamaCppEngine, TransformersEngine
from specforge.spec.models import Spec

FORMATS = ("adapter", "merged", "gguf")
GGUF_CONTEXT = 8192  # llama.cpp's KV cache is sized for this many tokens at most


class ServeError(Exception):
    """The run cannot be served as asked (exit 1 with this message, no traceback)."""


@dataclass
class ServedRun:
    run_dir: Path
    record: dict
    spec: Spec
    infer: ModuleType  # the run's own infer.py
    tokenizer: Any = field(default=None, repr=False)  # set by load(); chat prompts need it

    @property
    def model_id(self) -> str:
        """The name clients pass as `model`: the spec's name."""
        return self.spec.name

    @property
    def conversation(self) -> bool:
        """A conversation spec (a column of chat turns), as opposed to a prompt template."""
        return hasattr(self.infer, "CONVERSATION_COLUMN")

    @property
    def fields(self) -> list[str]:
        """The prompt template's fields, in order; [] for a conversation spec."""
        if self.conversation:
            return []
        if hasattr(self.infer, "PROMPT_FIELDS"):
            return list(self.infer.PROMPT_FIELDS)
        names = string.Formatter().parse(self.infer.PROMPT_TEMPLATE)
        return list(dict.fromkeys(name for _, name, _, _ in names if name))

    @property
    def generation(self) -> dict:
        """infer.py's decoding settings (the spec's inference section)."""
        return dict(self.infer.GENERATION)

    def template_prompt(self, values: dict[str, str]) -> str:
        """infer.py's prompt for a row holding these field values."""
        if self.conversation:
            raise ValueError("a conversation spec has no template fields: send chat messages")
        if missing := [name for name in self.fields if name not in values]:
            raise ValueError(f"missing prompt fields: {', '.join(missing)} (needs {self.fields})")
        if _takes_tokenizer(self.infer.build_prompt):
            return self.infer.build_prompt(values, self.tokenizer)
        return self.infer.build_prompt(values)

    def chat_stop_ids(self) -> list[int]:
        """Stop tokens a chat prompt adds: the chat template's end of turn, when the spec's own
        stop token is another (a template spec answering through the model's chat template)."""
        if self.conversation or self.tokenizer is None or self.tokenizer.eos_token_id is None:
            return []
        return [int(self.tokenizer.eos_token_id)]

    def conversation_prompt(self, messages: list[dict]) -> str:
        """infer.py's prompt for a conversation (a conversation spec: its own build_prompt over a
        row in the data's role names; else the tokenizer's chat template)."""
        if not self.conversation:
            if not getattr(self.tokenizer, "chat_template", None):
                raise ValueError(
                    "this model's tokenizer has no chat template: use /v1/completions "
                    f"with the prompt's fields ({', '.join(self.fields)})"
                )
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        infer = self.infer
        names = {role: name for name, role in infer.ROLES.items()}
        turns = []
        for message in [*messages, {"role": "assistant", "content": ""}]:
            if message["role"] not in names:
                raise ValueError(f"role {message['role']!r} is not one of {sorted(names)}")
            turns.append(
                {infer.ROLE_KEY: names[message["role"]], infer.CONTENT_KEY: message["content"]}
            )
        # build_prompt answers the last turn afresh: an empty assistant turn stands for it
        return infer.build_prompt({infer.CONVERSATION_COLUMN: turns}, self.tokenizer)


def _takes_tokenizer(function) -> bool:
    return function.__code__.co_argcount == 2


def open_run(run_dir: Path) -> ServedRun:
    """The succeeded run in run_dir with its own infer.py imported (checked against run.json's
    sha256: a changed script would not answer as evaluation did)."""
    run_dir = latest_run(run_dir)
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    if record.get("status") != "succeeded":
        raise ServeError(
            f"{run_dir} has status {record.get('status')!r}; only a succeeded run can be served"
        )
    spec = Spec.model_validate(record["spec"]["resolved"])
    script = _script(run_dir, record)
    name = f"specforge_serve_infer_{abs(hash(script.resolve()))}"
    module_spec = importlib.util.spec_from_file_location(name, script)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return ServedRun(run_dir, record, spec, module)


def latest_run(folder: Path) -> Path:
    """A run folder as given, or for a spec's folder (runs/<name>) its latest succeeded run."""
    if (folder / "run.json").is_file():
        return folder
    runs = sorted(p.parent for p in folder.glob("*/run.json"))
    done = [
        p for p in runs if json.loads((p / "run.json").read_text()).get("status") == "succeeded"
    ]
    if not done:
        raise ServeError(f"{folder}: no run folder (no run.json there, nor a succeeded run in it)")
    return done[-1]


def _script(run_dir: Path, record: dict) -> Path:
    """The infer.py that evaluated the run: run.json names its folder, relative to the project
    root the run started in (the working directory, or the folder above runs/<name>/<id>)."""
    folder = Path(record["scripts"]["dir"])
    candidates = [folder, run_dir.resolve().parents[2] / folder]
    script = next((c / "infer.py" for c in candidates if (c / "infer.py").is_file()), None)
    if script is None:
        raise ServeError(f"{folder / 'infer.py'}, the script that evaluated {run_dir}, is gone")
    expected = record["scripts"]["sha256"].get("infer.py")
    if expected and file_sha256(script) != expected:
        raise ServeError(
            f"{script} changed since {run_dir} ran (its sha256 is not the one run.json records): "
            "serving it would not answer as evaluation did; restore it (git) or run the spec again"
        )
    return script


def load(served: ServedRun, fmt: str = "adapter", *, base: bool = False) -> Engine:
    """The model in the form asked for, on the device infer.py would use."""
    if fmt not in FORMATS:
        raise ServeError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if base and fmt != "adapter":
        raise ServeError(
            "--base answers with the base (or parent) model: it needs --format adapter"
        )
    if fmt == "gguf":
        return _load_gguf(served)
    if fmt == "merged":
        model, tokenizer = _load_merged(served)
    else:
        prepare_model(served.spec)  # the GGUF base's plain folder: a hash check when it is there
        try:
            model, tokenizer = served.infer.load(_model_folder(served, base))
        except SystemExit as err:  # infer.py reports a missing model folder or token mismatch
            raise ServeError(f"infer.py could not load {served.run_dir}: {err}") from None
        except OSError as err:  # a base model folder that is gone, or not downloadable offline
            raise ServeError(
                f"infer.py could not load the model of {served.run_dir}: {err}"
            ) from None
    served.tokenizer = tokenizer
    return TransformersEngine(
        model,
        tokenizer,
        stop_ids=[_stop_id(served, tokenizer)],
        add_special_tokens=not served.conversation,  # as infer.py's answer() encodes
        defaults=served.generation,
    )


def _model_folder(served: ServedRun, base: bool) -> Path | None:
    """What infer.py's load() takes: the run folder, or for --base what evaluation compared the
    run with (None: the base model; a folder: the parent run)."""
    if not base:
        return served.run_dir
    flags, _ = base_evaluation(served.spec, served.record.get("parent"))
    return Path(flags[1]) if flags[0] == "--run-dir" else None


def _stop_id(served: ServedRun, tokenizer) -> int:
    """infer.py's stop token: the spec's (prompt.completion), else the tokenizer's eos (TRL ended
    each training completion with it; a conversation's chat template ends its turns with it)."""
    stop = None if served.conversation else getattr(served.infer, "STOP_TOKEN", None)
    if stop is None:
        return int(tokenizer.eos_token_id)
    return int(tokenizer.convert_tokens_to_ids(stop))


def _export_folder(served: ServedRun, fmt: str) -> Path:
    folder = served.run_dir / "export" / fmt
    if not folder.is_dir():
        raise ServeError(
            f"{folder} is missing: run `specforge export {served.run_dir} --format {fmt}` first"
        )
    return folder


def _load_merged(served: ServedRun):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _export_folder(served, "merged")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        dtype=served.infer.DTYPE,
        device_map="cuda" if torch.cuda.is_available() else "cpu",  # as infer.py places it
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def _load_gguf(served: ServedRun) -> Engine:
    from transformers import AutoTokenizer

    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise ServeError(
            "--format gguf needs llama-cpp-python: pip install -c constraints.txt -e '.[export]'"
        ) from None
    folder = _export_folder(served, "gguf")
    files = sorted(folder.glob("*-Q8_0.gguf")) or sorted(folder.glob("*.gguf"))
    if not files:
        raise ServeError(f"{folder} holds no .gguf file: export it again")
    saved = served.run_dir / ("model" if served.spec.lora is None else "adapter")
    served.tokenizer = AutoTokenizer.from_pretrained(saved)  # for chat templates
    llm = load_llama(files[0], GGUF_CONTEXT)
    return LlamaCppEngine(llm, add_bos=not served.conversation, defaults=served.generation)
