"""Hostile and malformed input: arbitrary YAML text and arbitrary values in every field give
diagnostics or a valid spec, never a traceback; compiling any spec that loads executes nothing."""

from __future__ import annotations

import ast

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specforge.codegen.compiler import compile_files
from specforge.core.errors import SpecError
from specforge.validate.load import load_spec

VALID = {
    "spec_version": 1,
    "name": "fuzz",
    "model": {"name": "org/model"},
    "tokenizer": {"special_tokens": {"additional": ["<r>", "<r|end>"]}},
    "dataset": {"path": "org/data"},
    "prompt": {"template": "Q: {question}\n<r>", "completion": "{answer}<r|end>"},
    "training": {"max_steps": 3},
    "inference": {"labels": ["a", "b"]},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))


FIELD_PATHS = list(paths(VALID)) + [
    ("lora", "r"),
    ("lora", "target_modules"),
    ("training", "precision"),
    ("training", "report_to"),
    ("model", "dtype"),
    ("model", "quantization"),
    ("launch", "slurm"),
    ("extends",),
    ("training", "lr_scheduler_kwargs"),
    ("training", "warmup_steps"),
]


def load_text(tmp_path, text: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        return load_spec(path)
    except SpecError as err:
        assert err.diagnostics
        assert all(d.location.file.endswith("spec.yaml") for d in err.diagnostics)
        assert not any("instance of" in d.render() for d in err.diagnostics)  # no class names
        return None


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300))
def test_arbitrary_text_never_raises_a_traceback(tmp_path, text):
    load_text(tmp_path, text)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(document=values)
def test_arbitrary_yaml_documents_never_raise_a_traceback(tmp_path, document):
    load_text(tmp_path, yaml.safe_dump(document, allow_unicode=True))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(index=st.integers(min_value=0, max_value=len(FIELD_PATHS) - 1), value=values)
def test_arbitrary_values_in_every_field_load_or_diagnose_and_compile(
    tmp_path, monkeypatch, index, value
):
    monkeypatch.chdir(tmp_path)
    document = yaml.safe_load(yaml.safe_dump(VALID))
    node = document
    *parents, last = FIELD_PATHS[index]
    for part in parents:
        node = (
            node.setdefault(part, {})
            if isinstance(node.get(part), dict) or part not in node
            else {}
        )
    node[last] = value
    loaded = load_text(tmp_path, yaml.safe_dump(document, allow_unicode=True))
    if loaded is not None:  # whatever loads compiles to code that parses, with no extra statements
        files = compile_files(loaded)
        for name in ("train.py", "infer.py"):
            ast.parse(files[name])
