"""The repository's own .pre-commit-config.yaml: pre-commit accepts it, and each hook runs a tool
that `make setup` installs into .venv (the hooks are `language: system`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import REPO

CONFIG = REPO / ".pre-commit-config.yaml"
BIN = Path(sys.executable).parent


def test_pre_commit_accepts_the_config_and_the_offered_hooks():
    for command, path in (
        ("validate-config", CONFIG),
        ("validate-manifest", REPO / ".pre-commit-hooks.yaml"),
    ):
        done = subprocess.run(
            [str(BIN / "pre-commit"), command, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_hooks_lint_and_check_with_the_venvs_tools():
    (repo,) = yaml.safe_load(CONFIG.read_text())["repos"]
    hooks = {hook["id"]: hook for hook in repo["hooks"]}
    assert repo["repo"] == "local"
    assert set(hooks) == {"ruff-check", "ruff-format", "specforge-check"}
    assert hooks["ruff-format"]["entry"].endswith("ruff format --check --force-exclude")
    assert hooks["specforge-check"]["pass_filenames"] is False
    for hook in hooks.values():
        tool = hook["entry"].split()[0]
        assert tool.startswith(".venv/bin/"), hook
        assert (BIN / Path(tool).name).is_file(), f"{tool}: not in {BIN}"
