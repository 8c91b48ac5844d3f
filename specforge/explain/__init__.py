"""`specforge explain`: what a spec will cost, and the execution plan, before any weight loads.

No torch: the model's shape comes from a config file, GGUF metadata or a built-in table
(shape.py); parameters, FLOPs, memory and time are arithmetic (params.py, cost.py); the layout is
the planner's (layout.py), the same one compile emits into train.py.
"""

from __future__ import annotations

import math
from dataclasses import replace

from specforge.modelinfo import cost
from specforge.modelinfo.cost import Device
from specforge.modelinfo.layout import (
    Layout,
    choose,
    compiled_plan,
    device_of,
    estimate,
    estimate_tokens,
    layout_of,
)
from specforge.modelinfo.params import Params, count
from specforge.modelinfo.sample import Rows, sample_rows
from specforge.modelinfo.shape import Shape, find_shape
from specforge.runs.lineage import parent_lora_config
from specforge.spec.models import Spec

CONVENTION = (
    "F = (4 N_frozen + 6 N_trained) T + 12 L d_attn sum(l^2): frozen base 4N (forward and "
    "activation gradients), trained 6N, attention per row (benchmarks/gpu_check.py); "
    "checkpointing's recompute is not counted in MFU; each forward-only pass (dpo's "
    "reference, kto's reference and KL passes) adds 2 N T + 4 L d_attn sum(l^2); N counts "
    "4-bit weights whole"
)


# trl 1.16 patches the model with its own chunked LM head + loss and refuses Liger's fused linear
# cross-entropy (it would replace that forward); use_liger_kernel adds Liger's layer kernels only
FUSED_LOSS = "trl's chunked fused LM head (always on in trl 1.16; Liger's is refused by trl)"


NO_SHAPE = (
    "the recipe: compile plans from a local folder's config.json, a GGUF header or specforge's "
    "table, never from one machine's Hub cache (the checked-in scripts must compile alike "
    "everywhere); point model.name at a local folder for the auto layout"
)


class Unknown(Exception):
    """The model's shape is in no source explain can read."""


def explain(spec: Spec, gpu: str | None = None) -> dict:
    """The whole report as plain data (what `--format json` prints)."""
    shape = find_shape(spec)
    if shape is None:
        raise Unknown(
            f"model {spec.model.name!r}: no config.json in a local folder or the Hub cache, no "
            "GGUF header, and not in specforge's table; download its config.json "
            "(hf download NAME config.json) or point model.name at a folder"
        )
    parent = parent_lora_config(spec.model.adapter) if spec.model.adapter else None
    params = count(spec, shape, parent)
    rows = sample_rows(spec)
    device = device_of(spec, gpu)
    plan = _layout(spec, shape, params, rows, device)
    step_rows = plan.rows_per_step * spec.launch.world_size()
    step_tokens = step_rows * rows.mean_tokens
    flops = cost.step_flops(
        params,
        shape,
        tokens=step_tokens,
        sum_sq=step_rows * rows.mean_sq_tokens,
        forwards=cost.extra_forwards(spec),
    )
    train_rows, steps_per_epoch, steps = _steps(spec, rows, step_rows)
    memory = {
        checkpointing: cost.memory(
            spec,
            shape,
            params,
            device,
            micro_tokens=plan.budget_tokens,
            checkpointing=checkpointing,
        ).as_gib()
        for checkpointing in (False, True)
    }
    return {
        "spec": spec.name,
        "model": _model_section(spec, shape),
        "parameters": _parameters_section(params),
        "data": {
            "rows": rows.count,
            "train_rows": train_rows,
            "tokens_per_row": round(rows.mean_tokens, 1),
            "from": rows.source,
        },
        "step": {
            "rows": step_rows,
            "tokens": round(step_tokens),
            "flops": flops,
            "flop_convention": CONVENTION,
            "flops_per_token": round(flops / step_tokens) if step_tokens else None,
        },
        "memory_gib": {
            "planned": round(plan.memory_gib, 2),
            "device": device.memory_gib,
            "without_checkpointing": memory[False],
            "with_checkpointing": memory[True],
            "micro_batch_tokens_worst_case": plan.budget_tokens,
        },
        "time": {
            **_time_section(device, plan, steps=steps, steps_per_epoch=steps_per_epoch),
            "tokens_per_second": round(step_tokens / plan.step_seconds),
        },
        "plan": _plan_section(spec, plan),
        "layouts": _layouts(spec, shape, params, rows, device),
    }


