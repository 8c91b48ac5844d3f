"""SF030: each method's data fields and hyperparameters, and what only some methods take."""

from __future__ import annotations

import difflib
from collections.abc import Iterator

from specforge.spec.models import DPO_LOSSES, KTO_LOSSES, LoraSpec
from specforge.validate.registry import Context, Finding, error, rule, warning

PAIRED = ("dpo", "orpo")  # methods that train on (chosen, rejected) pairs
LOSSES: dict[str, tuple[str, ...]] = {"dpo": DPO_LOSSES, "kto": KTO_LOSSES, "orpo": ()}


def suggest_hint(value: str, allowed) -> list[str]:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return [f"did you mean `{close[0]}`?"] if close else []


@rule("SF030")
def method_data_fields(ctx: Context) -> Iterator[Finding]:
    """The fields a method reads from a row: rejected for pairs, label_field for kto."""
    method, p = ctx.spec.method, ctx.spec.prompt
    if method in PAIRED and p.rejected is None:
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
    # a lora section equal to the defaults says nothing (a resolved spec writes it out)
    written = "lora" in spec.model_fields_set and spec.lora != LoraSpec()
    if spec.model.adapter is not None and spec.lora is not None and written:
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
    if pref.loss_type is not None and method != "sft" and pref.loss_type not in LOSSES[method]:
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
    """Mixtures, conversations, truncation and packing are sft's: the preference trainers read
    one source of flat rows and pad each batch."""
    method, p, t = ctx.spec.method, ctx.spec.prompt, ctx.spec.training
    if method == "sft":
        return
    for key, on in (
        (("dataset", "sources"), ctx.spec.dataset.sources),
        (("prompt", "conversation"), p.conversation),
    ):
        if on is not None:
            yield error(
                key,
                f"{'.'.join(key)} is for sft; {method} reads one source of flat rows",
                "use dataset.path and prompt.template/completion (or prompt.messages)",
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
