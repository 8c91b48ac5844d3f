"""A resolved spec (spec.resolved.yaml beside the scripts) is a spec: it validates with no
error, and compiles to the scripts its source spec compiles to, byte for byte but for the
spec's own name and hash in the headers."""

from __future__ import annotations

import re

import pytest

from specforge.codegen.compiler import RESOLVED_NAME, compile_files
from specforge.validate.load import load_spec

from .conftest import REPO

RESOLVED = sorted(
    [
        *(REPO / "generated").glob(f"*/{RESOLVED_NAME}"),
        *(REPO / "tests/golden").glob(f"*/{RESOLVED_NAME}"),
    ]
)
SOURCE = re.compile(r"^# Resolved spec: (\S+) with every default filled in\.$", re.MULTILINE)


def test_there_are_resolved_specs():
    assert {p.parent.name for p in RESOLVED} >= {"quickstart", "quickstart-dpo", "kto-chat"}


@pytest.mark.parametrize("resolved", RESOLVED, ids=lambda p: p.parent.name)
def test_resolved_spec_validates_and_compiles_to_the_same_scripts(resolved, monkeypatch):
    monkeypatch.chdir(REPO)  # data and model paths resolve from the project root
    [source] = SOURCE.findall(resolved.read_text(encoding="utf-8"))
    original = load_spec(REPO / source)
    again = load_spec(resolved.relative_to(REPO))
    said = {(d.rule, d.key, d.message) for d in original.warnings}
    assert [d.render() for d in again.warnings if (d.rule, d.key, d.message) not in said] == []
    script_dir = f"generated/{original.spec.name}"
    expected = compile_files(original, script_dir)
    got = compile_files(again, script_dir)
    assert sorted(got) == sorted(expected)
    for name, text in got.items():
        text = text.replace(again.sha256, original.sha256).replace(again.label, original.label)
        assert text == expected[name], f"{resolved}: {name} differs"
