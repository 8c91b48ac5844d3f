"""Full fine-tuning of bfloat16 weights trains fp32 master copies under bf16 autocast, so AdamW's
small updates are kept (pure bf16 weights round most of them away), and saves the model in the
spec's dtype; SF033 and explain count the same 16 bytes a weight."""

from __future__ import annotations

import json

import pytest

from specforge.modelinfo import cost
from tests.conftest import REPO, load_generated, run_cli, tiny_spec

pytestmark = pytest.mark.train

LORA = """lora:
  r: 8
  alpha: 16
  dropout: 0.0
  target_modules: all-linear
"""
LR = 1.0e-5  # a full fine-tuning rate; a bf16 weight of 0.02 moves only in steps of 7.8e-5


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir) -> dict:
    """6 steps at LR of the tiny model loaded in bfloat16, bf16 autocast; the weights as
    training ended (before the save) and the start weights as loaded."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("master")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    rows = (REPO / "data/fin_sentiment_train.jsonl").read_text().splitlines()[:40]
    (root / "data/train.jsonl").write_text("\n".join(rows) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(rows[:4]) + "\n")
    text = tiny_spec(
        tiny_model_dir,
        name="bf16",
        max_steps=6,
        learning_rate=LR,
        eval_strategy="no",
        precision="bf16",
    )
    text = text.replace(LORA, "lora: null\n").replace("dtype: float32", "dtype: bfloat16")
    text = text.replace("  validation_fraction: 0.2\n", "")
    (root / "specs/bf16.yaml").write_text(text)
    result = run_cli("compile", "specs/bf16.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    module = load_generated(root / "generated/bf16/train.py", "bf16_master_train")
    ended = {}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        ended.update({n: w.detach().clone() for n, w in model.named_parameters()})

    module.MetricsFile.on_train_end = on_train_end
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    try:
        module.train(root / "runs/bf16/test")
    finally:
        mp.undo()
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    return {"root": root, "ended": ended, "start": dict(start.named_parameters())}


def test_small_updates_are_kept_in_fp32_master_weights(run):
    import torch

    changed = total = 0
    for name, start in run["start"].items():
        weight = run["ended"][name]
        assert weight.dtype == torch.float32, name
        rows = min(start.shape[0], weight.shape[0])  # the embeddings gained the new rows
        if start.dim() == 2:  # matmul weights and embeddings; norms start at exactly 1.0
            changed += int((weight[:rows] != start[:rows].float()).sum())
            total += start[:rows].numel()
    share = changed / total
    print(f"weights changed after 6 steps at lr {LR}: {share:.1%}")
    assert share > 0.99  # pure bf16 weights: about 10 % (those under 0.00256 in size)


def test_saved_model_is_in_the_spec_s_dtype(run):
    from safetensors import safe_open

    folder = run["root"] / "runs/bf16/test/model"
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        names = handle.keys()
        dtypes = {str(handle.get_slice(key).get_dtype()) for key in names}
    assert dtypes == {"BF16"}


def test_memory_estimate_is_that_of_fp32_master_weights():
    from specforge.spec.models import Spec

    for dtype in ("bfloat16", "float32"):
        spec = Spec.model_validate(
            {
                "spec_version": 1,
                "name": "t",
                "model": {"name": "m", "dtype": dtype},
                "dataset": {"path": "d.jsonl"},
                "prompt": {"template": "{q}", "completion": "{a}"},
                "lora": None,
                "training": {"precision": "bf16"},
            }
        )
        # fp32 weights, fp32 gradients, AdamW's two fp32 moments
        assert cost.MASTER_BYTES + cost.full_state_bytes(spec) == 16.0
