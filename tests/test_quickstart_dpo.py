"""The SFT -> DPO chain on the real SmolLM2-135M weights: specs/quickstart.yaml, then
specs/quickstart-dpo.yaml on top of its adapter, both through `specforge run`, with few steps.

Marked slow (minutes on 2 CPU cores); CI runs it. Both runs evaluate on their validation split
instead of the 120 held-out rows, to keep it short.
"""

from __future__ import annotations

import json

import pytest

from specforge.artifacts import file_sha256
from tests.conftest import copy_repo_specs, run_cli

SFT_STEPS, DPO_STEPS = 8, 6


def run(tmp_path, spec: str, *overrides: str):
    sets = [item for override in overrides for item in ("--set", override)]
    result = run_cli("run", spec, *sets, cwd=tmp_path, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_dpo_after_the_quickstart_continues_its_adapter_and_records_it(tmp_path):
    copy_repo_specs(tmp_path)
    specs = ("specs/quickstart.yaml", "specs/quickstart-dpo.yaml")
    assert run_cli("compile", *specs, cwd=tmp_path).returncode == 0
    missing = run_cli("run", specs[1], cwd=tmp_path, timeout=300)
    assert missing.returncode == 1 and "run specs/quickstart.yaml" in missing.stderr
    assert not (tmp_path / "runs/quickstart-dpo").exists()

    run(
        tmp_path,
        specs[0],
        f"training.max_steps={SFT_STEPS}",
        f"training.eval_steps={SFT_STEPS}",
        "inference.eval_data=null",
    )
    (parent,) = (tmp_path / "runs/quickstart").iterdir()
    result = run(
        tmp_path,
        specs[1],
        f"training.max_steps={DPO_STEPS}",
        f"training.eval_steps={DPO_STEPS}",
        "training.logging_steps=1",
        "inference.eval_data=null",
        "inference.answer_column=chosen",  # the validation pairs' gold column
        # plain DPO: after only 8 SFT steps, the shipped sft_weight's SFT term outweighs DPO's
        # in 6 steps (CI: margin -0.016); the shipped recipe's figures are in the README
        "preference.sft_weight=null",
    )
    assert "reward accuracy" in result.stdout + result.stderr
    (child,) = (tmp_path / "runs/quickstart-dpo").iterdir()
    record = json.loads((child / "run.json").read_text())
    assert record["status"] == "succeeded"
    assert record["parent"]["run_id"] == parent.name and record["parent"]["name"] == "quickstart"
    weights = parent / "adapter/adapter_model.safetensors"
    assert record["parent"]["adapter_sha256"] == file_sha256(weights)
    summary = json.loads((child / "train_summary.json").read_text())
    assert summary["adapter"] == f"runs/quickstart/{parent.name}/adapter"  # what train.py loaded
    rewards = record["results"]["rewards"]
    # step 1 scores the pairs before any update: policy == reference (the SFT adapter), a tie
    assert rewards["first_reward_accuracy"] == 0.0 and rewards["first_reward_margin"] == 0.0
    assert rewards["final_reward_accuracy"] > rewards["first_reward_accuracy"], rewards
    assert rewards["final_reward_margin"] > 0, rewards
    assert rewards["eval_reward_accuracy"] is not None
    assert record["results"]["eval_tuned"]["n"] == record["results"]["eval_base"]["n"] == 36
