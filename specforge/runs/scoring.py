"""Score held-out predictions: what `specforge run` records as eval_*.json.

infer.py writes one JSON row per held-out example (its columns plus `prediction`); scoring lives
here, tested once, rather than in every generated script. Strict and lenient scores are both
reported because they answer different questions: strict (the answer is exactly a label) measures
the trained output format; lenient (the first label the answer names) measures the knowledge even
when the format is off, which is how a base model that never saw the format should be compared.

Without labels the task is generative: exact match after normalising, token-F1 and ROUGE-L (the
longest common subsequence of tokens), each averaged over rows. The normalisation is SQuAD's
(lower case, punctuation and English articles removed, whitespace collapsed) so a trailing period
or "The" is not a miss; it is written out here (a dozen lines) rather than taken from a metric
package, whose tokenisers differ from version to version and would move the figures silently.
With `inference.answer_format: json` the answers are also parsed as JSON objects: the share that
parse, and per gold field the share of rows whose answer holds the same value.

Two methods score without answers: continued pretraining's infer.py writes each held-out text's
negative log-likelihood and token count (perplexity over all of them), and a reward model's
writes the scores of each row's preferred and dispreferred answer (pairwise accuracy).
"""

from __future__ import annotations

import json
import math
import re
import string
from collections import Counter
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


ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation or articles, single spaces."""
    return " ".join(ARTICLES.sub(" ", text.lower().translate(PUNCTUATION)).split())


def token_f1(answer: str, gold: str) -> float:
    """Harmonic mean of token precision and recall (multiset overlap) after normalising."""
    got, want = normalise(answer).split(), normalise(gold).split()
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    return 2 * common / (len(got) + len(want))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence (one row of the table at a time)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(answer: str, gold: str) -> float:
    """ROUGE-L F1: LCS-based precision and recall over normalised tokens."""
    got, want = normalise(answer).split(), normalise(gold).split()
    if not got or not want:
        return float(got == want)
    return 2 * lcs_length(got, want) / (len(got) + len(want))


def parse_object(text: str) -> dict | None:
    """The answer as a JSON object; None when it is not one."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def score_json(answers: list[str], expected: list[str]) -> dict:
    """JSON validity and, for each field of the gold objects, the share of rows that match it."""
    parsed = [parse_object(a) for a in answers]
    golds = [parse_object(g) for g in expected]
    fields = sorted({k for gold in golds if gold for k in gold})
    per_field = {}
    for field in fields:
        pairs = [(p, g) for p, g in zip(parsed, golds) if g and field in g]
        hits = sum(p is not None and p.get(field) == g[field] for p, g in pairs)
        per_field[field] = hits / len(pairs)
    n = len(answers)
    return {
        "json_valid": sum(p is not None for p in parsed) / n if n else 0.0,
        "gold_not_json": sum(g is None for g in golds),
        "field_match": per_field,
    }


def score_text(answers: list[str], expected: list[str], answer_format: str = "text") -> dict:
    """Generative scores, averaged over rows: normalised exact match, token-F1, ROUGE-L."""
    n = len(answers)
    pairs = list(zip(answers, expected))
    metrics = {
        "n": n,
        "exact_match": sum(normalise(a) == normalise(g) for a, g in pairs) / n if n else 0.0,
        "token_f1": sum(token_f1(a, g) for a, g in pairs) / n if n else 0.0,
        "rouge_l": sum(rouge_l(a, g) for a, g in pairs) / n if n else 0.0,
        "empty_answers": sum(not a.strip() for a in answers),
    }
    if answer_format == "json":
        metrics |= score_json(answers, expected)
    return metrics


def read_predictions(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def score_predictions(
    rows: list[dict], labels: list[str] | None, answer_column: str, answer_format: str = "text"
) -> dict | None:
    """Metrics for infer.py's rows: against the labels when the spec has them, else generative
    scores (or a pretrain run's perplexity, a reward model's pairwise accuracy); None when the
    rows carry no gold answers to score against."""
    if rows and all("nll" in row and "tokens" in row for row in rows):
        return score_perplexity(rows)
    if rows and all("chosen_score" in row and "rejected_score" in row for row in rows):
        return score_pairs(rows)
    if not rows or any(answer_column not in row for row in rows):
        return None
    answers = [str(row.get("prediction", "")) for row in rows]
    expected = [gold_text(row[answer_column]) for row in rows]
    if labels:
        return score_labels(answers, expected, labels)
    return score_text(answers, expected, answer_format)


def score_perplexity(rows: list[dict]) -> dict:
    """Held-out text: perplexity over every scored token, exp(total NLL / total tokens), so a
    long text counts by its tokens, not as one row."""
    tokens = sum(int(row["tokens"]) for row in rows)
    per_token = sum(float(row["nll"]) for row in rows) / tokens if tokens else 0.0
    return {
        "n": len(rows),
        "tokens": tokens,
        "nll_per_token": per_token,
        "perplexity": math.exp(per_token),
    }


def score_pairs(rows: list[dict]) -> dict:
    """Held-out preference pairs: the share whose preferred answer scores higher (a tie is a
    miss), and the mean margin between the two scores."""
    margins = [float(row["chosen_score"]) - float(row["rejected_score"]) for row in rows]
    n = len(margins)
    return {
        "n": n,
        "pairwise_accuracy": sum(m > 0 for m in margins) / n if n else 0.0,
        "mean_margin": sum(margins) / n if n else 0.0,
        "ties": sum(m == 0 for m in margins),
    }


def gold_text(value) -> str:
    """A gold answer as text: a JSON object or list (an answer_format: json column) as JSON."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


# -- is a difference more than noise? (paired predictions of two runs on the same rows) ---------

ROW_METRICS = ("accuracy", "lenient_accuracy", "exact_match")


def row_hits(rows: list[dict], metric: str, labels: list[str] | None, answer_column: str):
    """Per row, whether `metric` (one of ROW_METRICS) counts it right; None when it cannot be
    told per row. The gold answers ride along, so two runs' rows can be checked as the same."""
    if metric not in ROW_METRICS or not rows or any(answer_column not in r for r in rows):
        return None
    answers = [str(row.get("prediction", "")) for row in rows]
    gold = [gold_text(row[answer_column]) for row in rows]
    if metric == "exact_match":
        hits = [normalise(a) == normalise(g) for a, g in zip(answers, gold)]
    elif labels:
        canonical = {label.lower(): label for label in labels}
        pick = first_label if metric == "lenient_accuracy" else None
        hits = [
            (pick(a, labels) if pick else canonical.get(a.strip().lower(), OTHER))
            == canonical.get(g.strip().lower())
            for a, g in zip(answers, gold)
        ]
    else:
        return None
    return list(zip(gold, hits))


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided p-value of McNemar's exact test: under no difference, each row that one run gets
    right and the other wrong is a fair coin flip."""
    n, k = only_first + only_second, min(only_first, only_second)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (hits of n)."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
