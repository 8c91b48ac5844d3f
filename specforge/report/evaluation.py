"""Where the tuned model fails: the held-out scores tuned against base (or parent), and for
classification the confusion matrices side by side and per-label precision, recall and F1; for
generative tasks exact match, token-F1, ROUGE-L (and JSON field match); then sample answers.

Per-label figures are derived from the recorded confusion matrix (strict answers: an answer that
is not exactly a label counts as `other`), the same rows eval_*.json's accuracy describes.
"""

from __future__ import annotations

from specforge.report.headline import NAMES, change, figure
from specforge.report.html import el, esc, note, num, pct, table, text
from specforge.report.run_data import RunView, answer_column
from specforge.runs.scoring import OTHER, gold_text, normalise, token_f1

SAMPLES = 6  # rows of each kind (wrong, right) in the sample table
CELL = 280  # characters of a prompt shown in a sample row


def _scores_table(view: RunView) -> str:
    tuned, base = view.tuned or {}, view.base or {}
    keys = [k for k in NAMES if isinstance(tuned.get(k), int | float)]
    counts = ("n", "outside_label_set", "gold_outside_label_set", "cut_answers", "empty_answers")
    rows = []
    for key in keys:
        delta = esc((change(key, tuned[key], base.get(key)) or ("",))[0])
        rows.append([esc(NAMES[key]), figure(key, tuned[key]), figure(key, base.get(key)), delta])
    for key in counts:
        if key in tuned:
            rows.append([esc(key.replace("_", " ")), num(tuned.get(key)), num(base.get(key)), ""])
    for field, share in (tuned.get("field_match") or {}).items():
        other = (base.get("field_match") or {}).get(field)
        rows.append([esc(f"JSON field {field}"), pct(share), pct(other), ""])
    return table(["metric", "tuned", view.base_name, "change"], rows, id_="scores")


def _confusion(matrix: dict, labels: list[str], caption: str, id_: str) -> str:
    columns = [*labels, OTHER]
    head = el("tr", el("th", "gold \\ answer") + "".join(text("th", c) for c in columns))
    body = ""
    for gold in labels:
        row = matrix.get(gold) or {}
        total = sum(row.values()) or 1
        cells = ""
        for answer in columns:
            count = row.get(answer, 0)
            shade = f"--share:{count / total:.2f}"
            kind = "hit" if answer == gold else "miss"
            cells += el("td", esc(count), class_=f"cm {kind}", style=shade)
        body += el("tr", text("th", gold) + cells)
    return el(
        "figure",
        el("table", el("thead", head) + el("tbody", body), class_="confusion", id=id_)
        + text("figcaption", caption),
        class_="matrix",
    )


def per_label(
    matrix: dict, labels: list[str]
) -> dict[str, tuple[float | None, float | None, float | None, int]]:
    """label -> (precision, recall, F1, gold rows) from a confusion matrix; None where undefined."""
    out = {}
    for label in labels:
        hits = (matrix.get(label) or {}).get(label, 0)
        gold = sum((matrix.get(label) or {}).values())
        predicted = sum((matrix.get(other) or {}).get(label, 0) for other in labels)
        precision = hits / predicted if predicted else None
        recall = hits / gold if gold else None
        f1 = 2 * hits / (gold + predicted) if gold + predicted else None
        out[label] = (precision, recall, f1, gold)
    return out


def _per_label_table(view: RunView, labels: list[str]) -> str:
    tuned = per_label((view.tuned or {}).get("confusion") or {}, labels)
    base = per_label((view.base or {}).get("confusion") or {}, labels) if view.base else {}
    rows = []
    for label in labels:
        p, r, f, gold = tuned[label]
        bp, br, bf, _ = base.get(label, (None, None, None, 0))
        rows.append(
            [
                esc(label),
                num(gold),
                ratio(p),
                ratio(r),
                ratio(f),
                ratio(bp),
                ratio(br),
                ratio(bf),
            ]
        )
    side = view.base_name
    headers = [
        "label",
        "gold rows",
        "precision",
        "recall",
        "F1",
        f"precision {side}",
        f"recall {side}",
        f"F1 {side}",
    ]
    return table(headers, rows, id_="per-label")


