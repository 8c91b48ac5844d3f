"""Held-out scoring (specforge.runs.scoring): strict and lenient accuracy, macro-F1 and the confusion
matrix describe the same rows, gold labels are normalised like answers, and cut answers show."""

from __future__ import annotations

import pytest

from specforge.runs.scoring import (
    first_label,
    lcs_length,
    normalise,
    rouge_l,
    score_labels,
    score_predictions,
    token_f1,
)

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


# --- generative scores (no labels) ----------------------------------------------------------


def test_normalise_drops_case_punctuation_articles_and_extra_spaces():
    assert normalise("  The  Lisbon, trip!") == "lisbon trip"


def test_token_f1_counts_overlap_as_a_multiset():
    # 2 common tokens (paris, city) of 3 answered and 3 gold: 2*2/(3+3)
    assert token_f1("Paris the city center", "city of Paris") == pytest.approx(2 * 2 / (3 + 3))
    assert token_f1("a", "the") == 1.0  # both empty after normalising
    assert token_f1("x", "") == 0.0


def test_rouge_l_uses_the_longest_common_subsequence():
    # LCS of "b c e" in "x b c d e" is 3: P=3/5, R=3/3, F=2*3/(5+3)
    assert rouge_l("x b c d e", "b c e") == pytest.approx(6 / 8)
    assert lcs_length(["w", "x", "y", "z"], ["z", "y", "x", "w"]) == 1
    assert rouge_l("Lisbon.", "lisbon") == 1.0


def test_without_labels_rows_get_exact_match_token_f1_and_rouge_l():
    rows = [
        {"reference": "Lisbon", "prediction": "Lisbon."},
        {"reference": "by train", "prediction": "They went by train"},
        {"reference": "Monday", "prediction": "Friday"},
    ]
    metrics = score_predictions(rows, None, "reference")
    assert metrics["n"] == 3
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    assert metrics["token_f1"] == pytest.approx((1 + 2 * 2 / (4 + 2) + 0) / 3)
    assert metrics["rouge_l"] == pytest.approx((1 + 2 * 2 / (4 + 2) + 0) / 3)
    assert "json_valid" not in metrics


def test_json_answers_report_validity_and_per_field_match():
    rows = [
        {
            "gold": {"city": "Oslo", "day": "Monday"},
            "prediction": '{"city": "Oslo", "day": "Sunday"}',
        },
        {
            "gold": {"city": "Lima", "day": "Friday"},
            "prediction": '{"city": "Lima", "day": "Friday"}',
        },
        {"gold": {"city": "Fez", "day": "Tuesday"}, "prediction": "city: Fez"},
    ]
    metrics = score_predictions(rows, None, "gold", "json")
    assert metrics["json_valid"] == pytest.approx(2 / 3)
    assert metrics["field_match"] == {"city": pytest.approx(2 / 3), "day": pytest.approx(1 / 3)}
    assert metrics["exact_match"] == pytest.approx(1 / 3)  # the gold object compared as JSON text
    assert metrics["gold_not_json"] == 0


def test_the_model_card_tables_generative_scores():
    """A run scored without labels has no accuracy: its card shows what was measured."""
    from specforge.runs.model_card import _metrics_rows

    scores = {"n": 40, "exact_match": 0.5, "token_f1": 0.61, "rouge_l": 0.625}
    results = {"eval_tuned": scores, "eval_base": {**scores, "exact_match": 0.0}}
    rows = _metrics_rows({"results": results})  # the run's record
    assert rows[0] == "| model | exact match | token-F1 | ROUGE-L | rows |"
    assert rows[2:] == [
        "| tuned (this adapter) | 50.0% | 0.610 | 0.625 | 40 |",
        "| base model | 0.0% | 0.610 | 0.625 | 40 |",
    ]
