"""Spec values enter generated code only as literals that read back identically."""

from __future__ import annotations

import ast
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specforge.codegen.literals import LiteralError, assign, kwargs_block, py
from specforge.codegen.plan import build_plan
from specforge.codegen.render import render_script
from specforge.spec.models import Spec, is_local_path
from tests.helpers import examples

BASE = {
    "spec_version": 1,
    "name": "prop",
    "model": {"name": "org/model"},
    "tokenizer": {"special_tokens": {"additional": ["<r>", "<r|end>"]}},
    "dataset": {"path": "org/data"},
    "prompt": {"template": "Q: {question}\n<r>", "completion": "{answer}<r|end>"},
    "inference": {"labels": ["a", "b"], "examples": [{"question": "q"}]},
}

plain_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="{}"), max_size=60
)


def test_py_round_trips_plain_values():
    for value in [
        "",
        "a'b\"c",
        "line\nbreak",
        "\x00\u2028",
        0,
        -3,
        2.5e-4,
        True,
        None,
        [1, "x"],
        {"k": [None, 1.0]},
    ]:
        assert ast.literal_eval(py(value)) == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, object(), {1.5: "x"}, {1, 2}])
def test_py_refuses_non_literals(value):
    with pytest.raises(LiteralError):
        py(value)


def test_assign_and_kwargs_are_single_checked_assignments():
    text = assign("X", {"a": [1, 2]}, "spec.key", "why")
    tree = ast.parse(text)
    assert len(tree.body) == 1 and ast.literal_eval(tree.body[0].value) == {"a": [1, 2]}
    block = kwargs_block("K", [("r", 16, "lora.r", None), ("t", ["q"], "lora.t", None)])
    assert ast.literal_eval(ast.parse(block).body[0].value) == {"r": 16, "t": ["q"]}
    with pytest.raises(LiteralError):
        assign("not an identifier", 1)


def _render(data: dict) -> tuple[ast.Module, ast.Module]:
    spec = Spec.model_validate(data)
    plan = build_plan(spec, "specs/prop.yaml", "0" * 64, "generated/prop")
    return ast.parse(render_script("train_sft.py.j2", plan)), ast.parse(
        render_script("infer.py.j2", plan)
    )


def _constants(tree: ast.Module) -> dict:
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and node.targets[0].id.isupper()
    }


BASELINE = [len(t.body) for t in _render(BASE)]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model=plain_text.filter(lambda s: bool(s) and not is_local_path(s)),  # a Hub id: a revision
    revision=plain_text,
    dataset=plain_text.filter(lambda s: bool(s) and not is_local_path(s)),
    prefix=plain_text,
    label=plain_text.filter(bool),
    example=plain_text,
)
def test_arbitrary_strings_come_back_as_the_same_literals(
    model, revision, dataset, prefix, label, example
):
    data = {
        **BASE,
        "model": {"name": model, "revision": revision},
        "dataset": {"path": dataset},
        "prompt": {"template": prefix + "{question}\n<r>", "completion": "{answer}<r|end>"},
        "inference": {"labels": [label], "examples": [{"question": example}]},
    }
    train, infer = _render(data)
    assert [len(train.body), len(infer.body)] == BASELINE  # no statement added
    constants = {**_constants(train), **_constants(infer)}
    assert constants["MODEL_NAME"] == model
    assert constants["MODEL_REVISION"] == revision
    assert constants["DATASET_PATH"] == dataset
    assert constants["PROMPT_TEMPLATE"] == prefix + "{question}\n<r>"
    assert constants["EXAMPLES"] == [{"question": example}]
    assert constants["NEW_TOKEN_INIT"] == {"<r>": "r", "<r|end>": "r end"}
