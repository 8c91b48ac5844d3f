"""The chat and mixture quickstarts on the real SmolLM2-135M weights, with a few steps each.

Marked slow (minutes on 2 CPU cores); CI runs them. Fast tests of the same code paths on a tiny
model are in tests/codegen/test_conversation.py and test_mixture.py.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import copy_repo_specs, run_cli

STEPS = 6


def run_spec(root, spec: str, *overrides: str) -> dict:
    sets = [f"training.max_steps={STEPS}", "training.logging_steps=2", *overrides]
    args = [arg for o in sets for arg in ("--set", o)]
    result = run_cli("run", f"specs/{spec}.yaml", *args, cwd=root, timeout=2400)
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = (root / "runs" / spec).iterdir()
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "succeeded"
    losses = record["results"]["losses"]
    assert losses["steps"] == STEPS
    assert losses["final_train_loss"] < losses["first_train_loss"], losses
    return {"run": run, "record": record, "output": result.stdout + result.stderr}


@pytest.mark.slow
def test_chat_quickstart_learns_the_assistant_turns_and_scores_tuned_against_base(tmp_path):
    copy_repo_specs(tmp_path)
    done = run_spec(tmp_path, "quickstart-chat", f"training.eval_steps={STEPS}")
    summary = json.loads((done["run"] / "train_summary.json").read_text())
    # one example per conversation (each fits max_length); the labelled share is the answers'
    assert summary["train"]["examples"] == summary["train"]["whole"] == summary["train"]["rows"]
    assert 0 < summary["label_share"] < 0.15
    tuned = done["record"]["results"]["eval_tuned"]
    base = done["record"]["results"]["eval_base"]
    assert tuned["n"] == base["n"] == 40
    for key in ("exact_match", "token_f1", "rouge_l"):
        assert 0 <= base[key] <= 1 and 0 <= tuned[key] <= 1
    assert tuned["exact_match"] > base["exact_match"], (tuned, base)
    assert tuned["rouge_l"] > base["rouge_l"], (tuned, base)
    assert "ROUGE-L" in done["output"]  # the run's summary names the scores


@pytest.mark.slow
def test_mixture_quickstart_draws_each_source_at_its_weight_and_records_them(tmp_path):
    copy_repo_specs(tmp_path)
    done = run_spec(tmp_path, "quickstart-mix", f"training.eval_steps={STEPS}")
    summary = json.loads((done["run"] / "train_summary.json").read_text())
    drawn = summary["sources"]
    assert drawn == {"data/fin_sentiment_train.jsonl": 300, "data/travel_facts.jsonl": 100}
    share = drawn["data/fin_sentiment_train.jsonl"] / sum(drawn.values())
    assert share == pytest.approx(3 / 4, abs=0.01)
    # the validation split is taken from the mixture, after drawing
    assert summary["train"]["rows"] + summary["validation"]["rows"] == 400
    sources = done["record"]["data"]["train"]["sources"]
    assert [s["path"] for s in sources] == list(drawn)
    assert all(len(s["sha256"]) == 64 for s in sources)
    assert done["record"]["results"]["eval_tuned"]["n"] == 120
