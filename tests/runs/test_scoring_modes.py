"""Scores of the two methods without answers: a pretrain run's perplexity over held-out text, a
reward model's pairwise accuracy (runs/scoring.py, which `specforge run` records)."""

from __future__ import annotations

import math

import pytest

from specforge.runs.scoring import score_predictions


def test_perplexity_weights_each_text_by_its_tokens():
    rows = [{"text": "a", "nll": 2.0, "tokens": 1}, {"text": "b c d", "nll": 3.0, "tokens": 3}]
    found = score_predictions(rows, None, "text")
    assert found == {
        "n": 2,
        "tokens": 4,
        "nll_per_token": 1.25,
        "perplexity": pytest.approx(math.exp(1.25)),
    }


def test_pairwise_accuracy_counts_a_tie_as_a_miss():
    rows = [
        {"chosen_score": 1.0, "rejected_score": 0.5},
        {"chosen_score": 0.2, "rejected_score": 0.2},
        {"chosen_score": -1.0, "rejected_score": 0.0},
        {"chosen_score": 2.0, "rejected_score": -2.0},
    ]
    found = score_predictions(rows, None, "chosen")
    assert found is not None
    assert found["pairwise_accuracy"] == 0.5 and found["ties"] == 1 and found["n"] == 4
    assert found["mean_margin"] == pytest.approx((0.5 + 0.0 - 1.0 + 4.0) / 4)
