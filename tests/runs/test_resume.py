"""`specforge run --resume`: a run killed mid-training continues in its own folder and ends where an
uninterrupted run with the same seed ends; Ctrl-C stops the step and records `interrupted`; SIGTERM
(a scheduler's stop) checkpoints at the next step and records `preempted`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from specforge.runs.record import final_losses, process_alive, read_jsonl, throughput
from specforge.runs.resume import LOSS_FROM, checkpoints, reconcile_metrics, rewind_metrics
from tests.conftest import REPO, run_cli, tiny_spec
from tests.helpers import start_in_session, wait_for

pytestmark = pytest.mark.train

# Checkpoints every 2 steps, a loss at every step, no evaluation during training.
TRAINING = {
    "max_steps": 8,
    "save_strategy": "steps",
    "save_steps": 2,
    "save_total_limit": None,  # every checkpoint kept: a test resumes from an older one
    "logging_steps": 1,
    "eval_strategy": "no",
}


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, tiny_model_dir) -> Path:
    """A compiled project; no held-out evaluation, so a run is train + one example."""
    root = tmp_path_factory.mktemp("resume")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()
    (root / "data/train.jsonl").write_text("\n".join(rows[:40]) + "\n")
    spec = tiny_spec(tiny_model_dir, **TRAINING)
    spec = spec.replace("  eval_data: data/heldout.jsonl\n", "")
    spec = spec.replace("  labels: [negative, neutral, positive]\n", "")  # so no validation scoring
    (root / "specs/tiny.yaml").write_text(spec)
    assert run_cli("compile", cwd=root).returncode == 0
    return root


@pytest.fixture(scope="module")
def reference(scratch) -> Path:
    """An uninterrupted run of specs/tiny.yaml: the numbers a resumed run must reproduce."""
    result = run_cli("run", "specs/tiny.yaml", cwd=scratch)
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = run_ids(scratch)
    return run_dir


def start_run(root: Path, log: Path, spec: str = "specs/tiny.yaml") -> subprocess.Popen:
    """`specforge run` in its own session, as a terminal would start it: signals go to its group."""
    return start_in_session([sys.executable, "-m", "specforge", "run", spec], cwd=root, log=log)


def new_run(root: Path, before: set[Path], name: str = "tiny") -> Path | None:
    found = sorted(set((root / "runs" / name).glob("*")) - before)
    return found[0] if found else None


def run_ids(root: Path, name: str = "tiny") -> set[Path]:
    return set((root / "runs" / name).glob("*"))


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def same_numbers(ours: Path, theirs: Path) -> dict:
    """Max abs difference of each logged training figure, step by step."""
    mine = [m for m in metrics(ours) if "loss" in m]
    other = [m for m in metrics(theirs) if "loss" in m]
    assert [m["step"] for m in mine] == [m["step"] for m in other]
    return {
        key: max(abs(a[key] - b[key]) for a, b in zip(mine, other))
        for key in ("loss", "grad_norm", "learning_rate", "mean_token_accuracy")
    }


def test_killed_run_resumes_in_place_and_matches_an_uninterrupted_run(scratch, reference):
    root = scratch

    # 1) start a run and SIGKILL its whole process group once a checkpoint is complete
    before = run_ids(root)
    process = start_run(root, root / "killed.log")
    run_dir = wait_for(lambda: new_run(root, before), process, "the run folder")
    wait_for(lambda: list(run_dir.glob("checkpoint-*/trainer_state.json")), process, "a checkpoint")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed = record(run_dir)
    assert killed["status"] == "running"  # nobody was left to write the ending
    step = killed["step_process"]
    assert step["name"] == "train"
    wait_for(lambda: not process_alive(step["pid"], step["pid_start"]), None, "the step to die")
    complete, _ = checkpoints(run_dir)
    at = max(complete)
    assert at < 8 and not (run_dir / "adapter").exists(), "killed after training had finished"

    # 2) a reader applies the dead-runner rule, reports and rewrites
    listing = run_cli("runs", "specs/tiny.yaml", "--format", "json", cwd=root)
    rows = {row["run_id"]: row for row in json.loads(listing.stdout)}
    assert rows[run_dir.name]["status"] == "interrupted"
    assert rows[reference.name]["status"] == "succeeded"
    assert record(run_dir)["status"] == "interrupted"

    # 3) what would run now must be what ran: an edited spec or script is refused, with the reason
    for path, reason in (
        (root / "specs/tiny.yaml", "changed since the run started"),
        (root / "generated/tiny/train.py", "was edited since the run started"),
    ):
        original = path.read_text()
        path.write_text(original + "# edited\n")
        try:
            refused = run_cli("run", "specs/tiny.yaml", "--resume", cwd=root)
        finally:
            path.write_text(original)
        assert refused.returncode == 1 and reason in refused.stderr, refused.stderr[-2000:]
    assert record(run_dir)["status"] == "interrupted"

    # 4) a half-written checkpoint above the last complete one (a kill during a save) is skipped;
    # Trainer's own pick, the highest number, would fail to load it
    partial = run_dir / f"checkpoint-{at + 1}"
    partial.mkdir(exist_ok=True)
    (partial / "adapter_model.safetensors").write_bytes(b"cut short")

    started = time.monotonic()
    resumed = run_cli("run", "specs/tiny.yaml", "--resume", cwd=root)
    print(f"resume took {time.monotonic() - started:.1f}s")
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert run_ids(root) == before | {run_dir}  # the same folder, no new run
    assert not partial.exists()

    done = record(run_dir)
    assert done["status"] == "succeeded" and done["failed_step"] is None
    assert [a["status"] for a in done["attempts"]] == ["interrupted", "succeeded"]
    assert done["attempts"][1]["resumed_from"] == f"checkpoint-{at}"
    assert done["completed_steps"] == ["train", "infer"]
    assert done["results"]["losses"]["steps"] == 8
    assert "resumed: " in (run_dir / "train.log").read_text()  # both attempts' logs kept

    # 5) every step logged once, and the same numbers as the uninterrupted run
    assert [m["step"] for m in metrics(run_dir) if "loss" in m] == list(range(1, 9))
    diffs = same_numbers(run_dir, reference)
    print(f"resumed from step {at}; max abs diff vs uninterrupted: {diffs}")
    assert all(diff < 1e-4 for diff in diffs.values()), diffs
    ours_mean = done["results"]["losses"]["mean_train_loss"]
    theirs_mean = record(reference)["results"]["losses"]["mean_train_loss"]
    assert abs(ours_mean - theirs_mean) < 1e-4


def test_sigterm_checkpoints_at_the_next_step_and_resume_matches(scratch, reference):
    """SIGTERM to `specforge run` alone (as a scheduler stops a job) reaches train.py, which saves
    a checkpoint after the step it is in, without `save_strategy: steps`; the run is `preempted`
    at that step, and --resume ends on the uninterrupted run's numbers."""
    root = scratch
    spec = (root / "specs/tiny.yaml").read_text().replace("name: tiny", "name: pre")
    spec = spec.replace('save_strategy: "steps"', 'save_strategy: "no"')
    (root / "specs/pre.yaml").write_text(spec.replace("  save_steps: 2\n", ""))
    assert run_cli("compile", "specs/pre.yaml", cwd=root).returncode == 0
    assert "def last_checkpoint" not in (root / "generated/pre/train.py").read_text()

    process = start_run(root, root / "preempted.log", "specs/pre.yaml")
    run_dir = wait_for(lambda: new_run(root, set(), "pre"), process, "the run folder")
    metrics_file = run_dir / "metrics.jsonl"
    wait_for(
        lambda: metrics_file.is_file() and '"loss"' in metrics_file.read_text(),
        process,
        "the first logged loss",
    )
    os.kill(process.pid, signal.SIGTERM)  # the runner only: it passes the signal on
    assert process.wait(timeout=120) == 75, (root / "preempted.log").read_text()[-3000:]
    stopped = record(run_dir)
    assert stopped["status"] == "preempted" and stopped["failed_step"] == "train"
    at = stopped["attempts"][-1]["step_reached"]
    complete, partial = checkpoints(run_dir)
    assert list(complete) == [at] and not partial and 0 < at < 8  # mid-epoch (8 steps per epoch)
    assert "got signal 15; stopping" in (run_dir / "train.log").read_text()
    assert not (run_dir / "adapter").exists()
    assert f"preempted during train at step {at}" in (root / "preempted.log").read_text()
    listing = run_cli("runs", "specs/pre.yaml", "--format", "json", cwd=root)
    assert json.loads(listing.stdout)[0]["status"] == "preempted"

    resumed = run_cli("run", "specs/pre.yaml", "--resume", cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    done = record(run_dir)
    assert [a["status"] for a in done["attempts"]] == ["preempted", "succeeded"]
    assert done["attempts"][1]["resumed_from"] == f"checkpoint-{at}"
    assert [m["step"] for m in metrics(run_dir) if "loss" in m] == list(range(1, 9))
    diffs = same_numbers(run_dir, reference)
    print(f"preempted at step {at}; max abs diff vs uninterrupted: {diffs}")
    assert all(diff < 1e-4 for diff in diffs.values()), diffs


def test_resume_from_the_final_checkpoint_trains_no_extra_step(scratch):
    """Defect: the runner gone after the last step's checkpoint but before the adapter was saved;
    --resume trained a 7th step of 6 (Trainer checks max_steps only after a step, and 6 steps end
    mid-epoch here)."""
    root = scratch
    six = ("--set", "training.max_steps=6")
    before = run_ids(root)
    finished = run_cli("run", "specs/tiny.yaml", *six, cwd=root)
    assert finished.returncode == 0, finished.stderr[-3000:]
    [run_dir] = run_ids(root) - before
    trained = (run_dir / "adapter/adapter_model.safetensors").read_bytes()
    shutil.rmtree(run_dir / "adapter")  # as if the runner died right after checkpoint-6
    data = record(run_dir)
    data.update(status="interrupted", completed_steps=[])
    (run_dir / "run.json").write_text(json.dumps(data))
    assert max(checkpoints(run_dir)[0]) == 6

    resumed = run_cli("run", "specs/tiny.yaml", *six, "--resume", run_dir.name, cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    done = record(run_dir)
    assert done["status"] == "succeeded" and done["attempts"][-1]["resumed_from"] == "checkpoint-6"
    assert done["results"]["losses"]["steps"] == 6
    assert max(m["step"] for m in metrics(run_dir)) == 6
    assert (run_dir / "adapter/adapter_model.safetensors").read_bytes() == trained


def test_ctrl_c_stops_the_step_and_records_interrupted(scratch):
    root = scratch
    before = run_ids(root)
    process = start_run(root, root / "ctrl-c.log")
    run_dir = wait_for(lambda: new_run(root, before), process, "the run folder")
    metrics_file = run_dir / "metrics.jsonl"
    wait_for(
        lambda: metrics_file.is_file() and "loss" in metrics_file.read_text(),
        process,
        "the first logged loss",
    )
    step = record(run_dir)["step_process"]
    assert step["name"] == "train"

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert process.wait(timeout=120) == 130
    done = record(run_dir)
    assert done["status"] == "interrupted" and done["failed_step"] == "train"
    assert done["attempts"][-1]["status"] == "interrupted" and done["ended_at"]
    assert done["step_process"] is None
    assert not process_alive(step["pid"], step["pid_start"])
    assert not (run_dir / "adapter").exists()
    assert f"--resume {run_dir.name}" in (root / "ctrl-c.log").read_text()


def test_rewind_metrics_keeps_entries_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 10.0 - s}) for s in (1, 2, 3, 4)]
    path.write_text("\n".join([*lines, '{"step": 5, "lo']) + "\n")  # a line cut by the kill
    rewind_metrics(path, 2)
    assert path.read_text() == lines[0] + "\n" + lines[1] + "\n"


