"""The generated train.py under torchrun: DDP on the gloo backend (CPU, real engines), one writer,
the same loss trajectory as one process with the doubled batch; two "nodes" on localhost; FSDP;
a SIGTERM that both ranks act on at the same step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.helpers import compiled_project, free_port

pytestmark = pytest.mark.train


def losses(out: Path) -> list[float]:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def torchrun(root: Path, name: str, out: Path, *launch: str, timeout: float = 600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *launch,
            f"generated/{name}/train.py",
            "--output-dir",
            str(out),
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_ddp_two_processes_match_one_process_with_double_batch(tmp_path, tiny_model_dir):
    one = compiled_project(tmp_path / "one", tiny_model_dir, "one", per_device_train_batch_size=8)
    result = subprocess.run(
        [sys.executable, "generated/one/train.py", "--output-dir", "runs/out"],
        cwd=one,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    two = compiled_project(tmp_path / "two", tiny_model_dir, "two", per_device_train_batch_size=4)
    result = torchrun(two, "two", two / "runs/out", "--standalone", "--nproc-per-node=2")
    assert result.returncode == 0, result.stderr[-4000:]

    single, double = losses(one / "runs/out"), losses(two / "runs/out")
    assert len(single) == len(double) == 6
    # same model, same global batch of 8 rows per step; the two samplers order rows differently,
    # so the curves agree in shape and level, not bit for bit
    assert abs(single[0] - double[0]) / single[0] < 0.05, (single, double)
    assert abs(single[-1] - double[-1]) / single[-1] < 0.25, (single, double)
    assert double[-1] < double[0]
    # one writer: a single adapter and one metrics file, no duplicated log lines
    assert (two / "runs/out/adapter/adapter_model.safetensors").is_file()
    logged = [json.loads(x) for x in (two / "runs/out/metrics.jsonl").read_text().splitlines()]
    steps = [entry["step"] for entry in logged if "loss" in entry]
    assert len(steps) == len(set(steps))


def test_two_nodes_on_localhost(tmp_path, tiny_model_dir):
    """Two torchrun invocations, nnodes=2, c10d rendezvous on 127.0.0.1."""
    root = compiled_project(
        tmp_path, tiny_model_dir, "nodes", max_steps=3, per_device_train_batch_size=4
    )
    endpoint = f"127.0.0.1:{free_port()}"
    out = root / "runs/out"
    common = [
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        "--rdzv-id=specforge-test",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *common,
        "generated/nodes/train.py",
        "--output-dir",
        str(out),
    ]
    nodes = [
        subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert len(losses(out)) == 3
    assert (out / "adapter/adapter_model.safetensors").is_file()


def test_fsdp_compiles_to_fsdp2_config(tmp_path, tiny_model_dir):
    root = compiled_project(tmp_path, tiny_model_dir, "fsdp")
    spec = root / "specs/fsdp.yaml"
    spec.write_text(
        spec.read_text() + "launch:\n  nproc_per_node: 2\n  strategy: fsdp\n"
        "  fsdp:\n    activation_checkpointing: true\n"
    )
    assert run_cli("compile", "specs/fsdp.yaml", cwd=root).returncode == 0
    result = subprocess.run(
        [sys.executable, "generated/fsdp/train.py", "--dry-run"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    args = json.loads(result.stdout)["training_args"]
    assert args["fsdp"] is True
    assert args["fsdp_config"] == {
        "version": 2,
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "activation_checkpointing": True,
        "cpu_offload": False,
    }


def test_slurm_block_compiles_a_batch_script(tmp_path, tiny_model_dir):
    root = compiled_project(tmp_path, tiny_model_dir, "slurm")
    spec = root / "specs/slurm.yaml"
    spec.write_text(
        spec.read_text() + "launch:\n  nproc_per_node: 8\n  nnodes: 2\n  slurm:\n"
        "    partition: gpu\n    nodes: 2\n    gpus_per_node: 8\n"
        "    extra_sbatch: [--exclusive]\n"
    )
    assert run_cli("compile", "specs/slurm.yaml", cwd=root).returncode == 0
    script = (root / "generated/slurm/submit.sbatch").read_text()
    assert script.startswith("#!/bin/bash\n# Code generated by specforge")
    for line in (
        "#SBATCH --nodes=2",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --exclusive",
        "--nproc-per-node=8",
        "--rdzv-backend=c10d",
        "generated/slurm/train.py",
    ):
        assert line in script, line
    result = subprocess.run(
        ["bash", "-n", str(root / "generated/slurm/submit.sbatch")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert run_cli("check", cwd=root).returncode == 0


@pytest.mark.parametrize("value", ["gpu;rm -rf /", "$(id)", "a b"])
def test_slurm_values_cannot_inject_shell(tmp_path, tiny_model_dir, value):
    root = compiled_project(tmp_path, tiny_model_dir, "inject")
    spec = root / "specs/inject.yaml"
    spec.write_text(spec.read_text() + f"launch:\n  slurm:\n    partition: {json.dumps(value)}\n")
    result = run_cli("validate", "specs/inject.yaml", cwd=root)
    assert result.returncode == 1 and "launch.slurm.partition" in result.stderr


def test_specforge_run_starts_torchrun_and_records_world_size(tmp_path, tiny_model_dir):
    root = compiled_project(
        tmp_path,
        tiny_model_dir,
        "ddprun",
        max_steps=3,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
    )
    spec = root / "specs/ddprun.yaml"
    spec.write_text(spec.read_text() + "launch:\n  nproc_per_node: 2\n")
    assert run_cli("compile", cwd=root).returncode == 0
    dry = run_cli("run", "specs/ddprun.yaml", "--dry-run", cwd=root)
    assert "torch.distributed.run --nproc-per-node=2 --standalone" in dry.stdout
    result = run_cli("run", "specs/ddprun.yaml", cwd=root, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    (run_dir,) = (root / "runs/ddprun").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["world_size"] == 2 and record["effective_batch_size"] == 4 * 2 * 2
    assert record["results"]["losses"]["steps"] == 3
    assert (run_dir / "adapter/adapter_model.safetensors").is_file()


def test_launcher_slurm_without_sbatch_says_so_and_shows_the_script(tmp_path, tiny_model_dir):
    root = compiled_project(tmp_path, tiny_model_dir, "nosbatch")
    spec = root / "specs/nosbatch.yaml"
    spec.write_text(spec.read_text() + "launch:\n  slurm:\n    gpus_per_node: 0\n")
    assert run_cli("compile", cwd=root).returncode == 0
    bare_path = str(Path(sys.executable).parent)  # python, but no sbatch
    result = run_cli(
        "run", "specs/nosbatch.yaml", "--launcher", "slurm", cwd=root, env={"PATH": bare_path}
    )
    assert result.returncode == 1
    assert "sbatch is not on PATH" in result.stderr
    assert result.stdout.startswith("#!/bin/bash") and "#SBATCH --nodes=1" in result.stdout
    assert not (root / "runs").exists()


def test_sigterm_reaches_both_ranks_and_one_checkpoint_is_written(tmp_path, tiny_model_dir):
    """SIGTERM to `specforge run` over torchrun with 2 CPU processes: torchrun passes it to both
    ranks, they agree on one step, rank 0 writes one complete checkpoint (each rank's RNG state in
    it), the run is `preempted` there, and --resume finishes it."""
    root = compiled_project(
        tmp_path, tiny_model_dir, "ddpstop", max_steps=30, per_device_train_batch_size=2
    )
    spec = root / "specs/ddpstop.yaml"
    spec.write_text(spec.read_text() + "launch:\n  nproc_per_node: 2\n")
    assert run_cli("compile", cwd=root).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = root / "run.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "specforge", "run", "specs/ddpstop.yaml"],
        cwd=root,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    metrics = root / "runs/ddpstop"
    deadline = time.monotonic() + 300
    while not any('"loss"' in p.read_text() for p in metrics.glob("*/metrics.jsonl")):
        assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=120) == 75, log.read_text()[-3000:]

    (run_dir,) = metrics.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "preempted"
    at = record["attempts"][-1]["step_reached"]
    assert 0 < at < 30
    assert [p.name for p in run_dir.glob("checkpoint-*")] == [f"checkpoint-{at}"]
    checkpoint = run_dir / f"checkpoint-{at}"
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == at
    assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors"} <= {
        p.name for p in checkpoint.iterdir()
    }
    train_log = (run_dir / "train.log").read_text()
    for rank in (0, 1):  # each rank got the signal itself
        assert f"rank {rank}: got signal 15; stopping" in train_log, train_log[-3000:]

    resumed = run_cli("run", "specs/ddpstop.yaml", "--resume", cwd=root, env=env)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert [a["status"] for a in record["attempts"]] == ["preempted", "succeeded"]
    assert record["results"]["losses"]["steps"] == 30
    logged = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if "loss" in e] == list(range(1, 31))
