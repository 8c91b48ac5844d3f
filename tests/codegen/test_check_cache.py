"""`check`'s verdict cache: a second check of unchanged specs loads nothing heavy, and no change
to any input (spec, base spec, data, generated files, folders) is ever hidden by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import copy_repo_specs, run_cli


@pytest.fixture
def primed(tmp_path) -> tuple[Path, dict]:
    """A compiled copy of the shipped specs whose verdicts are cached (one full check ran)."""
    root = tmp_path / "project"
    root.mkdir()
    copy_repo_specs(root)
    env = {"SPECFORGE_CACHE": str(tmp_path / "cache")}
    assert run_cli("compile", cwd=root, env=env).returncode == 0
    first = run_cli("check", cwd=root, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert list((tmp_path / "cache/checked").glob("*.json")), "the full check stored no verdict"
    return root, env


def modules_after_check(root: Path, env: dict) -> tuple[int, set[str]]:
    code = (
        "import json, sys\nfrom specforge.cli import main\nrc = main(['check'])\n"
        "print(json.dumps([rc, sorted({'pydantic', 'jinja2', 'yaml'} & set(sys.modules))]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rc, modules = json.loads(done.stdout.strip().splitlines()[-1])
    return rc, set(modules)


def test_unchanged_specs_are_checked_without_loading_them(primed):
    root, env = primed
    assert modules_after_check(root, env) == (0, set())


def test_the_cache_can_be_turned_off(primed):
    root, env = primed
    rc, modules = modules_after_check(root, {**env, "SPECFORGE_NO_CHECK_CACHE": "1"})
    assert rc == 0 and "pydantic" in modules


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _drop_column(path: Path, column: str) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != column}) + "\n" for r in rows)
    )


MUTATIONS = {
    # name: (mutate(root), text expected in the output)
    "hand-edited script": (
        lambda root: _edit(root / "generated/quickstart/train.py", '"r": 16', '"r": 32'),
        "stale",
    ),
    "spec edited": (lambda root: _edit(root / "specs/quickstart.yaml", "r: 16", "r: 8"), "stale"),
    "stray file": (lambda root: (root / "generated/quickstart/notes.txt").write_text("x"), "stray"),
    "orphan folder": (lambda root: (root / "generated/renamed").mkdir(), "orphan"),
    "dataset deleted": (
        lambda root: (root / "data/fin_sentiment_train.jsonl").unlink(),
        "local dataset data/fin_sentiment_train.jsonl does not exist",
    ),
    "dataset column gone": (
        lambda root: _drop_column(root / "data/fin_sentiment_train.jsonl", "input"),
        "not in the dataset's columns",
    ),
    "eval file deleted": (
        lambda root: (root / "data/fin_sentiment_heldout.jsonl").unlink(),
        "eval file data/fin_sentiment_heldout.jsonl does not exist",
    ),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_cached_verdict_never_hides_a_change(primed, mutation):
    root, env = primed
    mutate, expected = MUTATIONS[mutation]
    mutate(root)
    result = run_cli("check", cwd=root, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout + result.stderr


def test_a_base_spec_edit_is_seen(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    copy_repo_specs(root)
    env = {"SPECFORGE_CACHE": str(tmp_path / "cache")}
    (root / "specs/_base.yaml").write_text("lora:\n  r: 16\n")
    _edit(
        root / "specs/quickstart.yaml",
        "spec_version: 1\n",
        "spec_version: 1\nextends: _base.yaml\n",
    )
    assert run_cli("compile", cwd=root, env=env).returncode == 0
    assert run_cli("check", cwd=root, env=env).returncode == 0  # full; stores verdicts
    assert run_cli("check", cwd=root, env=env).returncode == 0  # from the cache
    _edit(root / "specs/quickstart.yaml", "  r: 16\n", "")  # the base now decides lora.r
    (root / "specs/_base.yaml").write_text("lora:\n  r: 8\n")
    result = run_cli("check", cwd=root, env=env)
    assert result.returncode == 1 and "stale" in result.stderr, result.stdout + result.stderr


def test_warnings_are_repeated_not_cached(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    copy_repo_specs(root)
    env = {"SPECFORGE_CACHE": str(tmp_path / "cache")}
    # packing without flash attention: valid, with an SF012 warning
    spec = root / "specs/quickstart.yaml"
    _edit(spec, "training:\n", "training:\n  packing: true\n  padding_free: false\n")
    assert run_cli("compile", cwd=root, env=env).returncode == 0
    for _ in range(2):
        result = run_cli("check", cwd=root, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SF012" in result.stderr