def test_rewind_keeps_the_summary_of_training_that_ended_at_the_checkpoint(tmp_path):
    """A runner gone after the last checkpoint: the resumed trainer trains no step and writes no
    summary, so the one logged at the end is the run's train_loss."""
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(e) for e in ({"step": 6, "loss": 1.0}, {"step": 6, "train_loss": 2.0})]
    path.write_text("\n".join(lines) + "\n")
    rewind_metrics(path, 6)
    assert final_losses(read_jsonl(path))["mean_train_loss"] == 2.0


def test_checkpoint_without_trainer_state_is_partial(tmp_path):
    for step, state in ((2, "{}"), (4, '{"glob'), (6, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    complete, partial = checkpoints(tmp_path)
    assert list(complete) == [2]
    assert sorted(p.name for p in partial) == ["checkpoint-4", "checkpoint-6"]


def test_rewind_keeps_the_later_entries_aside(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 10.0 - s}) for s in (3, 6)]
    path.write_text("\n".join([*lines, json.dumps({"step": 6, "train_runtime": 1.0})]) + "\n")
    rewind_metrics(path, 4)
    assert path.read_text() == lines[0] + "\n"
    assert (tmp_path / "metrics.rewound.jsonl").read_text() == lines[1] + "\n"


def write_metrics(folder: Path, name: str, entries: list[dict]) -> None:
    (folder / name).write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_reconcile_restores_the_window_cut_by_the_checkpoint(tmp_path):
    """Per-step losses 1..8 = 8, 7, ..., 1; logs every 3 steps; resumed from checkpoint-4. The
    resumed trainer logs step 6 over steps 5-6 only and train_loss over steps 5-8 only."""
    loss = {s: 9.0 - s for s in range(1, 9)}
    window = lambda a, b: sum(loss[s] for s in range(a, b + 1)) / (b - a + 1)
    write_metrics(
        tmp_path,
        "metrics.jsonl",
        [
            {"step": 3, "loss": window(1, 3), "num_tokens": 30},
            {"step": 6, "loss": window(5, 6), "num_tokens": 20},
            {"step": 8, "train_loss": window(5, 8), "train_runtime": 1.0},
        ],
    )
    write_metrics(
        tmp_path,
        "metrics.rewound.jsonl",
        [{"step": 6, "loss": window(4, 6), "num_tokens": 60, "tokens_per_second": 5.0, "mfu": 0.1}],
    )
    for _ in range(2):  # a second pass changes nothing
        reconcile_metrics(tmp_path, 4)
        metrics = read_jsonl(tmp_path / "metrics.jsonl")
        assert [m["loss"] for m in metrics if "loss" in m] == [window(1, 3), window(4, 6)]
        assert metrics[1]["num_tokens"] == 60 and throughput(metrics)["tokens_per_second"] == 5.0
        assert final_losses(metrics)["mean_train_loss"] == pytest.approx(window(1, 8))


