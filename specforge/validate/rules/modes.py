"""SF070-SF073: continued pretraining and reward models; a separate evaluation dataset; early
stopping; TF32 and activation offloading.

SF070  pretrain reads raw text (prompt.text_column) from one source; reward scores pairs
SF071  dataset.eval_path replaces the split of the training data, not both; a local one exists
SF072  early stopping needs evaluations to compare and checkpoints to go back to
SF073  activation offloading needs a trainer that has it
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from specforge.spec.models import is_local_path
from specforge.validate.registry import Context, Finding, error, rule, warning

NEW_METHODS = ("pretrain", "reward")


@rule("SF070")
def pretrain_reads_raw_text(ctx: Context) -> Iterator[Finding]:
    """pretrain: a text column, one source, no answers to score; text_column: pretrain's only."""
    spec, p = ctx.spec, ctx.spec.prompt
    if spec.method != "pretrain":
        if p.text_column is not None:
            yield error(
                ("prompt", "text_column"),
                f"text_column is raw text for method pretrain, not {spec.method}",
                "set method: pretrain, or use prompt.template and completion",
            )
        return
    if p.text_column is None:
        yield error(
            ("prompt",),
            "method pretrain trains on raw text: set prompt.text_column",
            "e.g. prompt: {text_column: text}",
        )
    if spec.dataset.sources is not None:
        yield error(
            ("dataset", "sources"),
            "pretrain reads one source of text (a mixture is not supported yet)",
            "use dataset.path",
        )
    if spec.inference.labels is not None:
        yield error(
            ("inference", "labels"),
            "pretrain has no answers to score: held-out text is scored by perplexity",
            "remove inference.labels",
        )
    if not spec.training.packing:
        yield warning(
            ("training", "packing"),
            "pretrain without packing: each document over training.max_length loses its end, "
            "and every batch is padded",
            "set training.packing: true (documents are split across rows, never cut)",
        )


@rule("SF070")
def new_methods_take_no_preference_settings(ctx: Context) -> Iterator[Finding]:
    """pretrain and reward have no preference hyperparameters and start from the base model."""
    spec = ctx.spec
    if spec.method not in NEW_METHODS:
        return
    if spec.preference is not None:
        yield error(
            ("preference",),
            f"preference is for dpo/orpo/kto, not {spec.method}",
            "remove the preference section",
        )
    if spec.model.adapter is not None:
        yield error(
            ("model", "adapter"),
            f"{spec.method} starts from the base model (continuing a run is dpo/orpo/kto's)",
            "remove model.adapter",
        )


@rule("SF070")
def reward_head_is_saved(ctx: Context) -> Iterator[Finding]:
    """reward: a score head reads the base tokenizer's text; the adapter saves "score"."""
    spec = ctx.spec
    if spec.method != "reward":
        return
    if spec.tokenizer.special_tokens.all():
        yield error(
            ("tokenizer", "special_tokens"),
            "reward adds no tokens: a score head reads the text as the base tokenizer writes it",
            "remove tokenizer.special_tokens",
        )
    saved = spec.lora.modules_to_save if spec.lora is not None else None
    if saved and "score" not in saved:
        yield error(
            ("lora", "modules_to_save"),
            "a reward adapter must train and save the new score head: add `score`",
        )


@rule("SF071")
def one_evaluation_source(ctx: Context) -> Iterator[Finding]:
    """dataset.eval_path is evaluated instead of a split of the training data."""
    ds = ctx.spec.dataset
    if ds.eval_path is None:
        if ds.eval_split is not None:
            yield error(("dataset", "eval_split"), "eval_split is the split of dataset.eval_path")
        return
    for key in ("validation_fraction", "validation_split"):
        if getattr(ds, key) is not None:
            yield error(
                ("dataset", key),
                f"{key} and eval_path both name the evaluation rows",
                f"keep one: eval_path (another dataset) or {key} (part of this one)",
            )
    local = is_local_path(ds.eval_path)
    if ctx.check_files and local and not Path(ds.eval_path).expanduser().is_file():
        yield error(
            ("dataset", "eval_path"),
            f"local evaluation dataset {ds.eval_path} does not exist",
            "relative paths resolve from the project root (where you run specforge)",
        )


@rule("SF072")
def early_stopping_can_compare(ctx: Context) -> Iterator[Finding]:
    """Early stopping compares evaluations and ends with the best checkpoint (transformers'
    load_best_model_at_end: checkpoints at the evaluations, or save_strategy best)."""
    t, ds = ctx.spec.training, ctx.spec.dataset
    if t.early_stopping_patience is None:
        if t.early_stopping_threshold is not None:
            yield error(
                ("training", "early_stopping_threshold"),
                "early_stopping_threshold needs training.early_stopping_patience",
            )
        return
    validation = ds.validation_fraction or ds.validation_split or ds.eval_path
    if t.eval_strategy == "no" or validation is None:
        yield error(
            ("training", "early_stopping_patience"),
            "early stopping needs evaluations: set training.eval_strategy and a validation set",
            "eval_strategy: steps with eval_steps, and dataset.validation_fraction (or eval_path)",
        )
        return
    if t.save_strategy == "best":
        return
    if t.save_strategy != t.eval_strategy:
        yield error(
            ("training", "save_strategy"),
            f"early stopping goes back to the best checkpoint: save_strategy {t.save_strategy} "
            f"must be eval_strategy's ({t.eval_strategy}), or best",
            "set save_strategy: best (a checkpoint whenever the metric improves)",
        )
    elif t.eval_strategy == "steps" and (t.save_steps or 500) % (t.eval_steps or 500) != 0:
        yield error(
            ("training", "save_steps"),
            f"save_steps ({t.save_steps}) must be a multiple of eval_steps ({t.eval_steps}) "
            "for early stopping to go back to the best checkpoint",
        )


@rule("SF073")
def activation_offloading_trainer(ctx: Context) -> Iterator[Finding]:
    """trl 1.16's ORPOConfig has no activation_offloading."""
    if ctx.spec.training.activation_offloading and ctx.spec.method == "orpo":
        yield error(
            ("training", "activation_offloading"),
            "trl 1.16's ORPO trainer has no activation offloading",
            "use training.gradient_checkpointing to save memory instead",
        )
