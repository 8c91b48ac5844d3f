"""The SFT -> DPO chain on the real SmolLM2-135M weights: specs/quickstart-dpo.yaml, through
`specforge run`, on top of conftest's `quickstart_run` (make demo's SFT run), with fewer steps.

Marked slow (minutes on 2 CPU cores); CI runs it. The DPO run evaluates on its validation split
instead of the 120 held-out rows, to keep it short.
"""

from __future__ import annotations

import json

import pytest

from specforge.core.files import file_sha256
from tests.conftest import copy_repo_specs, run_cli

DPO_STEPS = 6
SPEC = "specs/quickstart-dpo.yaml"


@pytest.mark.slow
def test_dpo_without_its_parent_run_says_which_spec_to_run_first(tmp_path):
    copy_repo_specs(tmp_path)
    assert run_cli("compile", SPEC, cwd=tmp_path).returncode == 0
    missing = run_cli("run", SPEC, cwd=tmp_path, timeout=300)
    assert missing.returncode == 1 and "run specs/quickstart.yaml" in missing.stderr
    assert not (tmp_path / "runs/quickstart-dpo").exists()


@pytest.mark.slow
def test_dpo_after_the_quickstart_continues_its_adapter_and_records_it(quickstart_run):
    parent, root = quickstart_run, quickstart_run.parents[2]
    assert run_cli("compile", SPEC, cwd=root).returncode == 0
    sets = (
        f"training.max_steps={DPO_STEPS}",
        f"training.eval_steps={DPO_STEPS}",
        "training.logging_steps=1",
        "inference.eval_data=null",
        "inference.answer_column=chosen",  # the validation pairs' gold column
    )
    args = [arg for value in sets for arg in ("--set", value)]
    result = run_cli("run", SPEC, *args, cwd=root, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "reward accuracy" in result.stdout + result.stderr
    (child,) = (root / "runs/quickstart-dpo").iterdir()
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
