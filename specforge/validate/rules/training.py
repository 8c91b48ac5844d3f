"""Rules on training settings: validation data (SF002, SF003), steps and schedules (SF004),
batching (SF012) and decoding knobs that do nothing (SF013)."""

from __future__ import annotations

from collections.abc import Iterator

from specforge.spec import schedulers
from specforge.spec.models import is_local_path
from specforge.validate.registry import Context, Finding, error, rule, warning


@rule("SF002")
def one_validation_source(ctx: Context) -> Iterator[Finding]:
    """One validation source, and a local file has no named splits."""
    ds = ctx.spec.dataset
    if ds.validation_fraction is not None and ds.validation_split is not None:
        yield error(
            ("dataset", "validation_split"), "set validation_fraction or validation_split, not both"
        )
    if ds.validation_split is not None and ds.path is not None and is_local_path(ds.path):
        yield error(
            ("dataset", "validation_split"),
            "a local file has one split",
            "use dataset.validation_fraction",
        )


@rule("SF003")
def evaluation_needs_data(ctx: Context) -> Iterator[Finding]:
    """Evaluation needs validation data."""
    t, ds = ctx.spec.training, ctx.spec.dataset
    has_validation = ds.validation_fraction is not None or ds.validation_split is not None
    if t.eval_strategy != "no" and not has_validation:
        yield error(
            ("training", "eval_strategy"),
            f"eval_strategy is {t.eval_strategy!r} but there is no validation data",
            "set dataset.validation_fraction (e.g. 0.1) or dataset.validation_split",
            'or set training.eval_strategy: "no"',
        )


@rule("SF004")
def steps_and_warmup(ctx: Context) -> Iterator[Finding]:
    """A `steps` strategy needs its step count; warmup is steps or a ratio, not both."""
    t = ctx.spec.training
    if t.eval_strategy == "steps" and t.eval_steps is None:
        yield error(
            ("training", "eval_steps"), "eval_strategy is 'steps' but eval_steps is not set"
        )
    if t.save_strategy == "steps" and t.save_steps is None:
        yield error(
            ("training", "save_steps"), "save_strategy is 'steps' but save_steps is not set"
        )
    if t.save_strategy == "best" and t.eval_strategy == "no":
        yield error(("training", "save_strategy"), "save_strategy 'best' needs evaluation")
    if t.warmup_steps is not None and t.warmup_ratio is not None:
        yield error(
            ("training", "warmup_steps"),
            "set warmup_steps or warmup_ratio, not both",
            "remove one (write `warmup_ratio: null` to drop one inherited through `extends`)",
        )


@rule("SF004")
def scheduler_arguments(ctx: Context) -> Iterator[Finding]:
    """A schedule's arguments: the Trainer checks them only when it builds it, at step 1 of a run."""
    t = ctx.spec.training
    for problem in schedulers.check(t.lr_scheduler_type, t.lr_scheduler_kwargs, t.learning_rate):
        path = ("training", "lr_scheduler_kwargs", problem.key)
        yield error(
            path if problem.key else ("training", "lr_scheduler_type"),
            problem.message,
            *problem.hints,
        )


@rule("SF012")
def batching_layout(ctx: Context) -> Iterator[Finding]:
    """Packing and padding-free batching exclude each other; packing wants a varlen kernel."""
    t, attention = ctx.spec.training, ctx.spec.model.attn_implementation
    if t.packing and t.padding_free:
        yield error(("training", "padding_free"), "packing and padding_free exclude each other")
    if t.packing and attention not in ("flash_attention_2", "flex_attention"):
        yield warning(
            ("training", "packing"),
            "packing without flash or flex attention builds a dense mask per packed row: "
            "more memory, no gain",
            "use padding_free (the default) or attn_implementation: flash_attention_2 / flex_attention",
        )


@rule("SF013")
def greedy_sampling_knobs(ctx: Context) -> Iterator[Finding]:
    """Sampling knobs do nothing under greedy decoding."""
    inf = ctx.spec.inference
    if not inf.do_sample and (inf.temperature is not None or inf.top_p is not None):
        yield warning(
            ("inference", "do_sample"),
            "temperature/top_p are ignored with greedy decoding",
            "set do_sample: true or remove them",
        )
