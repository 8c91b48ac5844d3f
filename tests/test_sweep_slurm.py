"""`specforge sweep --launcher slurm` on the localhost Slurm of tests/test_slurm.py: one array job,
one task per point, each filling its own run folder (skipped loudly when Slurm cannot start)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import run_cli
from tests.test_distributed import make_project
from tests.test_slurm import JOB_TIMEOUT, cancel_all, free_port, node_cpus, slurm_env  # noqa: F401

pytestmark = pytest.mark.slurm


def test_sweep_submits_one_array_job_with_a_task_per_point(slurm_env, tmp_path, tiny_model_dir):  # noqa: F811
    name = "arraysweep"
    root = make_project(tmp_path, tiny_model_dir, name, max_steps=2)
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
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        queue = subprocess.run(
            ["squeue", "-h", "-j", job_id],
            env=slurm_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if not queue.stdout.strip():
            break
        time.sleep(3)
    else:
        cancel_all(slurm_env)
        pytest.fail(f"array job {job_id} did not finish in {JOB_TIMEOUT} s")
    for run_dir, r in zip(run_dirs, (2, 4)):
        assert (run_dir / "adapter/adapter_model.safetensors").is_file(), sorted(
            root.glob("slurm-*")
        )
        config = json.loads((run_dir / "adapter/adapter_config.json").read_text())
        assert config["r"] == r
