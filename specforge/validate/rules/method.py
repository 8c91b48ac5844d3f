"""SF030: each method's data fields and hyperparameters, and what only some methods take.
SF021: the first rows of a local .jsonl of preference conversations have the shapes the spec
declares (the prompt a list of turns, each answer a message, a list of messages or text)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from specforge.core.errors import Location
from specforge.spec.models import DPO_LOSSES, KTO_LOSSES, ConversationSpec, LoraSpec
from specforge.validate.registry import (
    Context,
    Finding,
    LocalSource,
    error,
    rule,
    spec_location,
    warning,
)

PAIRED = ("dpo", "orpo", "reward")  # methods that train on (chosen, rejected) pairs
LOSSES: dict[str, tuple[str, ...]] = {"dpo": DPO_LOSSES, "kto": KTO_LOSSES, "orpo": ()}


def suggest_hint(value: str, allowed) -> list[str]:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return [f"did you mean `{close[0]}`?"] if close else []


@rule("SF030")
def method_data_fields(ctx: Context) -> Iterator[Finding]:
    """The fields a method reads from a row: rejected for pairs, label_field for kto."""
    method, p = ctx.spec.method, ctx.spec.prompt
    if p.conversation is not None:
        yield from conversation_answers(method, p.conversation)
        if p.rejected is not None and method in PAIRED:
            yield error(
                ("prompt", "rejected"),
                "a conversation's answers are columns: prompt.rejected does not apply",
                "name the column under prompt.conversation.rejected",
            )
    elif method in PAIRED and p.rejected is None:
        yield error(
            ("prompt",),
            f"method {method} trains on preference pairs but prompt.rejected is not set",
            'add the dispreferred answer, e.g. rejected: "{rejected}<response|end>" '
            "(prompt.completion is the preferred one)",
        )
    if method == "kto" and p.label_field is None:
        yield error(
            ("prompt",),
            "method kto needs prompt.label_field: the column saying whether a row's completion "
            "is desirable",
            "add label_field: label (a column of true/false)",
        )
    if method != "kto" and p.label_field is not None:
        yield error(("prompt", "label_field"), f"label_field is for kto, not {method}")
    if method not in PAIRED and p.rejected is not None:
        kto = ["kto takes one completion a row, labelled by label_field"] if method == "kto" else []
        yield error(("prompt", "rejected"), f"rejected is for dpo/orpo, not {method}", *kto)


def conversation_answers(method: str, c: ConversationSpec) -> Iterator[Finding]:
    """Which answer columns a conversation names: chosen and rejected for pairs, completion
    (or the last turn) for kto, none for sft (it learns every assistant turn)."""
    at = ("prompt", "conversation")
    wanted = {"sft": (), "kto": ("completion",)}.get(method, ("chosen", "rejected"))
    for key in ("chosen", "rejected", "completion"):
        if getattr(c, key) is not None and key not in wanted:
            why = {
                "sft": "sft learns every assistant turn of the conversation",
                "kto": "kto takes one answer a row: completion (null: the last turn)",
            }.get(method, "a pair's answers are chosen and rejected")
            yield error((*at, key), f"{key} is not a {method} answer column: {why}")
    if method in PAIRED:
        for key in ("chosen", "rejected"):
            if getattr(c, key) is None:
                yield error(
                    at,
                    f"method {method} trains on preference pairs but "
                    f"prompt.conversation.{key} is not set",
                    f"name the column of the {'preferred' if key == 'chosen' else 'dispreferred'}"
                    " answer: a message, a list of messages (its last) or text",
                )
        if c.chosen is not None and c.chosen == c.rejected:
            yield error((*at, "rejected"), f"chosen and rejected are both column {c.chosen}")
        if c.rejected is not None and c.rejected == c.column != c.chosen:
            yield error(
                (*at, "rejected"),
                "the prompt is rejected's turns: name chosen's column as `column` instead",
            )


@rule("SF030")
def preference_only_sections(ctx: Context) -> Iterator[Finding]:
    """sft takes no preference settings; a continued adapter brings its own LoRA config."""
    spec = ctx.spec
    if spec.method == "sft":
        for key, value in (
            (("preference",), spec.preference),
            (("model", "adapter"), spec.model.adapter),
        ):
            if value is not None:
                yield error(
                    key,
                    f"{'.'.join(key)} is for dpo/orpo/kto, not sft",
                    "set method: dpo (or orpo, kto), or remove it",
                )
    # a lora section equal to the defaults says nothing (a resolved spec writes it out);
    # LoraSpec() is built only when there is an adapter (its validator costs start-up)
    if (
        spec.model.adapter is not None
        and spec.lora is not None
        and "lora" in spec.model_fields_set
        and spec.lora != LoraSpec()
    ):
        yield warning(
            ("lora",),
            "lora is not used: training continues model.adapter's LoRA (its adapter_config.json)",
            "remove the lora section",
        )


@rule("SF030")
def preference_hyperparameters(ctx: Context) -> Iterator[Finding]:
    """Each preference setting belongs to the methods whose trainer takes it."""
    method, pref = ctx.spec.method, ctx.spec.preference
    if pref is None:
        return
    if pref.loss_type is not None and method in LOSSES and pref.loss_type not in LOSSES[method]:
        allowed = LOSSES[method]
        yield error(
            ("preference", "loss_type"),
            f"loss_type {pref.loss_type!r} is not a {method} loss"
            + (f" ({', '.join(allowed)})" if allowed else " (orpo has one loss)"),
            *suggest_hint(pref.loss_type, allowed),
        )
    if pref.sft_weight is not None and method != "dpo":
        why = "orpo's loss already holds one" if method == "orpo" else "its trainer has no sft loss"
        yield error(("preference", "sft_weight"), f"sft_weight is for dpo, not {method}: {why}")
    if method != "kto":
        for key in ("desirable_weight", "undesirable_weight"):
            # null (the default; a resolved spec writes it) is "not set"
            if getattr(pref, key) is not None:
                yield error(("preference", key), f"{key} is for kto, not {method}")


@rule("SF030")
def sft_only_settings(ctx: Context) -> Iterator[Finding]:
    """Mixtures, truncation and packing are sft's: the preference trainers read one source and
    pad each batch."""
    method, p, t = ctx.spec.method, ctx.spec.prompt, ctx.spec.training
    if method in ("sft", "pretrain"):  # pretrain's own: SF070
        return
    if ctx.spec.dataset.sources is not None:
        yield error(
            ("dataset", "sources"),
            f"dataset.sources is for sft; {method} reads one source",
            "use dataset.path",
        )
    if p.truncate_field is not None:
        yield error(
            ("prompt", "truncate_field"),
            f"truncate_field is for sft: {method} drops (and counts) rows over training.max_length",
            "remove it, or raise training.max_length",
        )
    for name, batching in (("packing", t.packing), ("padding_free", t.padding_free)):
        if batching:
            yield error(
                ("training", name),
                f"{name} is for sft; trl 1.16's {method} trainer pads each batch",
            )


@rule("SF030")
def pair_answers_end_alike(ctx: Context) -> Iterator[Finding]:
    """Both answers of a pair end with the stop token, so the pair differs only in the answer."""
    p, stop = ctx.spec.prompt, ctx.spec.stop_token()
    if (
        ctx.spec.method in PAIRED
        and p.rejected is not None
        and stop
        and not p.rejected.endswith(stop)
    ):
        yield warning(
            ("prompt", "rejected"),
            f"rejected does not end with the stop token {stop} that completion ends with",
            "both answers should end alike, so the pair differs only in the answer",
        )


# -- SF021: the rows of preference conversations


@rule("SF021")
def preference_rows_have_their_shapes(ctx: Context) -> Iterator[Finding]:
    """The first rows of a local .jsonl: the prompt column a list of turns with known roles,
    each answer column a message, a list of messages or text, one form in every row: the checks
    train.py makes on every row, located at the data file's line."""
    c = ctx.spec.prompt.conversation
    if c is None or ctx.spec.method == "sft":
        return
    last_turn = ctx.spec.method == "kto" and c.completion in (None, c.column)
    for source in ctx.local_sources:
        if source.data is None or source.file.suffix.lower() != ".jsonl":
            continue
        problems: dict[tuple[str, str], list[int]] = {}
        forms: dict[str, tuple[str, int]] = {}  # column -> (form, line) of its first row
        for line, row in source.data.rows:
            if not isinstance(row, dict):
                continue
            for key, problem in row_problems(row, c, forms=forms, line=line, last_turn=last_turn):
                problems.setdefault((key, problem), []).append(line)
        for (key, problem), lines in problems.items():
            yield located(ctx, source, key=key, problem=problem, lines=lines)


