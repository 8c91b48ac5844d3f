"""Rules on training settings: validation data (SF002, SF003), steps and schedules (SF004),
batching (SF012), decoding knobs that do nothing (SF013), LoRA+ (SF060), GaLore and the
optimiser's own settings (SF061, SF062), the adapter's start (SF063), modules trained whole
(SF064) and unfrozen parameters (SF065)."""

from __future__ import annotations

import re
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
    sources = (ds.validation_fraction, ds.validation_split, ds.eval_path)
    has_validation = any(source is not None for source in sources)
    if t.eval_strategy != "no" and not has_validation:
        yield error(
            ("training", "eval_strategy"),
            f"eval_strategy is {t.eval_strategy!r} but there is no validation data",
            "set dataset.validation_fraction (e.g. 0.1), validation_split or eval_path",
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
    if t.packing_strategy is not None and not t.packing:
        yield error(
            ("training", "packing_strategy"),
            "packing_strategy says how rows are packed, but training.packing is false",
            "set packing: true, or remove packing_strategy",
        )
    # pretrain packs so that no document is cut (SF070): the mask's memory is its price
    varlen = attention in ("flash_attention_2", "flex_attention")
    if t.packing and not varlen and ctx.spec.method != "pretrain":
        yield warning(
            ("training", "packing"),
            "packing without flash or flex attention builds a dense mask per packed row: "
            "more memory, no gain",
            "use padding_free (the default) or attn_implementation: flash_attention_2 / flex_attention",
        )


@rule("SF014")
def layout_settings_that_do_nothing(ctx: Context) -> Iterator[Finding]:
    """`layout: tokens` plans SFT's padding-free rows and `token_budget` is its knob: elsewhere
    the planner keeps the recipe's layout (modelinfo/layout.py), and the spec would say more
    than trains."""
    spec, t = ctx.spec, ctx.spec.training
    if t.token_budget is not None and t.layout != "tokens":
        yield warning(
            ("training", "token_budget"),
            f"token_budget is for layout: tokens; layout {t.layout or 'null'} ignores it",
            "set layout: tokens, or remove token_budget",
        )
    if t.layout != "tokens":
        return
    if spec.method != "sft":
        why = f"{spec.method} trains with the recipe's layout (tokens plans SFT's rows)"
    elif t.packing:
        why = "packed rows are not the spec's rows: tokens plans padding-free ones"
    elif t.padding_free is False:
        why = "tokens cuts padding-free rows: padding_free is false"
    else:
        return
    yield warning(("training", "layout"), f"layout tokens does nothing here: {why}", "remove it")


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


@rule("SF060")
def loraplus(ctx: Context) -> Iterator[Finding]:
    """LoRA+ builds the optimizer in train.py, which the Trainer refuses under FSDP."""
    lora, launch = ctx.spec.lora, ctx.spec.launch
    if lora is None:
        return
    if lora.loraplus_lr_embedding is not None and lora.loraplus_lr_ratio is None:
        yield error(
            ("lora", "loraplus_lr_embedding"),
            "loraplus_lr_embedding is a LoRA+ setting, and LoRA+ is off",
            "set lora.loraplus_lr_ratio (e.g. 16), or remove loraplus_lr_embedding",
        )
    if lora.loraplus_lr_ratio is not None and launch.strategy == "fsdp":
        yield error(
            ("lora", "loraplus_lr_ratio"),
            "LoRA+ hands the Trainer its own optimizer, which the Trainer refuses under FSDP",
            "use launch.strategy: ddp, or remove lora.loraplus_lr_ratio",
        )


GALORE_ARGS = ("rank", "scale", "update_proj_gap", "proj_type")


@rule("SF061")
def galore(ctx: Context) -> Iterator[Finding]:
    """GaLore projects whole-weight gradients: full fine-tuning, named target modules, and (for
    the layer-wise variant) one process without gradient accumulation."""
    spec, t = ctx.spec, ctx.spec.training
    if not t.optim.startswith("galore_"):
        if t.optim_target_modules is not None:
            yield error(
                ("training", "optim_target_modules"),
                f"only GaLore optimizers read optim_target_modules; training.optim is {t.optim}",
                "set training.optim: galore_adamw (or remove optim_target_modules)",
            )
        if t.optim_args:
            yield error(
                ("training", "optim_args"),
                f"training.optim {t.optim} reads no optim_args",
                "optim_args are GaLore's settings (training.optim: galore_adamw)",
            )
        return
    if spec.lora is not None:
        yield error(
            ("training", "optim"),
            f"{t.optim} projects the gradients of whole weights; a LoRA adapter has only its "
            "small A and B matrices to train",
            "set `lora: null` (full fine-tuning), or use an AdamW optimizer with LoRA",
        )
    if t.optim_target_modules is None:
        yield error(
            ("training", "optim"),
            f"{t.optim} needs training.optim_target_modules: the linear modules it projects",
            "e.g. optim_target_modules: [self_attn, mlp], or all-linear",
        )
    for key in t.optim_args:
        if key not in GALORE_ARGS:
            yield error(
                ("training", "optim_args", key),
                f"GaLore has no setting {key!r}",
                f"GaLore's settings: {', '.join(GALORE_ARGS)}",
            )
    if t.optim.endswith("_layerwise"):
        yield from _layerwise(ctx)


def _layerwise(ctx: Context) -> Iterator[Finding]:
    t = ctx.spec.training
    if t.gradient_accumulation_steps != 1:
        yield error(
            ("training", "gradient_accumulation_steps"),
            f"{t.optim} steps each weight as its gradient arrives: it cannot accumulate "
            f"gradients (got {t.gradient_accumulation_steps})",
            "set gradient_accumulation_steps: 1, or use galore_adamw",
        )
    if ctx.spec.launch.world_size() > 1:
        yield error(
            ("training", "optim"),
            f"transformers' {t.optim} runs in one process only",
            "use galore_adamw under torchrun, or one process",
        )


ADAM_KEYS = ("adam_beta1", "adam_beta2", "adam_epsilon")


@rule("SF062")
def adam_settings(ctx: Context) -> Iterator[Finding]:
    """Adam's betas and epsilon do nothing for sgd and adafactor (a warning)."""
    t = ctx.spec.training
    if t.optim not in ("sgd", "adafactor"):
        return
    for key in ADAM_KEYS:
        if getattr(t, key) is not None:
            yield warning(
                ("training", key),
                f"training.optim {t.optim} does not read {key}",
                "remove it, or choose an AdamW optimizer",
            )


@rule("SF063")
def adapter_start(ctx: Context) -> Iterator[Finding]:
    """init_lora_weights starts a new adapter; pissa and olora also move part of the base weights,
    which needs float weights and one model holding them."""
    spec = ctx.spec
    lora = spec.lora
    if lora is None or lora.init_lora_weights == "default":
        return
    init, path = lora.init_lora_weights, ("lora", "init_lora_weights")
    if spec.model.adapter is not None:
        yield error(
            path,
            f"init_lora_weights {init} starts a new adapter; model.adapter continues a parent's",
            "remove lora.init_lora_weights (the parent's adapter is where training starts)",
        )
        return
    if not init.startswith(("pissa", "olora")):
        return
    if spec.model.quantization is not None:
        yield error(
            path,
            f"{init} decomposes the base weights, which peft does on float weights only",
            "remove model.quantization, or use init_lora_weights: default or gaussian",
        )
    if spec.method in ("dpo", "kto"):
        yield error(
            path,
            f"{init} with {spec.method}: trl adds a frozen reference adapter with the same "
            "config, which would run the decomposition again on the already moved weights",
            "use init_lora_weights: default or gaussian, or method sft/orpo",
        )
    if lora.use_dora:
        yield error(
            path,
            f"{init}'s adapter is saved converted to a plain LoRA, which has no place for "
            "DoRA's magnitude vector",
            "use init_lora_weights: default or gaussian with DoRA, or use_dora: false",
        )
    if spec.launch.strategy == "fsdp":
        yield error(
            path,
            f"{init}'s adapter is converted to a plain LoRA at save time by loading its start "
            "into the model, which FSDP has sharded",
            "use launch.strategy: ddp, or init_lora_weights: default or gaussian",
        )


@rule("SF064")
def modules_to_save(ctx: Context) -> Iterator[Finding]:
    """A module trains whole or through LoRA, not both; a parent adapter keeps its own."""
    lora = ctx.spec.lora
    if lora is None or not lora.modules_to_save:
        return
    if ctx.spec.model.adapter is not None:
        yield error(
            ("lora", "modules_to_save"),
            "model.adapter continues a parent's adapter, with the modules it saved",
            "remove lora.modules_to_save, or train a new adapter",
        )
    targets = lora.target_modules
    for i, name in enumerate(lora.modules_to_save):
        if isinstance(targets, list) and name in targets:
            yield error(
                ("lora", "modules_to_save", i),
                f"{name} is in lora.target_modules too: a module trains whole or through LoRA",
                "remove it from one of the two lists",
            )


@rule("SF065")
def unfrozen_parameters(ctx: Context) -> Iterator[Finding]:
    """Unfrozen parameters select what full fine-tuning trains; each is a regular expression."""
    spec = ctx.spec
    patterns = spec.training.unfrozen_parameters
    if patterns and spec.lora is not None:
        yield error(
            ("training", "unfrozen_parameters"),
            "unfrozen_parameters choose what full fine-tuning trains; this spec trains a LoRA "
            "adapter",
            "set `lora: null`, or train whole modules with lora.modules_to_save",
        )
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as err:
            yield error(
                ("training", "unfrozen_parameters", i),
                f"{pattern!r} is not a regular expression: {err}",
            )