def test_reconcile_without_the_earlier_window_says_so(tmp_path):
    """Killed after checkpoint-4 and before step 6 was logged: steps 4's loss is nowhere."""
    write_metrics(
        tmp_path,
        "metrics.jsonl",
        [
            {"step": 3, "loss": 7.0},
            {"step": 6, "loss": 3.5},
            {"step": 8, "train_loss": 2.5, "train_runtime": 1.0},
        ],
    )
    reconcile_metrics(tmp_path, 4)
    metrics = read_jsonl(tmp_path / "metrics.jsonl")
    assert metrics[1][LOSS_FROM] == 4  # the entry says it averages steps 5-6 only
    assert final_losses(metrics)["mean_train_loss"] is None  # unknown, not wrong


def test_resume_across_a_logging_window_records_the_uninterrupted_losses(scratch):
    """Defect: logging_steps 3 and save_steps 2; the first attempt logged step 6 over steps 4-6
    and stopped before checkpoint-6 was complete. Resumed from checkpoint-4, metrics.jsonl held
    step 6 averaged over steps 5-6 only, and mean_train_loss was null."""
    root = scratch
    spec = (root / "specs/tiny.yaml").read_text().replace("name: tiny", "name: straddle")
    (root / "specs/straddle.yaml").write_text(spec.replace("logging_steps: 1", "logging_steps: 3"))
    assert run_cli("compile", "specs/straddle.yaml", cwd=root).returncode == 0
    result = run_cli("run", "specs/straddle.yaml", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    [reference] = run_ids(root, "straddle")
    # the same run, stopped while checkpoint-6 was being written (its trainer_state.json missing)
    run_dir = reference.with_name(reference.name[:-6] + "000000")
    shutil.copytree(reference, run_dir)
    for name in ("checkpoint-8", "adapter", "examples.jsonl", "train_summary.json"):
        shutil.rmtree(run_dir / name) if (run_dir / name).is_dir() else (run_dir / name).unlink()
    (run_dir / "checkpoint-6/trainer_state.json").unlink()
    write_metrics(
        run_dir, "metrics.jsonl", [m for m in metrics(reference) if "train_loss" not in m]
    )
    data = record(run_dir)
    data.update(run_id=run_dir.name, status="interrupted", completed_steps=[], results={})
    data["attempts"][-1]["status"] = "interrupted"
    (run_dir / "run.json").write_text(json.dumps(data))

    resumed = run_cli("run", "specs/straddle.yaml", "--resume", run_dir.name, cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    done, theirs = record(run_dir), record(reference)
    assert done["attempts"][-1]["resumed_from"] == "checkpoint-4"
    # every 3rd step, each checkpoint (2, 4, 6) and the last: as the uninterrupted run logged
    logged = [m["step"] for m in metrics(reference) if "loss" in m]
    assert logged == [2, 3, 4, 6, 8]
    assert [m["step"] for m in metrics(run_dir) if "loss" in m] == logged
    diffs = same_numbers(run_dir, reference)
    assert all(diff < 1e-4 for diff in diffs.values()), diffs
    for key, value in theirs["results"]["losses"].items():
        assert done["results"]["losses"][key] == pytest.approx(value, abs=1e-4), key
    assert (
        done["results"]["throughput"]["intervals"] == theirs["results"]["throughput"]["intervals"]
    )