def _layout(spec: Spec, shape: Shape, params: Params, rows: Rows, device: Device) -> Layout:
    """The layout compile emits, with its estimates from the best sources explain has (the Hub
    cache's tokenizer too)."""
    plan = compiled_plan(spec, device)
    if plan is None:  # compile keeps the recipe: say why; estimate it with what explain knows
        plan = choose(_as_recipe(spec), shape, params, rows, device)
        plan = replace(plan, why=NO_SHAPE)
    if plan.token_budget is not None:
        return estimate_tokens(
            spec,
            shape,
            params,
            device,
            rows,
            token_budget=plan.token_budget,
            checkpointing=plan.checkpointing,
            why=plan.why,
        )
    return estimate(
        spec,
        shape,
        params,
        device,
        rows,
        batch=plan.batch,
        accumulation=plan.accumulation,
        checkpointing=plan.checkpointing,
        why=plan.why,
        layout=plan.layout,
    )


def _layouts(spec: Spec, shape: Shape, params: Params, rows: Rows, device: Device) -> list[dict]:
    """Each layout the spec could ask for (recipe, auto, tokens), as compile would plan it on this
    device, side by side: what `training.layout` buys (SFT only; other methods keep the recipe)."""
    if spec.method != "sft":
        return []
    out = []
    for name in ("recipe", "auto", "tokens"):
        training = spec.training.model_copy(update={"layout": name})
        plan = _layout(spec.model_copy(update={"training": training}), shape, params, rows, device)
        step_tokens = plan.rows_per_step * spec.launch.world_size() * rows.mean_tokens
        out.append(
            {
                "layout": name,
                "planned": plan.layout,
                "per_device_train_batch_size": plan.batch,
                "gradient_accumulation_steps": plan.accumulation,
                "token_budget": plan.token_budget,
                "micro_batches": plan.micro_batches,
                "micro_batches_worst_case": plan.micro_batches_worst,
                "gradient_checkpointing": plan.checkpointing,
                "memory_gib": round(plan.memory_gib, 1),
                "step_seconds": round(plan.step_seconds, 4),
                "tokens_per_second": round(step_tokens / plan.step_seconds),
                "mfu": round(plan.mfu, 4),
            }
        )
    return out


def _steps(spec: Spec, rows: Rows, step_rows: int) -> tuple[int | None, int | None, int | None]:
    """(training rows, optimiser steps per epoch, steps in the run); None where unknown."""
    t = spec.training
    train_rows = None
    if rows.count is not None:
        fraction = spec.dataset.validation_fraction or 0.0
        train_rows = rows.count - math.ceil(rows.count * fraction)
    steps_per_epoch = math.ceil(train_rows / step_rows) if train_rows else None
    if t.max_steps is not None:
        steps = t.max_steps
    elif steps_per_epoch is not None:
        steps = math.ceil(steps_per_epoch * t.num_train_epochs)
    else:
        steps = None
    return train_rows, steps_per_epoch, steps


def _model_section(spec: Spec, shape: Shape) -> dict:
    return {
        "name": spec.model.name,
        "shape_from": shape.source,
        "hidden": shape.hidden,
        "layers": shape.layers,
        "heads": shape.heads,
        "kv_heads": shape.kv_heads,
        "intermediate": shape.intermediate,
        "vocab": shape.vocab,
        "tied_embeddings": shape.tied,
    }


def _token_rows_line(p: dict, *, tied: bool) -> str:
    """The new tokens' trained rows: in the embedding (a tied head shares it) and an untied
    head, except in a layer that lora.modules_to_save trains whole."""
    saved = p.get("modules_to_save", {})

    def whole(name: str) -> bool:
        return any(name.endswith(entry) for entry in saved)

    inside = ": in the modules trained whole"
    if tied:
        where = inside if whole("embed_tokens") or whole("lm_head") else ""
    else:
        pairs = (("embed_tokens", "embedding"), ("lm_head", "head"))
        layers = [label for name, label in pairs if not whole(name)]
        where = f", {' and '.join(layers)}" if layers else inside
    rows = len(p["trained_tokens"])
    return f"    tokens   {p['new_token_rows']:,} ({rows} new token rows{where})"


