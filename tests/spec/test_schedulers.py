"""specforge's table of schedule arguments matches the installed transformers, read from its source
(importing transformers would pull in torch; the spec language never does)."""

from __future__ import annotations

import ast
import importlib.util
import typing
from pathlib import Path

import pytest

from specforge.spec.models import Scheduler
from specforge.spec.schedulers import ONE_OF, SCHEDULER_ARGS

# The Trainer passes these itself; last_epoch is its own on resume.
PASSED_BY_THE_TRAINER = {"optimizer", "num_warmup_steps", "num_training_steps", "last_epoch"}
# get_scheduler calls these without scheduler_specific_kwargs.
KWARGS_DROPPED = {"constant", "constant_with_warmup"}


def _source(module: str) -> ast.Module:
    found = importlib.util.find_spec("transformers")  # locates, does not import
    folder = Path(next(iter(found.submodule_search_locations)))
    return ast.parse((folder / f"{module}.py").read_text(encoding="utf-8"))


def schedule_functions() -> dict[str, ast.FunctionDef]:
    """lr_scheduler_type value -> the transformers function that builds it."""
    members = {}
    for node in ast.walk(_source("trainer_utils")):
        if isinstance(node, ast.ClassDef) and node.name == "SchedulerType":
            for item in node.body:
                if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant):
                    members[item.targets[0].id] = item.value.value
    module = _source("optimization")
    functions = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    for node in module.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "TYPE_TO_SCHEDULER_FUNCTION":
            return {
                members[key.attr]: functions[value.id]
                for key, value in zip(node.value.keys, node.value.values, strict=True)
            }
    raise AssertionError("TYPE_TO_SCHEDULER_FUNCTION not found")


FUNCTIONS = schedule_functions()


@pytest.mark.parametrize("scheduler", typing.get_args(Scheduler))
def test_arguments_match_the_transformers_function(scheduler):
    args = FUNCTIONS[scheduler].args
    names = [a.arg for a in args.args + args.kwonlyargs]
    expected = set() if scheduler in KWARGS_DROPPED else set(names) - PASSED_BY_THE_TRAINER
    assert set(SCHEDULER_ARGS[scheduler]) == expected
    positional = args.args[: len(args.args) - len(args.defaults)]
    required = {a.arg for a in positional} - PASSED_BY_THE_TRAINER
    if len(ONE_OF.get(scheduler, ())) == 1:
        assert required == set(ONE_OF[scheduler])
    else:
        assert required == set()


def test_every_schedule_has_an_entry():
    assert set(SCHEDULER_ARGS) == set(typing.get_args(Scheduler))
