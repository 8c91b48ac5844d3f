"""The rule registry: every check is a documented function under a stable id, run in a
deterministic order, and every id is exercised by a test."""

from __future__ import annotations

import re

from specforge.validate.registry import RULES, registered
from specforge.validate.rules import run_rules  # noqa: F401  (registers every rule)

from .conftest import REPO


def test_rule_ids_are_stable_names_and_checks_are_documented():
    assert RULES, "no rule registered"
    for rule in RULES:
        assert re.fullmatch(r"SF\d{3}", rule.id), rule
        assert rule.check.__doc__, f"{rule.check.__qualname__} ({rule.id}) has no docstring"
    names = [(r.check.__module__, r.check.__qualname__) for r in RULES]
    assert len(names) == len(set(names)), "a check is registered twice"


def test_each_rule_id_lives_in_one_topic_module():
    """So the order within an id is the order of one file, not of imports."""
    modules: dict[str, set[str]] = {}
    for rule in RULES:
        modules.setdefault(rule.id, set()).add(rule.check.__module__)
    assert {i: m for i, m in modules.items() if len(m) > 1} == {}


def test_rules_run_in_id_order_then_registration_order():
    order = registered()
    assert [r.id for r in order] == sorted(r.id for r in RULES)
    for rule_id in {r.id for r in RULES}:
        assert [r for r in order if r.id == rule_id] == [r for r in RULES if r.id == rule_id]


def test_every_rule_id_has_a_test():
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "tests").rglob("test_*.py"))
    untested = sorted({r.id for r in RULES if r.id not in tests and r.id.lower() not in tests})
    assert untested == []