def prompt_text(row: dict, gold_key: str | None) -> str:
    """What the model was asked: the row's own columns (a conversation's last user turn)."""
    parts = []
    for key, value in row.items():
        if key in (gold_key, "prediction"):
            continue
        if isinstance(value, list) and value and isinstance(value[-1], dict):
            users = [t for t in value if isinstance(t, dict) and t.get("role") in ("user", "human")]
            value = (users or value)[-1].get("content", value[-1].get("value", ""))
        parts.append(f"{key}: {value}")
    shown = "\n".join(parts)
    return shown if len(shown) <= CELL else shown[: CELL - 1] + "…"


def _correct(answer: str, gold: str, labels: list[str] | None) -> bool:
    if labels:
        return answer.strip().lower() == gold.strip().lower()
    return normalise(answer) == normalise(gold)


def _answer(answer: str, gold: str, labels: list[str] | None) -> str:
    right = _correct(answer, gold, labels)
    mark = el("span", "✓" if right else "✗", class_="ok" if right else "bad")
    score = "" if labels else el("span", f" F1 {token_f1(answer, gold):.2f}", class_="score")
    shown = answer if answer.strip() else "(empty)"
    return mark + " " + el("span", esc(shown), class_="answer") + score


def pick_samples(view: RunView, gold_key: str) -> tuple[list[int], list[int]]:
    """Row indices the tuned model got wrong (those the base got right, the regressions, first)
    and right (those the base got wrong, the gains, first); SAMPLES of each at most."""
    tuned, base = view.predictions.get("tuned") or [], view.predictions.get("base") or []
    labels = view.labels
    wrong: list[tuple[bool, int]] = []
    right: list[tuple[bool, int]] = []
    for i, row in enumerate(tuned):
        gold = gold_text(row.get(gold_key, ""))
        ok = _correct(str(row.get("prediction", "")), gold, labels)
        base_ok = i < len(base) and _correct(str(base[i].get("prediction", "")), gold, labels)
        (right if ok else wrong).append((base_ok == ok, i))  # disagreements with base first
    return [i for _, i in sorted(wrong)[:SAMPLES]], [i for _, i in sorted(right)[:SAMPLES]]


def samples_section(view: RunView) -> str:
    tuned, base = view.predictions.get("tuned") or [], view.predictions.get("base") or []
    gold_key = answer_column(view.resolved)
    if not tuned:
        return note("Sample answers: not recorded (no predictions.jsonl).")
    if gold_key is None:
        return note("Sample answers: the gold column could not be read from the recorded spec.")
    rows = []
    wrong, right = pick_samples(view, gold_key)
    for i in wrong + right:
        row = tuned[i]
        gold = gold_text(row.get(gold_key, ""))
        base_answer = str(base[i].get("prediction", "")) if i < len(base) else None
        rows.append(
            [
                esc(i + 1),
                el("span", esc(prompt_text(row, gold_key)), class_="prompt"),
                text("span", gold, class_="gold"),
                _answer(str(row.get("prediction", "")), gold, view.labels),
                _answer(base_answer, gold, view.labels) if base_answer is not None else esc("-"),
            ]
        )
    headers = ["row", "prompt", "gold", "tuned", view.base_name]
    intro = note(
        f"{len(wrong)} held-out rows the tuned model answered wrong and {len(right)} it answered "
        f"right (of {len(tuned)}, at most {SAMPLES} of each); rows where the {view.base_name} "
        "answered otherwise come first."
    )
    return (
        text("h3", "Sample answers") + intro + table(headers, rows, id_="samples", class_="samples")
    )


def evaluation_section(view: RunView) -> str:
    if not view.tuned:
        return note(
            "Held-out evaluation: not recorded (the spec has no eval_data or labels to score, "
            "or the run stopped before it)."
        )
    body = _scores_table(view)
    labels = view.labels
    if labels and "confusion" in view.tuned:
        matrices = _confusion(view.tuned["confusion"], labels, "tuned", "confusion-tuned")
        if view.base and "confusion" in view.base:
            matrices += _confusion(view.base["confusion"], labels, view.base_name, "confusion-base")
        body += text("h3", "Confusion matrices (rows: gold label; columns: the answer)")
        body += el("div", matrices, class_="matrices")
        body += text("h3", "Per label") + _per_label_table(view, labels)
    return body + samples_section(view)


def ratio(value: float | None) -> str:
    """A precision, recall or F1; a dash where it is undefined (no answer, or no gold row, was
    that label), which is not the same as 0."""
    return esc("–") if value is None else num(value, 3)
