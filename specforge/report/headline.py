"""The top of a run's page: did it learn, did it beat the base (or the parent), and how it ended.

Each figure carries its run.json value in a data attribute (`data-tuned`, `data-base`,
`data-value`) beside the formatted text, so a test (or a script) can check the page against the
record without parsing "85.0 %".
"""

from __future__ import annotations

from specforge.report.html import el, esc, num, pct, text
from specforge.report.run_data import RunView

CLASSIFICATION = ("accuracy", "lenient_accuracy", "macro_f1")
GENERATIVE = ("exact_match", "token_f1", "rouge_l", "json_valid")
NAMES = {
    "accuracy": "accuracy",
    "lenient_accuracy": "lenient accuracy",
    "macro_f1": "macro-F1",
    "exact_match": "exact match",
    "token_f1": "token-F1",
    "rouge_l": "ROUGE-L",
    "json_valid": "JSON valid",
}
SHARES = {"accuracy", "lenient_accuracy", "exact_match", "json_valid"}  # shown as percentages


def held_out_metrics(view: RunView) -> list[str]:
    """The task's metrics the tuned evaluation has, the headline one first: the sweep's
    metric where the spec names one, else accuracy, else exact match."""
    tuned = view.tuned or {}
    found = [m for m in (*CLASSIFICATION, *GENERATIVE) if isinstance(tuned.get(m), int | float)]
    chosen = (view.resolved.get("sweep") or {}).get("metric")
    if chosen in found:
        found.remove(chosen)
        found.insert(0, chosen)
    return found


def figure(metric: str, value: float | None) -> str:
    if metric in SHARES:
        return pct(value)
    return num(value, 3)


def value_attr(value: object) -> str | None:
    return None if value is None else repr(value)


def change(metric: str, tuned: object, base: object) -> tuple[str, float] | None:
    """Tuned minus base, as text (percentage points for a share) and as a number; None
    without both."""
    if not (isinstance(tuned, int | float) and isinstance(base, int | float)):
        return None
    difference = tuned - base
    if metric in SHARES:
        return f"{difference * 100:+.1f} pts", difference
    return f"{difference:+.3f}", difference


def _metric_card(view: RunView, metric: str, *, main: bool) -> str:
    tuned = (view.tuned or {}).get(metric)
    base = (view.base or {}).get(metric)
    delta = ""
    if (found := change(metric, tuned, base)) is not None:
        shown, difference = found
        better = "up" if difference > 0 else "down" if difference < 0 else "same"
        delta = el("div", esc(shown), class_=better)
    body = text("div", NAMES.get(metric, metric), class_="label")
    body += el(
        "div",
        el("span", figure(metric, tuned), class_="tuned", data_value=value_attr(tuned))
        + el("span", " tuned", class_="side"),
        class_="figure",
    )
    body += el(
        "div",
        el("span", figure(metric, base), class_="base", data_value=value_attr(base))
        + el("span", f" {view.base_name}", class_="side"),
        class_="versus",
    )
    return el(
        "div",
        body + delta,
        class_="card main" if main else "card",
        data_metric=metric,
        data_tuned=value_attr(tuned),
        data_base=value_attr(base),
        id="headline-main" if main else None,
    )


def _loss_card(view: RunView) -> str:
    losses = view.losses
    first, final = losses.get("first_train_loss"), losses.get("final_train_loss")
    body = text("div", "train loss", class_="label")
    body += el(
        "div",
        num(first, 3) + " → " + el("span", num(final, 3), data_value=value_attr(final)),
        class_="figure small",
        id="headline-train-loss",
    )
    evaluated = losses.get("final_eval_loss")
    body += el(
        "div",
        "eval loss " + el("span", num(evaluated, 3), data_value=value_attr(evaluated)),
        class_="versus",
        id="headline-eval-loss",
    )
    return el("div", body, class_="card")


def _rewards_card(view: RunView) -> str:
    rewards = view.results.get("rewards") or {}
    if not rewards:
        return ""
    accuracy = rewards.get("eval_reward_accuracy", rewards.get("final_reward_accuracy"))
    margin = rewards.get("eval_reward_margin", rewards.get("final_reward_margin"))
    where = "eval" if "eval_reward_accuracy" in rewards else "train"
    body = text("div", f"reward accuracy ({where})", class_="label")
    body += el("div", pct(accuracy), class_="figure small", data_value=value_attr(accuracy))
    body += el("div", "margin " + num(margin, 3), class_="versus", data_value=value_attr(margin))
    return el("div", body, class_="card", id="headline-rewards")


def _what(view: RunView, metrics: list[str]) -> str:
    """The sentence under the cards: what was scored, on which rows."""
    if not metrics:
        return "No held-out evaluation recorded: the figures are the training losses."
    rows = (view.tuned or {}).get("n")
    data = (view.resolved.get("inference") or {}).get("eval_data") or "the validation split"
    side = "the parent run" if view.base_name == "parent" else "the base model"
    shown = f"{rows} held-out rows" if rows is not None else "the held-out rows"
    return f"Tuned model against {side} on {shown} ({data}), scored by specforge."


def headline(view: RunView) -> str:
    record = view.record
    status = record.get("status") or "unknown"
    metrics = held_out_metrics(view)
    cards = [_metric_card(view, m, main=i == 0) for i, m in enumerate(metrics[:4])]
    cards += [_rewards_card(view), _loss_card(view)]
    title = el("h1", esc(record.get("name") or view.dir.parent.name))
    title += el(
        "div",
        text("span", status, class_=f"status {status}", id="headline-status", data_value=status)
        + text("code", record.get("run_id") or view.dir.name),
        class_="meta",
    )
    described = view.resolved.get("description")
    intro = text("p", described, class_="description") if described else ""
    when = f"{record.get('started_at') or '?'} · {view.method}"
    duration = record.get("duration_s")
    when += f" · {minutes(duration)}" if isinstance(duration, int | float) else ""
    return el(
        "header",
        title
        + intro
        + text("p", when, class_="when")
        + el("div", "".join(cards), class_="cards")
        + text("p", _what(view, metrics), class_="what"),
        id="headline",
        data_status=status,
        data_metric=metrics[0] if metrics else None,
    )


def where_it_stopped(view: RunView, reached: int | None, planned: int | None) -> str:
    """One sentence for a run that did not succeed: status, step, training step reached."""
    record = view.record
    status = record.get("status")
    step = record.get("failed_step") or "an unknown step"
    done = record.get("completed_steps") or []
    at = f"{reached} of {planned}" if planned else str(reached)
    sentence = {
        "failed": f"The run failed in its {step} step",
        "interrupted": f"The run was interrupted during its {step} step",
        "preempted": f"The run was preempted during its {step} step",
        "running": "The run is still running (or was, when this page was written)",
    }.get(status or "", f"The run ended with status {status}")
    trained = f"; training had logged step {at}" if reached else "; no training step was logged"
    finished = f"; steps finished: {', '.join(done)}" if done else "; no step finished"
    return sentence + trained + finished + "."


def minutes(seconds: float) -> str:
    """1 h 2 min, 38 min 22 s, 53 s."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    if hours:
        return f"{hours} h {rest // 60} min"
    return f"{rest // 60} min {rest % 60} s" if rest >= 60 else f"{rest} s"