def located(
    ctx: Context, source: LocalSource, *, key: str, problem: str, lines: list[int]
) -> Finding:
    """A problem at the data file's first line that has it, the others counted."""
    path = ("prompt", "conversation", key)
    more = f" (and line(s) {', '.join(map(str, lines[1:6]))}{' ...' if len(lines) > 6 else ''})"
    hint = (
        f"prompt.conversation.{key} ({spec_location(ctx, path)}) declares it: fix the rows, or "
        "map the data's names there (role_key, content_key, roles)"
    )
    return Finding(
        path,
        f"{problem}{more if len(lines) > 1 else ''}",
        (hint,),
        location=Location(source.name, lines[0], 1),
    )


def row_problems(
    row: dict, c: ConversationSpec, *, forms: dict[str, tuple[str, int]], line: int, last_turn: bool
) -> Iterator[tuple[str, str]]:
    """(spec key, problem) for each column of `row` that does not have its declared shape."""
    roles: dict[str, str] = {"system": "system", "user": "user", "assistant": "assistant"}
    roles |= c.roles
    answers = [(key, getattr(c, key)) for key in ("chosen", "rejected", "completion")]
    named = [(k, v) for k, v in answers if v is not None]
    prompt = [] if c.column in [v for _, v in named] else [("column", c.column)]
    for key, column in prompt + named:
        if column not in row:
            continue  # a missing column is SF010's
        value, turns = row[column], column == c.column
        form = (
            "list" if isinstance(value, list) else "message" if isinstance(value, dict) else "text"
        )
        if turns and form != "list":
            yield key, f"{column} is {form_name(form)}, but the prompt's turns are declared there"
            continue
        first = forms.setdefault(column, (form, line))
        if first[0] != form:
            yield (
                key,
                f"{column} is {form_name(form)}, but {form_name(first[0])} in line {first[1]}",
            )
            continue
        answer = key != "column" or last_turn
        problem = shape_problem(value, c, roles=roles, answer=answer)
        if problem is None and turns and answer and len(value) < 2:
            problem = "a prompt and an answer need two turns at least"
        if problem is not None:
            yield key, f"{column}: {problem}"


def form_name(form: str) -> str:
    return {"list": "a list", "message": "a message (a mapping)", "text": "text"}[form]


def shape_problem(value, c: ConversationSpec, *, roles: dict[str, str], answer: bool) -> str | None:
    """Why `value` is not a message, a list of messages or (an answer's) text; `answer`: its
    last (or only) message is an assistant turn."""
    if isinstance(value, str):
        return None if value.strip() or not answer else "an empty answer"
    if value is None:
        return "null"
    turns = value if isinstance(value, list) else [value]
    if not turns:
        return "an empty list"
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get(c.role_key) is None:
            return f"turn {i} has no {c.role_key!r}"
        if turn[c.role_key] not in roles:
            return f"turn {i}: role {turn[c.role_key]!r} is not one of {', '.join(sorted(roles))}"
        if not isinstance(turn.get(c.content_key), str):
            return f"turn {i} has no text under {c.content_key!r}"
    last = turns[-1]
    if answer and roles[last[c.role_key]] != "assistant":
        return f"the answer's role {last[c.role_key]!r} is not an assistant's"
    if answer and not last[c.content_key].strip():
        return "an empty answer"
    return None
