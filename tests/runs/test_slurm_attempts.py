"""What submit.sbatch records around each attempt (`python -m specforge.runs.slurm begin|end`), without
a Slurm: the attempt with its job id, the checkpoint a requeued attempt resumes from, and how an
attempt ended. tests/runs/test_slurm.py runs the same on a real Slurm."""

from __future__ import annotations

import json
import os

from specforge.runs.record import RunRecord
from specforge.runs.slurm import job_begin, job_end, main


def test_a_requeued_job_records_each_attempt_and_resumes_from_the_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoint-2").mkdir(parents=True)
    (run_dir / "checkpoint-2/trainer_state.json").write_text('{"global_step": 2}')
    (run_dir / "checkpoint-4").mkdir()  # cut short by the kill: no trainer_state.json
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    submitted = {"status": "submitted", "started_at": "2026-01-01T00:00:00+00:00"}
    RunRecord(run_dir, {"status": "submitted", "completed_steps": [], "attempts": [submitted]})
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)

    assert job_begin(run_dir) == run_dir / "checkpoint-2"  # a first attempt after a manual kill
    assert not (run_dir / "checkpoint-4").exists()
    assert (run_dir / "metrics.jsonl").read_text() == lines[0] + "\n" + lines[1] + "\n"
    data = json.loads((run_dir / "run.json").read_text())
    [attempt] = data["attempts"]  # the submitted attempt became the first real one
    assert attempt["status"] == "running" and attempt["slurm_job_id"] == "77"
    assert attempt["slurm_restart_count"] == 0 and attempt["resumed_from"] == "checkpoint-2"
    assert data["status"] == "running" and data["pid"] == os.getppid()  # the batch script

    assert job_end(run_dir, 1, signalled=True) == "preempted"  # torchrun's exit after a signal
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    job_begin(run_dir)
    job_begin(run_dir)  # its script killed outright: the next attempt closes it
    assert job_end(run_dir, 0, signalled=False) == "succeeded"
    data = json.loads((run_dir / "run.json").read_text())
    assert [a["status"] for a in data["attempts"]] == ["preempted", "interrupted", "succeeded"]
    assert data["attempts"][0]["step_reached"] == 2
    assert [a["slurm_restart_count"] for a in data["attempts"]] == [0, 1, 1]
    assert data["status"] == "succeeded" and data["completed_steps"] == ["train"]


def test_how_an_attempt_ended_without_a_record(tmp_path, capsys):
    """A batch script submitted by hand has no run.json: the status still decides the requeue."""
    assert job_begin(tmp_path) is None
    assert job_end(tmp_path, 75, signalled=False) == "preempted"  # one process: train.py's code
    assert job_end(tmp_path, 1, signalled=False) == "failed"
    assert job_end(tmp_path, 0, signalled=True) == "succeeded"  # it finished within the grace
    assert main(["end", str(tmp_path), "75", "0"]) == 0
    assert capsys.readouterr().out == "preempted\n"
    assert main(["bogus"]) == 2
