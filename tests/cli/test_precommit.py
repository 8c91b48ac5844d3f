"""The `specforge-validate` pre-commit hook, installed and run for real by `pre-commit try-repo`.

try-repo clones this repository (HEAD plus uncommitted changes to tracked files), builds the hook's
Python environment from it (pip, from the package registry) and runs the hook in a scratch git
repository. The first run takes a while; PRE_COMMIT_HOME is shared across the module.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.spec.conftest import line_col, spec_text

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 900  # building the hook environment needs the package registry

pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
    pytest.mark.skipif(not (REPO / ".git").exists(), reason="try-repo needs a git checkout"),
]


def pre_commit() -> str:
    found = Path(sys.executable).parent / "pre-commit"
    if found.exists():
        return str(found)
    on_path = shutil.which("pre-commit")
    assert on_path, "pre-commit is not installed (pip install -e '.[test]')"
    return on_path


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    """A git repository with specs/good.yaml and specs/bad.yaml staged."""
    repo = tmp_path / "project"
    (repo / "specs").mkdir(parents=True)
    (repo / "specs/good.yaml").write_text(spec_text(name="good"))
    (repo / "specs/bad.yaml").write_text(spec_text(name="bad", lora={"r": 0}))
    git = ["git", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "specs"], cwd=repo, check=True)
    return repo


def try_repo(repo: Path, home: Path, *files: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PRE_COMMIT", "GIT_"))}
    env.update(PRE_COMMIT_HOME=str(home), PRE_COMMIT_COLOR="never", NO_COLOR="1")
    return subprocess.run(
        [pre_commit(), "try-repo", str(REPO), "specforge-validate", "--files", *files],
        cwd=repo,
        check=False,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        env=env,
    )


def test_hook_is_declared():
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    hook = hooks["specforge-validate"]
    assert hook["entry"] == "specforge validate"
    assert hook["language"] == "python"


@pytest.mark.train  # pre-commit builds the hook's environment: a pipeline
def test_hook_fails_on_a_bad_spec_with_the_located_message(scratch_repo, pre_commit_home):
    result = try_repo(scratch_repo, pre_commit_home, "specs/bad.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    line, col = line_col((scratch_repo / "specs/bad.yaml").read_text(), "r: 0")
    expected = f"specs/bad.yaml:{line}:{col + 3}: error: lora.r: must be greater than 0 (got 0)"
    assert expected in output.splitlines(), output
    assert "- hook id: specforge-validate" in output
    assert "Failed" in output


@pytest.mark.train  # pre-commit builds the hook's environment: a pipeline
def test_hook_passes_on_a_good_spec(scratch_repo, pre_commit_home):
    result = try_repo(scratch_repo, pre_commit_home, "specs/good.yaml")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Passed" in output
    assert "error:" not in output
