"""Held-out scoring (specforge.scoring): strict and lenient accuracy, macro-F1 and the confusion
matrix describe the same rows, gold labels are normalised like answers, and cut answers show."""

from __future__ import annotations

import pytest

from specforge.scoring import first_label, score_labels, score_predictions

LABELS = ["negative", "neutral", "positive"]
FINGPT = ["strong negative", "mildly negative", "neutral", "mildly positive", "strong positive"]


def test_strict_counts_exact_answers_lenient_counts_the_first_label_named():
    answers = [
        "negative",
        ": negative\n\nThe news is bad",
        "Positive",
        "I think neutral, or positive",
    ]
    metrics = score_labels(answers, ["negative", "negative", "positive", "neutral"], LABELS)
    assert metrics["accuracy"] == pytest.approx(2 / 4)  # case-insensitive exact matches
    assert metrics["lenient_accuracy"] == pytest.approx(4 / 4)
    assert metrics["outside_label_set"] == 2


def test_gold_labels_are_normalised_like_answers():
    """Defect: predictions were normalised and gold labels were not ("Positive " never matched)."""
    metrics = score_labels(["positive", "neutral"], ["Positive ", "NEUTRAL"], LABELS)
    assert metrics["accuracy"] == 1.0 and metrics["gold_outside_label_set"] == 0


def test_gold_labels_outside_the_set_are_left_out_of_every_score():
    """Defect: they counted in accuracy but not in F1 or the confusion matrix."""
    metrics = score_labels(
        ["negative", "bullish", "neutral"], ["negative", "bullish", "neutral"], LABELS
    )
    assert metrics["n"] == 2 and metrics["gold_outside_label_set"] == 1
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert sum(sum(row.values()) for row in metrics["confusion"].values()) == 2


def test_macro_f1_averages_over_labels_with_gold_rows_only():
    """Defect: labels with no gold rows added a 0 to the average (3 labels, 2 present: 2/3)."""
    metrics = score_labels(["negative", "positive"], ["negative", "positive"], LABELS)
    assert metrics["macro_f1"] == 1.0
    wrong = score_labels(["negative", "negative"], ["negative", "positive"], LABELS)
    # negative: P 1/2, R 1 -> 2/3; positive: 0 -> macro 1/3
    assert wrong["macro_f1"] == pytest.approx(1 / 3)
    assert wrong["confusion"]["positive"]["negative"] == 1


def test_first_label_prefers_the_earliest_then_the_longest_whole_phrase():
    assert first_label("mildly negative, not strong positive", FINGPT) == "mildly negative"
    assert first_label("Strong Positive!", FINGPT) == "strong positive"
    assert first_label("nonneutral", LABELS) == "other"  # whole phrases only
    assert first_label("no idea", LABELS) == "other"


def test_cut_answers_are_counted():
    metrics = score_labels(["mildly", "neutral"], ["mildly negative", "neutral"], FINGPT)
    assert metrics["cut_answers"] == 1


def test_predictions_without_gold_answers_are_not_scored():
    assert score_predictions([{"input": "x", "prediction": "neutral"}], LABELS, "output") is None
    rows = [{"output": "neutral", "prediction": "neutral"}]
    assert score_predictions(rows, LABELS, "output")["accuracy"] == 1.0
