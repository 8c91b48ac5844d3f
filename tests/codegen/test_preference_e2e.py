"""The generated dpo/orpo/kto train.py really trains (tiny random Llama, the real TRL 1.16
trainers, CPU) and logs the trainers' rewards; a DPO run continues an SFT run's adapter and
compares against it; infer.py answers with the result as it does for SFT."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import REPO, load_generated, run_cli, tiny_spec
from tests.helpers import PAIRS, PREFERENCE_STEPS, method_spec

pytestmark = pytest.mark.train

STEPS = PREFERENCE_STEPS  # method_spec's max_steps


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("preference")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    pairs = PAIRS[:40]
    kto = [
        {"instruction": r["instruction"], "input": r["input"], "answer": r[key], "good": good}
        for r in pairs[:20]
        for key, good in (("chosen", True), ("rejected", False))
    ]
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:40]
    for name, lines in (
        ("pairs", [json.dumps(r) for r in pairs]),
        ("kto", [json.dumps(r) for r in kto]),
        ("train", rows),
        ("heldout", rows[:8]),
    ):
        (root / f"data/{name}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "specs/tiny.yaml").write_text(tiny_spec(tiny_model_dir, max_steps=STEPS))
    for method in ("dpo", "orpo", "kto"):
        (root / f"specs/{method}.yaml").write_text(method_spec(tiny_model_dir, method, method))
    for weight in ("0.5", "1.0"):  # RPO: DPO plus the chosen answer's SFT loss
        text = method_spec(tiny_model_dir, "dpo", f"rpo{weight[0]}{weight[2]}")
        (root / f"specs/rpo{weight[0]}{weight[2]}.yaml").write_text(
            text + f"preference:\n  sft_weight: {weight}\n"
        )
    chain = method_spec(tiny_model_dir, "dpo", "chain", adapter="runs/tiny/latest")
    (root / "specs/chain.yaml").write_text(chain)
    result = run_cli(
        "compile",
        *(f"specs/{n}.yaml" for n in ("tiny", "dpo", "orpo", "kto", "rpo05", "rpo10", "chain")),
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    return root


def train(project, name: str, run: str = "test", patch=None, **kwargs):
    mp = pytest.MonkeyPatch()
    mp.chdir(project)
    try:
        module = load_generated(project / f"generated/{name}/train.py", f"train_{name}")
        if patch:
            patch(mp, module)
        trainer = module.train(project / f"runs/{name}/{run}", **kwargs)
    finally:
        mp.undo()
    metrics = [
        json.loads(x)
        for x in (project / f"runs/{name}/{run}/metrics.jsonl").read_text().splitlines()
    ]
    return trainer, metrics


@pytest.mark.parametrize(
    ("method", "trainer_name"),
    [("dpo", "DPOTrainer"), ("orpo", "ORPOTrainer"), ("kto", "KTOTrainer")],
)
def test_method_trains_with_its_trainer_and_logs_rewards(project, method, trainer_name):
    source = (project / f"generated/{method}/train.py").read_text()
    assert f"trainer = {trainer_name}(" in source
    for sft_only in ("SFTTrainer", "SFTConfig", "completion_only_loss", "label_share", "fit_rows"):
        assert sft_only not in source, sft_only
    trainer, metrics = train(project, method)
    assert type(trainer).__name__ == trainer_name
    steps = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in steps] == list(range(1, STEPS + 1))
    assert all("rewards/margins" in m and "rewards/chosen" in m for m in steps)
    if method != "kto":  # trl's KTO logs margins, not accuracies
        assert all(0.0 <= m["rewards/accuracies"] <= 1.0 for m in steps)
    assert any("eval_rewards/chosen" in m for m in metrics)  # kto: margins need both kinds
    summary = json.loads((project / f"runs/{method}/test/train_summary.json").read_text())
    assert summary["train"]["rows"] == 32 and summary["train"]["dropped"] == 0
    assert (project / f"runs/{method}/test/adapter/adapter_model.safetensors").is_file()
    # issue 24: trl's frozen "ref" adapter (dpo, kto) is neither saved nor pushed
    assert not (project / f"runs/{method}/test/adapter/ref").exists()


def test_sft_weight_adds_the_chosen_answer_s_sft_loss_at_its_weight(project):
    """At step 1 the policy is its reference (LoRA B starts at 0), so DPO's sigmoid loss is
    exactly ln 2, and what the step's loss holds beyond it is sft_weight x the chosen answer's
    token-mean NLL: the same first batch gives twice as much at weight 1.0 as at 0.5."""
    source = (project / "generated/rpo10/train.py").read_text()
    assert '"loss_type": ["sigmoid", "sft"]' in source and '"loss_weights": [1.0, 1.0]' in source
    extra = {}
    for name in ("rpo05", "rpo10"):
        _, metrics = train(project, name)
        assert metrics[0]["step"] == 1 and metrics[0]["rewards/margins"] == 0.0, metrics[0]
        extra[name] = metrics[0]["loss"] - math.log(2)
    assert extra["rpo10"] > 1.0, extra  # a random tiny model's NLL is near ln(vocab)
    assert extra["rpo10"] == pytest.approx(2 * extra["rpo05"], rel=1e-3), extra


def test_dpo_continues_the_sft_adapter_against_it(project):
    """The chain: the DPO run trains the SFT run's adapter further, and its reference is that
    adapter (token rows included), so at step 1, before any update, every reward is exactly 0.
    Without copy_reference_token_rows the reference keeps its start token rows (a trl 1.16 gap):
    rewards/chosen is then far from 0 at step 1 and this test fails."""
    from safetensors import safe_open

    train(project, "tiny", run="20260101T000000Z-parent")
    _, metrics = train(project, "chain")
    first = metrics[0]
    assert first["step"] == 1
    assert first["rewards/chosen"] == 0.0 and first["rewards/margins"] == 0.0, first
    assert any(m.get("rewards/margins", 0.0) != 0.0 for m in metrics[1:])
    parent = project / "runs/tiny/20260101T000000Z-parent/adapter"
    summary = json.loads((project / "runs/chain/test/train_summary.json").read_text())
    assert summary["adapter"] == "runs/tiny/20260101T000000Z-parent/adapter"
    config = json.loads((project / "runs/chain/test/adapter/adapter_config.json").read_text())
    assert not (project / "runs/chain/test/adapter/ref").exists()  # issue 24: no "ref" copy
    assert config["r"] == json.loads((parent / "adapter_config.json").read_text())["r"] == 8
    assert config.get("trainable_token_indices")
    with safe_open(str(project / "runs/chain/test/adapter/adapter_model.safetensors"), "pt") as f:
        assert not any(".ref" in key for key in f.keys())  # noqa: SIM118 - safe_open is no dict  # the frozen copy is not saved


def test_trl_still_leaves_the_reference_token_rows_behind(project):
    """copy_reference_token_rows is a shim: without it, the reference's token rows are not the
    parent's and step 1 (no update yet) already shows a reward. When this fails, trl copies
    them itself: drop the shim from templates/train_preference.py.j2."""
    if not (project / "runs/tiny/20260101T000000Z-parent/adapter").is_dir():
        train(project, "tiny", run="20260101T000000Z-parent")

    def without_shim(mp, module):
        mp.setattr(module, "copy_reference_token_rows", lambda model: None)
        one_step = {**module.TRAINING_ARGS, "max_steps": 1, "eval_strategy": "no"}
        mp.setattr(module, "TRAINING_ARGS", one_step)

    _, metrics = train(project, "chain", run="no-shim", patch=without_shim)
    assert abs(metrics[0]["rewards/chosen"]) > 1e-3, metrics[0]


def test_infer_answers_with_a_dpo_run(project):
    out = project / "runs/dpo/test"
    if not (out / "adapter").is_dir():
        train(project, "dpo")
    command = [sys.executable, "generated/dpo/infer.py", "--run-dir", str(out)]
    command += ["--data", "data/heldout.jsonl", "--output", str(out / "predictions.jsonl")]
    result = subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and all("prediction" in row for row in rows)


def test_missing_parent_is_a_clear_error_and_leaves_no_run(tmp_path, tiny_model_dir):
    (tmp_path / "specs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data/pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in PAIRS[:10]))
    (tmp_path / "data/heldout.jsonl").write_text("")
    spec = method_spec(tiny_model_dir, "dpo", "chain", adapter="runs/tiny/latest")
    (tmp_path / "specs/chain.yaml").write_text(spec)
    result = run_cli("run", "specs/chain.yaml", "--compile", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "model.adapter: runs/tiny/latest" in output and "specforge run specs/tiny.yaml" in output
    assert "Traceback" not in output
    assert not (tmp_path / "runs/chain").exists()
