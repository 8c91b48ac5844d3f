"""The execution plan: how one optimiser step's rows are laid out on the device.

The spec states the mathematics (rows per optimiser step, learning rate, schedule); `layout: auto`
leaves the layout to this planner, as a query planner chooses how to run a join:
- the step's rows go into as few micro-batches as memory allows. Batches are formed by rows, so
  a micro-batch's memory is planned for its worst case, every row at max_length (the token budget);
- gradient accumulation falls so that batch x accumulation stays the spec's rows per step. The loss
  is the same token mean: transformers divides each micro-batch's summed loss by the label tokens
  of the whole step (`num_items_in_batch`), however the step is split;
- gradient checkpointing goes off where the memory estimate allows it (it recomputes the forward:
  +50 % FLOPs for LoRA, whose backward has no weight gradients for the frozen base);
- among the layouts that fit, the fastest by the time model (cost.mfu_at) wins; on a tie, the one
  with fewer micro-batches.

`layout: tokens` (SFT with padding-free rows) forms micro-batches by tokens instead: the step's rows
arrive as one batch and train in micro-batches of at most `token_budget` tokens, cut between rows
(a longer row trains alone), so a micro-batch's memory is planned for the budget, not for every row
at max_length. The budget is the largest whose memory estimate fits (at least max_length, at most
the whole step at max_length); checkpointing goes off where that is faster by the time model. The
loss is the same token mean: each micro-batch's summed loss is divided by the step's label tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from specforge.modelinfo import cost
from specforge.modelinfo.params import Params, count
from specforge.modelinfo.sample import Rows, sample_rows, sequences_per_row
from specforge.modelinfo.shape import Shape, find_shape
from specforge.spec.models import Spec

MEMORY_USE = 0.9  # of the device's memory: the allocator fragments
BUDGET_ROUND = 256  # a planned token budget is a multiple of this (unless it holds the whole step)


@dataclass(frozen=True)
class Layout:
    layout: str  # "auto", "tokens" or "recipe"
    batch: int  # rows per micro-batch (tokens: the step's rows, one batch the trainer cuts)
    accumulation: int
    checkpointing: bool
    micro_tokens: float  # expected tokens per micro-batch (the sample's mean)
    budget_tokens: int  # worst case tokens per micro-batch: sequences x max_length
    memory_gib: float  # estimated peak
    step_seconds: float
    mfu: float  # the time model's
    why: str
    token_budget: int | None = None  # tokens: the most tokens in one micro-batch
    micro_batches: int = 0  # micro-batches per step, expected (the sample's mean row)
    micro_batches_worst: int = 0  # ... and with every row at max_length

    @property
    def rows_per_step(self) -> int:
        return self.batch * self.accumulation


def needs_gpu(spec: Spec) -> bool:
    """The spec's scripts need a CUDA GPU (what codegen's preflight checks for)."""
    m, t = spec.model, spec.training
    return (
        m.attn_implementation in ("flash_attention_2", "flex_attention")
        or m.quantization is not None
        or t.precision == "fp16"
    )


def layout_of(spec: Spec) -> str:
    t = spec.training
    if spec.method != "sft":  # the planner models SFT's step; preference methods keep the recipe
        return "recipe"
    return t.layout or ("auto" if needs_gpu(spec) else "recipe")


def device_of(spec: Spec, override: str | None = None) -> cost.Device:
    name = override or spec.training.gpu or ("A100-80GB" if needs_gpu(spec) else "cpu")
    return cost.DEVICES[name]


def estimate(
    spec: Spec,
    shape: Shape,
    params: Params,
    device: cost.Device,
    rows: Rows,
    *,
    batch: int,
    accumulation: int,
    checkpointing: bool,
    why: str,
    layout: str,
) -> Layout:
    """Memory and time of one layout (a Layout holding them)."""
    micro_tokens = batch * rows.mean_tokens
    budget = batch * sequences_per_row(spec) * spec.training.max_length
    mem = cost.memory(
        spec, shape, params, device, micro_tokens=budget, checkpointing=checkpointing
    ).total
    step_tokens = batch * accumulation * rows.mean_tokens
    flops = cost.step_flops(
        params,
        shape,
        tokens=step_tokens,
        sum_sq=batch * accumulation * rows.mean_sq_tokens,
        forwards=cost.extra_forwards(spec),
    )
    mfu = cost.mfu_at(device, micro_tokens)
    recompute = 1.5 if checkpointing else 1.0
    seconds = flops * recompute / (device.peak_tflops * 1e12 * mfu)
    return Layout(
        layout=layout,
        batch=batch,
        accumulation=accumulation,
        checkpointing=checkpointing,
        micro_tokens=micro_tokens,
        budget_tokens=budget,
        memory_gib=mem / cost.GIB,
        step_seconds=seconds,
        mfu=mfu / recompute,
        why=why,
        micro_batches=accumulation,
        micro_batches_worst=accumulation,
    )


def estimate_tokens(
    spec: Spec,
    shape: Shape,
    params: Params,
    device: cost.Device,
    rows: Rows,
    *,
    token_budget: int,
    checkpointing: bool,
    why: str,
) -> Layout:
    """Memory and time of the token-budget layout: the spec's rows per step in micro-batches of at
    most `token_budget` tokens (a row longer than the budget alone)."""
    t = spec.training
    per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps
    longest = sequences_per_row(spec) * t.max_length
    step_tokens = per_step * rows.mean_tokens
    expected = max(1, math.ceil(step_tokens / token_budget))
    worst = math.ceil(per_step / max(1, token_budget // longest))
    # a row longer than the budget trains alone; no micro-batch holds more than the whole step
    peak = min(max(token_budget, longest), per_step * longest)
    mem = cost.memory(
        spec, shape, params, device, micro_tokens=peak, checkpointing=checkpointing
    ).total
    flops = cost.step_flops(
        params, shape, tokens=step_tokens, sum_sq=per_step * rows.mean_sq_tokens
    )
    micro_tokens = step_tokens / expected
    mfu = cost.mfu_at(device, micro_tokens)
    recompute = 1.5 if checkpointing else 1.0
    return Layout(
        layout="tokens",
        batch=per_step,
        accumulation=1,
        checkpointing=checkpointing,
        micro_tokens=micro_tokens,
        budget_tokens=peak,
        memory_gib=mem / cost.GIB,
        step_seconds=flops * recompute / (device.peak_tflops * 1e12 * mfu),
        mfu=mfu / recompute,
        why=why,
        token_budget=token_budget,
        micro_batches=expected,
        micro_batches_worst=worst,
    )


def largest_budget(
    spec: Spec, shape: Shape, params: Params, device: cost.Device, *, checkpointing: bool
) -> int | None:
    """The most tokens per micro-batch whose memory estimate fits the device: at least one row at
    max_length, at most the whole step at max_length; None when one longest row does not fit."""
    t = spec.training
    longest = sequences_per_row(spec) * t.max_length
    whole_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * longest
    limit = device.memory_gib * MEMORY_USE * cost.GIB

    def fits(tokens: int) -> bool:
        used = cost.memory(
            spec, shape, params, device, micro_tokens=tokens, checkpointing=checkpointing
        )
        return used.total <= limit

    if not fits(longest):
        return None
    if fits(whole_step):
        return whole_step
    low, high = longest, whole_step  # fits(low), not fits(high): memory grows with tokens
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return max(longest, low // BUDGET_ROUND * BUDGET_ROUND)


def choose(spec: Spec, shape: Shape, params: Params, rows: Rows, device: cost.Device) -> Layout:
    """The plan for this spec on this device (the recipe's own layout unless layout is auto or
    tokens)."""
    t = spec.training
    args = (spec, shape, params, device, rows)
    recipe = estimate(
        *args,
        batch=t.per_device_train_batch_size,
        accumulation=t.gradient_accumulation_steps,
        checkpointing=t.gradient_checkpointing,
        why="the spec's layout (training.layout: recipe)",
        layout="recipe",
    )
    if layout_of(spec) == "recipe":
        return recipe
    if t.packing:
        return _with_why(recipe, "packing: a batch holds packed sequences, not the spec's rows")
    if spec.launch.strategy == "fsdp":
        return _with_why(recipe, "FSDP shards the weights: this memory model is one device's")
    if layout_of(spec) == "tokens":
        if t.padding_free is False:
            return _with_why(recipe, "tokens: needs padding-free rows (training.padding_free)")
        return choose_tokens(spec, shape, params, rows, device) or _with_why(
            recipe, f"tokens: no row of max_length {t.max_length} fits {device.name}'s memory"
        )
    per_step = recipe.rows_per_step
    limit = device.memory_gib * MEMORY_USE
    fits = []
    for accumulation in (a for a in range(1, per_step + 1) if per_step % a == 0):
        for checkpointing in (False, True):
            option = estimate(
                *args,
                batch=per_step // accumulation,
                accumulation=accumulation,
                checkpointing=checkpointing,
                why="",
                layout="auto",
            )
            if option.memory_gib <= limit:
                fits.append(option)
    if not fits:
        return _with_why(recipe, f"no layout of {per_step} rows fits {device.name}'s memory")
    best = min(fits, key=lambda o: (round(o.step_seconds, 6), o.accumulation))
    split = f"{per_step} rows/step in {best.accumulation} micro-batch(es) of {best.batch}"
    ckpt = "checkpointing on" if best.checkpointing else "checkpointing off"
    why = f"{split}, {ckpt}: est. {best.memory_gib:.0f} of {device.memory_gib:.0f} GiB on {device.name}"
    return _with_why(best, why)


def choose_tokens(
    spec: Spec, shape: Shape, params: Params, rows: Rows, device: cost.Device
) -> Layout | None:
    """The token-budget layout: training.token_budget, or the largest budget that fits; with
    checkpointing off where that is faster (with the spec's budget: off where it fits). None: not
    even one row of max_length fits."""
    args = (spec, shape, params, device, rows)
    override = spec.training.token_budget
    options = []
    for checkpointing in (False, True):
        budget = largest_budget(spec, shape, params, device, checkpointing=checkpointing)
        if budget is not None and override is not None:
            planned = estimate_tokens(*args, token_budget=override, checkpointing=False, why="")
            budget = override if planned.budget_tokens <= budget else None
        if budget is not None:
            options.append(
                estimate_tokens(*args, token_budget=budget, checkpointing=checkpointing, why="")
            )
    if override is not None:
        options = options[:1]
        if not options:  # the spec's budget stands; the estimate says it will not fit
            option = estimate_tokens(*args, token_budget=override, checkpointing=True, why="")
            return _with_why(
                option,
                f"token budget {override:,} (training.token_budget): does not fit "
                f"{device.name}'s memory by the estimate (est. {option.memory_gib:.0f} GiB)",
            )
    if not options:
        return None
    best = min(options, key=lambda o: (round(o.step_seconds, 6), o.checkpointing))
    source = "training.token_budget" if override else "the largest that fits"
    why = (
        f"{best.batch} rows/step in micro-batches of <= {best.token_budget:,} tokens ({source}): "
        f"{best.micro_batches} expected, {best.micro_batches_worst} with every row at max_length; "
        f"checkpointing {'on' if best.checkpointing else 'off'}: est. {best.memory_gib:.0f} of "
        f"{device.memory_gib:.0f} GiB on {device.name}"
    )
    return _with_why(best, why)


def _with_why(layout: Layout, why: str) -> Layout:
    return replace(layout, why=why)


def compiled_plan(spec: Spec, device) -> Layout | None:
    """The layout compile emits (codegen's plan and explain ask this), from the sources every checkout
    reads alike (no Hub cache, no prepared model); None when auto has no shape to plan with."""
    shape = find_shape(spec, hub_cache=False)
    if shape is None:
        if layout_of(spec) in ("auto", "tokens"):
            return None
        shape = find_shape(spec)  # the recipe needs no shape; explain's estimates do
        if shape is None:
            return None
    return choose(spec, shape, count(spec, shape), sample_rows(spec, caches=False), device)


def plan_line(spec: Spec) -> str:
    """The layout compile chose, in one line (`specforge run --dry-run`)."""
    t = spec.training
    recipe = (
        f"{t.per_device_train_batch_size} rows x {t.gradient_accumulation_steps}, "
        f"checkpointing {'on' if t.gradient_checkpointing else 'off'}"
    )
    if layout_of(spec) == "recipe":
        return f"recipe: {recipe}"
    plan = compiled_plan(spec, device_of(spec))
    if plan is None:
        return f"recipe: {recipe} (auto has no model shape to plan with: see specforge explain)"
    return f"{plan.layout}: {plan.why} (recipe: {recipe})"
