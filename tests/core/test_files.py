"""artifacts.py's writes: atomic, and with the modes open() and mkdir() would give (the umask)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from specforge.core.files import umask, write_atomic
from specforge.runs.record import RunRecord, new_run_dir


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o077, 0o002])
def with_umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_umask_is_read_without_changing_it(with_umask):
    assert umask() == with_umask
    assert umask() == with_umask


def test_new_files_and_run_folders_respect_the_umask(tmp_path, with_umask):
    write_atomic(tmp_path / "sub/new.txt", b"x")
    assert mode(tmp_path / "sub/new.txt") == 0o666 & ~with_umask
    assert mode(tmp_path / "sub") == 0o777 & ~with_umask
    run_dir = new_run_dir("spec", root=tmp_path / "runs")
    assert mode(run_dir) == mode(run_dir.parent) == 0o777 & ~with_umask
    RunRecord(run_dir, {"status": "running"})
    assert mode(run_dir / "run.json") == 0o666 & ~with_umask


def test_umask_022_gives_0644(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.json", b"{}")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.json") == 0o644


def test_a_rewritten_file_keeps_its_mode(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("old")
    script.chmod(0o750)
    write_atomic(script, b"new")
    assert script.read_bytes() == b"new" and mode(script) == 0o750


def test_no_temp_file_left_behind(tmp_path):
    write_atomic(tmp_path / "a", b"1")
    write_atomic(tmp_path / "a", b"2")
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_check_names_a_missing_file_without_a_diff(project):
    from tests.conftest import run_cli

    assert run_cli("compile", cwd=project).returncode == 0
    (project / "generated/tiny/infer.py").unlink()
    result = run_cli("check", cwd=project)
    assert result.returncode == 1
    assert "missing: generated/tiny/infer.py (run specforge compile)" in result.stderr
    assert "stale" not in result.stderr
    assert result.stdout == ""  # no diff of the whole file from /dev/null
