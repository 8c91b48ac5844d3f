"""`specforge sweep --launcher slurm` on the localhost Slurm of tests/runs/test_slurm.py: one array job,
one task per point, each filling its own run folder (skipped loudly when Slurm cannot start)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.conftest import run_cli
from tests.helpers import JOB_TIMEOUT, cancel_all, compiled_project, free_port, node_cpus

pytestmark = pytest.mark.slurm


def test_sweep_submits_one_array_job_with_a_task_per_point(slurm_env, tmp_path, tiny_model_dir):
    name = "arraysweep"
    root = compiled_project(
        tmp_path, tiny_model_dir, name, max_steps=4, save_strategy="steps", save_steps=2
    )
    spec = root / f"specs/{name}.yaml"
    cpus = min(2, node_cpus(slurm_env))
    spec.write_text(
        spec.read_text()
        + f"launch:\n  rdzv_endpoint: localhost:{free_port()}\n"
        + f'  slurm:\n    nodes: 1\n    gpus_per_node: 0\n    cpus_per_task: {cpus}\n    time: "00:10:00"\n'
    )
    args = ("sweep", f"specs/{name}.yaml", "--grid", "lora.r=2,4", "--launcher", "slurm")
    result = run_cli(*args, cwd=root, env=slurm_env)
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip().splitlines()[-1]
    assert job_id.isdigit(), result.stdout
    (manifest_path,) = (root / f"runs/{name}/sweeps").glob("*/sweep.json")
    manifest = json.loads(manifest_path.read_text())
    assert manifest["slurm_jobs"] == [
        {"job_id": job_id, "script": "array-0.sbatch", "points": [0, 1]}
    ]
    run_dirs = [root / f"runs/{name}" / p["runs"][0] for p in manifest["points"]]
    for task, run_dir in enumerate(run_dirs):
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "submitted" and record["slurm_job_id"] == f"{job_id}_{task}"
        assert (run_dir / "scripts/submit.sbatch").is_file()
    # submitted points are not submitted again
    again = run_cli(*args, cwd=root, env=slurm_env)
    assert again.returncode == 0 and "nothing to submit" in again.stderr
    wait_for(slurm_env, job_id)
    for run_dir, r in zip(run_dirs, (2, 4)):
        assert (run_dir / "adapter/adapter_model.safetensors").is_file(), sorted(
            root.glob("slurm-*")
        )
        config = json.loads((run_dir / "adapter/adapter_config.json").read_text())
        assert config["r"] == r

    # point 0 as a job that was stopped after step 2 and could not requeue itself: the same
    # command submits it again, in its own folder, and its batch script resumes it from there
    stopped = run_dirs[0]
    shutil.rmtree(stopped / "checkpoint-4")
    shutil.rmtree(stopped / "adapter")
    record = json.loads((stopped / "run.json").read_text())
    record["attempts"][-1].update(status="preempted", step_reached=2)
    record.update(status="preempted", completed_steps=[])
    (stopped / "run.json").write_text(json.dumps(record))
    resumed = run_cli(*args, cwd=root, env=slurm_env)
    assert resumed.returncode == 0, resumed.stderr
    second_job = resumed.stdout.strip().splitlines()[-1]
    wait_for(slurm_env, second_job)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["slurm_jobs"][-1]["points"] == [0]
    assert manifest["points"][0]["runs"] == [stopped.name]  # no new folder
    assert manifest["points"][0]["events"][-1]["action"] == "resumed"
    record = json.loads((stopped / "run.json").read_text())
    assert record["status"] == "succeeded", sorted(root.glob("slurm-*"))
    assert [a["status"] for a in record["attempts"][-2:]] == ["preempted", "succeeded"]
    assert record["attempts"][-1]["resumed_from"] == "checkpoint-2"
    assert (stopped / "adapter/adapter_model.safetensors").is_file()


def wait_for(env: dict, job_id: str) -> None:
    """Until the job (every task of an array) has left the queue."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-j", job_id],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if not queue.stdout.strip():
            break
        time.sleep(3)
    else:
        cancel_all(env)
        pytest.fail(f"array job {job_id} did not finish in {JOB_TIMEOUT} s")
