"""Preemption where a step is not the next thing to happen: a signal at an evaluation step under
save_strategy 'best' (Trainer would keep only a new best), during a long evaluation (Trainer would
finish it and train one more step), and while the model loads (nothing trained yet). The run saves
within one optimizer step or one evaluation batch, and says only what it wrote."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import REPO, load_generated, run_cli, tiny_spec

pytestmark = pytest.mark.train

EVAL_ROWS = 13  # 20 % of 64 rows, one a batch: a long evaluation


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_model_dir) -> Path:
    """specs/best.yaml: 6 steps, evaluation (one row a batch) and save_strategy 'best' at 3 and 6."""
    root = tmp_path_factory.mktemp("preemption")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:64]
    (root / "data/train.jsonl").write_text("\n".join(rows) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(rows[:4]) + "\n")
    spec = tiny_spec(
        tiny_model_dir,
        name="best",
        max_steps=6,
        logging_steps=1,
        eval_steps=3,
        per_device_eval_batch_size=1,
        save_strategy="best",
    )
    (root / "specs/best.yaml").write_text(spec)
    result = run_cli("compile", "specs/best.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def script(root: Path, name: str):
    """A fresh import of train.py: each test patches its own copy's classes."""
    return load_generated(root / "generated/best/train.py", name)


def train(root: Path, module, out: Path, checkpoint: str | None = None) -> int | None:
    """module.train() in root; the exit code it raised (None: it returned)."""
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        module.train(out, checkpoint)
    except SystemExit as stop:
        return stop.code
    finally:
        mp.undo()
    return None


def logged(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]


def signal_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def test_signal_at_an_evaluation_step_under_save_best_writes_the_checkpoint(root, capfd):
    """Defect: the best so far is not beaten at step 3, so Trainer's `should_save =
    is_new_best_metric` dropped the preemption's save; the run exited 75 without a checkpoint."""
    module = script(root, "best_at_eval_step")

    def on_step_begin(self, args, state, control, **kwargs):
        state.best_metric = 0.0  # an eval loss no evaluation beats: no new best
        if state.global_step == 2:
            signal_self()  # during step 3, an evaluation step

    module.MetricsFile.on_step_begin = on_step_begin
    out = root / "runs/best/at-eval-step"
    assert train(root, module, out) == 75
    said = capfd.readouterr().out
    assert "checkpoint-3 saved: --resume continues from it" in said, said[-3000:]
    state = json.loads((out / "checkpoint-3/trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert max(e["step"] for e in logged(out)) == 3  # no step 4 trained


def test_signal_during_evaluation_stops_within_one_batch_and_resume_matches(root, capfd):
    """Defect: the whole evaluation ran (13 batches), then one more training step, before the
    checkpoint (step 4). Now the batch in progress ends it; checkpoint-3 resumes to the
    uninterrupted run's losses."""
    reference = root / "runs/best/uninterrupted"
    assert train(root, script(root, "best_reference"), reference) is None

    module = script(root, "best_in_eval")
    batches = []

    def on_prediction_step(self, args, state, control, **kwargs):
        batches.append(state.global_step)
        if len(batches) == 2:
            signal_self()

    module.MetricsFile.on_prediction_step = on_prediction_step
    out = root / "runs/best/in-eval"
    assert train(root, module, out) == 75
    assert batches == [3, 3], f"{len(batches)} evaluation batches after the signal"
    assert "checkpoint-3 saved" in capfd.readouterr().out
    assert not [e for e in logged(out) if e["step"] > 3]
    assert not [e for e in logged(out) if "eval_loss" in e]  # the cut evaluation logs nothing

    assert train(root, script(root, "best_resumed"), out, str(out / "checkpoint-3")) is None
    ours = {e["step"]: e["loss"] for e in logged(out) if "loss" in e}
    theirs = {e["step"]: e["loss"] for e in logged(reference) if "loss" in e}
    assert sorted(ours) == sorted(theirs) == list(range(1, 7))
    diffs = [abs(ours[s] - theirs[s]) for s in range(1, 7)]
    assert max(diffs) < 1e-5, diffs


def test_signal_while_loading_exits_at_once_without_a_checkpoint(root, capfd):
    """Defect: the signal waited for the first optimizer step (the whole model load and data
    preparation first, then a step), past a 30-second grace period on a large model."""
    module = script(root, "best_loading")
    seed = module.set_seed
    module.set_seed = lambda value: (seed(value), signal_self())
    out = root / "runs/best/loading"
    assert train(root, module, out) == 75
    assert "got signal 15 before training: no checkpoint" in capfd.readouterr().out
    assert not list(out.glob("checkpoint-*")) and not (out / "metrics.jsonl").exists()
