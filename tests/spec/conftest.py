"""Fixtures for the spec-language tests: a minimal valid spec that tests tweak, written to disk.

The minimal spec uses a Hub dataset id, so no local file is needed, and declares its special tokens,
so it loads with no errors and no warnings. Tests change it with `spec_data(section={...})`
(mappings merge, other values replace, DROP deletes a key) or write raw YAML text when the exact
spelling matters (`r: true`, `save_strategy: no`, tabs, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DROP = object()  # spec_data(prompt=DROP) deletes the key

BASE_SPEC: dict = {
    "spec_version": 1,
    "name": "unit",
    "model": {"name": "org/base-model"},
    "tokenizer": {"special_tokens": {"eos": "<eos>", "additional": ["<response>"]}},
    "dataset": {"path": "FinGPT/fingpt-sentiment-train"},
    "prompt": {"template": "Question: {question}\n<response>", "completion": "{answer}<eos>"},
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if value is DROP:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def spec_data(**sections) -> dict:
    """The minimal spec as a dict, with `sections` deep-merged over it."""
    return _merge(copy.deepcopy(BASE_SPEC), sections)


def spec_text(**sections) -> str:
    """The minimal spec as YAML text, with `sections` deep-merged over it."""
    return yaml.safe_dump(spec_data(**sections), sort_keys=False, allow_unicode=True)


def line_col(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column where `needle` starts; it must occur exactly once."""
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times in:\n{text}"
    before = text[: text.index(needle)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working directory: spec labels and relative data paths resolve from it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def write_spec(workdir: Path) -> Callable[..., Path]:
    """write_spec(text=None, name="spec.yaml", **sections) -> path of the written spec."""

    def write(text: str | None = None, name: str = "spec.yaml", **sections) -> Path:
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec_text(**sections) if text is None else text, encoding="utf-8")
        return path

    return write


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """An empty Hub cache: a model the developer happens to have downloaded changes no result."""
    cache = tmp_path_factory.mktemp("hub-cache")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache
