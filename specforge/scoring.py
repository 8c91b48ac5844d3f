"""Score held-out predictions against the spec's labels: what `specforge run` records as eval_*.json.

infer.py writes one JSON row per held-out example (its columns plus `prediction`); scoring lives
here, tested once, rather than in every generated script. Strict and lenient scores are both
reported because they answer different questions: strict (the answer is exactly a label) measures
the trained output format; lenient (the first label the answer names) measures the knowledge even
when the format is off, which is how a base model that never saw the format should be compared.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

OTHER = "other"


def first_label(text: str, labels: list[str]) -> str:
    """The label the answer names first, as a whole phrase; at one place the longest, so
    "mildly negative" wins over "negative". OTHER when it names none."""
    lowered = text.lower()
    found = []
    for label in labels:
        match = re.search(rf"(?<!\w){re.escape(label.lower())}(?!\w)", lowered)
        if match:
            found.append((match.start(), -len(label), label))
    return min(found)[2] if found else OTHER


def score_labels(answers: list[str], expected: list[str], labels: list[str]) -> dict:
    """Accuracy (strict and lenient), macro-F1 and the confusion matrix, case-insensitive.

    Rows whose gold label is not one of `labels` are counted (gold_outside_label_set) and left
    out of every score, so accuracy, F1 and the matrix always describe the same rows. Macro-F1
    averages over the labels that have gold rows.
    """
    canonical = {label.lower(): label for label in labels}
    scored = [
        (canonical[gold.strip().lower()], canonical.get(answer.strip().lower(), OTHER), answer)
        for gold, answer in zip(expected, answers)
        if gold.strip().lower() in canonical
    ]
    confusion = {label: dict.fromkeys([*labels, OTHER], 0) for label in labels}
    for gold, strict, _ in scored:
        confusion[gold][strict] += 1
    f1 = []
    for label in labels:
        gold_n = sum(confusion[label].values())
        predicted_n = sum(confusion[other][label] for other in labels)
        if gold_n:  # F1 = 2TP / (2TP + FP + FN) = 2TP / (gold rows + predicted rows)
            f1.append(2 * confusion[label][label] / (gold_n + predicted_n))
    n = len(scored)
    prefixes = {label.lower()[:i] for label in labels for i in range(1, len(label))}
    return {
        "n": n,
        "accuracy": sum(gold == strict for gold, strict, _ in scored) / n if n else 0.0,
        "lenient_accuracy": (
            sum(gold == first_label(answer, labels) for gold, _, answer in scored) / n if n else 0.0
        ),
        "macro_f1": sum(f1) / len(f1) if f1 else 0.0,
        "outside_label_set": sum(strict == OTHER for _, strict, _ in scored),
        "gold_outside_label_set": len(expected) - n,
        # an answer that is the start of a label was cut by inference.max_new_tokens
        "cut_answers": sum(a.strip().lower() in prefixes for a in answers if a.strip()),
        "confusion": confusion,
    }


def read_predictions(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def score_predictions(rows: list[dict], labels: list[str], answer_column: str) -> dict | None:
    """Metrics for infer.py's rows; None when they carry no gold answers to score against."""
    if not rows or any(answer_column not in row for row in rows):
        return None
    answers = [str(row.get("prediction", "")) for row in rows]
    return score_labels(answers, [str(row[answer_column]) for row in rows], labels)