def _parameters_section(params: Params) -> dict:
    return {
        "total": params.total,
        "trainable": params.trainable,
        "trainable_percent": round(100 * params.trainable / params.total, 4),
        **({"full_finetuning": True} if params.full else {}),
        "lora": params.lora,
        **({"lora_from": params.lora_from} if params.lora_from else {}),
        "new_token_rows": params.token_rows,
        **({"modules_to_save": params.saved} if params.saved else {}),
        "new_tokens": params.new_tokens,
        "trained_tokens": params.trained_tokens,
    }


def _time_section(
    device: Device, plan: Layout, *, steps: int | None, steps_per_epoch: int | None
) -> dict:
    return {
        "device": device.name,
        "peak_tflops": device.peak_tflops,
        "assumed_mfu": round(plan.mfu, 4),
        "step_seconds": round(plan.step_seconds, 4),
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "epoch_seconds": round(plan.step_seconds * steps_per_epoch, 1) if steps_per_epoch else None,
        "run_seconds": round(plan.step_seconds * steps, 1) if steps else None,
    }


def _plan_section(spec: Spec, plan: Layout) -> dict:
    t = spec.training
    return {
        "layout": plan.layout,
        "requested": t.layout or f"null -> {layout_of(spec)}",
        "per_device_train_batch_size": plan.batch,
        "gradient_accumulation_steps": plan.accumulation,
        "gradient_checkpointing": plan.checkpointing,
        "token_budget": plan.token_budget,
        "micro_batches": {"expected": plan.micro_batches, "worst_case": plan.micro_batches_worst},
        "recipe": {
            "per_device_train_batch_size": t.per_device_train_batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation_steps,
            "gradient_checkpointing": t.gradient_checkpointing,
        },
        "attention": _attention(spec),
        # a reward model has a score head and no LM head
        "fused_cross_entropy": "none: a score head" if spec.method == "reward" else FUSED_LOSS,
        "liger_kernel": t.use_liger_kernel,
        "why": plan.why,
    }


def _as_recipe(spec: Spec) -> Spec:
    training = spec.training.model_copy(update={"layout": "recipe"})
    return spec.model_copy(update={"training": training})


def _attention(spec: Spec) -> str:
    attn, t = spec.model.attn_implementation, spec.training
    if spec.method not in ("sft", "pretrain"):  # the preference and reward collators pad
        pairs = " (chosen and rejected)" if spec.prompt.rejected is not None else ""
        return f"{attn}, rows{pairs} padded to the longest in the batch"
    if t.packing:
        return f"{attn}, packed rows of max_length"
    if t.padding_free is not False:
        kernel = {"flash_attention_2": "flash-attn varlen", "flex_attention": "flex block-sparse"}
        return f"{attn}, padding-free rows ({kernel.get(attn, 'block-diagonal mask')})"
    return f"{attn}, rows padded to the longest in the batch"


