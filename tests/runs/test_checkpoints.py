"""Checkpoints of a LoRA run with new tokens hold what the final adapter holds (the trained token
rows, not a copy of the whole resized embedding), plus the optimizer and RNG state; resuming from
one reproduces the uninterrupted run's losses; a default save_total_limit bounds the disk use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from tests.conftest import load_generated
from tests.helpers import compiled_project

pytestmark = pytest.mark.train

ADAPTER_FILE = "adapter_model.safetensors"


def losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {e["step"]: e["loss"] for e in map(json.loads, lines) if "loss" in e}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir) -> dict:
    """An uninterrupted 6-step run checkpointing every 2 steps (save_total_limit left to its
    default), and a run resumed from a copy of its checkpoint-4."""
    root = compiled_project(
        tmp_path_factory.mktemp("checkpoints"),
        tiny_model_dir,
        "ckpt",
        save_strategy="steps",
        save_steps=2,
    )
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        script = load_generated(root / "generated/ckpt/train.py", "ckpt_train")
        full = root / "runs/ckpt/full"
        script.train(full)
        first = root / "runs/ckpt/first"  # the run as it stood at checkpoint-4
        first.mkdir(parents=True)
        shutil.copytree(full / "checkpoint-4", first / "checkpoint-4")
        early = [e for e in losses(full).items() if e[0] <= 4]
        (first / "metrics.jsonl").write_text(
            "".join(json.dumps({"step": s, "loss": v}) + "\n" for s, v in early)
        )
        script.train(first, str(first / "checkpoint-4"))
    finally:
        mp.undo()
    return {"root": root, "full": full, "resumed": first}


def test_checkpoint_holds_the_token_rows_not_the_embedding(runs):
    full = runs["full"]
    checkpoint = max(full.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    with safe_open(str(checkpoint / ADAPTER_FILE), "pt") as handle:
        keys = list(handle.keys())
    assert [k for k in keys if "trainable_tokens" in k], keys
    embedding = [k for k in keys if ("embed_tokens" in k or "lm_head" in k)]
    assert all("trainable_tokens" in k for k in embedding), keys
    # the tiny model's embedding alone is 49154 x 64 fp32 = 12.6 MB; the adapter is ~0.2 MB
    size, final = (checkpoint / ADAPTER_FILE).stat().st_size, (full / "adapter" / ADAPTER_FILE)
    print(f"checkpoint adapter {size} bytes, final adapter {final.stat().st_size} bytes")
    assert size <= 1.05 * final.stat().st_size and size < 1_000_000
    for name in ("optimizer.pt", "rng_state.pth", "scheduler.pt", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name


def test_default_save_total_limit_keeps_the_newest_two(runs):
    kept = sorted(p.name for p in runs["full"].glob("checkpoint-*"))
    assert kept == ["checkpoint-4", "checkpoint-6"]
    text = (runs["root"] / "generated/ckpt/train.py").read_text()
    assert '"save_total_limit": 2,  # spec: training.save_total_limit' in text


def test_resume_from_a_small_checkpoint_matches_the_uninterrupted_losses(runs):
    ours, theirs = losses(runs["resumed"]), losses(runs["full"])
    assert sorted(ours) == sorted(theirs) == list(range(1, 7))
    diffs = {step: abs(ours[step] - theirs[step]) for step in (5, 6)}
    assert max(diffs.values()) < 1e-5, diffs
    resumed = runs["resumed"] / "adapter" / ADAPTER_FILE
    with (
        safe_open(str(resumed), "pt") as a,
        safe_open(str(runs["full"] / "adapter" / ADAPTER_FILE), "pt") as b,
    ):
        names = a.keys()
        assert sorted(names) == sorted(b.keys())
        for key in names:
            assert (a.get_tensor(key) - b.get_tensor(key)).abs().max() < 1e-5, key