def _n(value: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (row count unknown)"
    hours, rest = divmod(seconds, 3600)
    return f"{int(hours)} h {rest / 60:.0f} min" if hours else f"{seconds / 60:.1f} min"


def render_text(report: dict) -> str:
    """The report as a reader sees it on a terminal."""
    m, p, d, s = report["model"], report["parameters"], report["data"], report["step"]
    mem, t, plan = report["memory_gib"], report["time"], report["plan"]
    lora = ", ".join(f"{k} {_n(v)}" for k, v in p["lora"].items())
    full = p.get("full_finetuning", False)
    rec = plan["recipe"]
    lines = [
        (
            f"{report['spec']}: {m['name']} ({m['layers']} layers, hidden {m['hidden']}, "
            f"vocab {m['vocab']}; shape from {m['shape_from']})"
        ),
        "",
        "parameters",
        f"  total      {p['total']:,}",
        f"  trainable  {p['trainable']:,} ({p['trainable_percent']:.4f} %)",
    ]
    if full:
        lines.append("    full fine-tuning (lora: null): every weight, new token rows included")
    else:
        lines.append(f"    LoRA     {lora}")
        if p.get("lora_from"):
            lines.append(f"             (the parent adapter's r and targets: {p['lora_from']})")
        lines.append(_token_rows_line(p, tied=m["tied_embeddings"]))
        if saved := p.get("modules_to_save"):
            lines.append(
                f"    whole    {sum(saved.values()):,} (modules_to_save: {', '.join(saved)})"
            )
    lines += [
        "",
        "step",
        f"  rows       {s['rows']} per optimiser step",
        f"  tokens     {s['tokens']:,} ({d['tokens_per_row']} per row, from {d['from']})",
        f"  FLOPs      {_n(s['flops'])} ({_n(s['flops_per_token'] or 0)} per token)",
        f"             {s['flop_convention']}",
        "",
        (
            f"memory (GiB, {t['device']}: {mem['device']:g}; micro-batch worst case "
            f"{mem['micro_batch_tokens_worst_case']:,} tokens)"
        ),
    ]
    for label, key in (
        ("no checkpointing", "without_checkpointing"),
        ("checkpointing", "with_checkpointing"),
    ):
        x = mem[key]
        trained = "gradients/optimizer" if full else "adapter/optimizer"
        reference = f" + reference {x['reference']:.2f}" if "reference" in x else ""
        lines.append(
            f"  {label:<17} weights {x['weights']:.2f} + {trained} "
            f"{x['adapter_and_optimizer']:.2f} + activations {x['activations']:.2f} + logits "
            f"{x['logits']:.2f} + overhead {x['overhead']:.2f}{reference} = {x['total']:.2f}"
        )
    lines += [
        "",
        f"time ({t['device']}, peak {t['peak_tflops']:g} TFLOP/s, at {t['assumed_mfu']:.1%} MFU)",
        f"  step       {t['step_seconds']:.3f} s",
        f"  epoch      {_duration(t['epoch_seconds'])} ({t['steps_per_epoch'] or '?'} steps)",
        f"  this run   {_duration(t['run_seconds'])} ({t['steps'] or '?'} steps)",
        f"  tokens/s   {t['tokens_per_second']:,}",
        "",
        f"plan: layout {plan['layout']} (training.layout: {plan['requested']})",
        *_micro_batch_lines(plan),
        (
            f"  checkpointing        {'on' if plan['gradient_checkpointing'] else 'off'} "
            f"(recipe {'on' if rec['gradient_checkpointing'] else 'off'})"
        ),
        f"  attention            {plan['attention']}",
        f"  fused cross-entropy  {plan['fused_cross_entropy']}",
        f"  Liger layer kernels  {'on' if plan['liger_kernel'] else 'off'} (training.use_liger_kernel)",
        f"  why                  {plan['why']}",
        *_layout_lines(report["layouts"], t["device"]),
    ]
    return "\n".join(lines)


def _micro_batch_lines(plan: dict) -> list[str]:
    rec, budget = plan["recipe"], plan["token_budget"]
    n = plan["micro_batches"]
    if budget is None:
        return [
            (
                f"  micro-batch          {plan['per_device_train_batch_size']} rows "
                f"(recipe {rec['per_device_train_batch_size']})"
            ),
            (
                f"  accumulation         {plan['gradient_accumulation_steps']} "
                f"(recipe {rec['gradient_accumulation_steps']})"
            ),
        ]
    rows = plan["per_device_train_batch_size"]
    return [
        (
            f"  token budget         {budget:,} tokens a micro-batch, cut between rows "
            f"(the step's {rows} rows, one batch; a longer row alone)"
        ),
        (
            f"  micro-batches        {n['expected']} a step expected, {n['worst_case']} at worst "
            f"(every row at max_length; recipe: {rec['gradient_accumulation_steps']} of "
            f"{rec['per_device_train_batch_size']} rows)"
        ),
    ]


def _layout_lines(layouts: list[dict], device: str) -> list[str]:
    """The layouts side by side (predicted): what `training.layout` buys."""
    if not layouts:
        return []
    lines = [
        "",
        f"layouts (predicted on {device}; training.layout picks one)",
        "  layout  micro-batch       micro-batches  ckpt  GiB    step s  tokens/s  MFU",
    ]
    for x in layouts:
        if x["token_budget"] is not None:
            micro = f"<= {x['token_budget']:,} tokens"
        else:
            micro = f"{x['per_device_train_batch_size']} rows"
        count = f"{x['micro_batches']} ({x['micro_batches_worst_case']} worst)"
        kept = "" if x["planned"] == x["layout"] else f"  (kept {x['planned']})"
        lines.append(
            f"  {x['layout']:<7} {micro:<17} {count:<14} {'on' if x['gradient_checkpointing'] else 'off':<5} "
            f"{x['memory_gib']:<6.1f} {x['step_seconds']:<7.3f} {x['tokens_per_second']:<9,} "
            f"{x['mfu']:.1%}{kept}"
        )
    return lines
