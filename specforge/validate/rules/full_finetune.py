"""Full fine-tuning (`lora: null`): what only LoRA can do (SF032), and whether the weights, their
gradients and the optimizer's state fit the target device (SF033, a warning).

The memory estimate is explain's torch-free arithmetic: the parameter count from the model's
shape (a local config.json, a GGUF header, the Hub cache or specforge's table) times the bytes
per weight of fp32 master weights, their gradients and the optimizer's state (train.py trains
those whatever model.dtype is, and saves in model.dtype), plus a dpo/kto reference copy in
model.dtype. No shape, no estimate: no warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from specforge.validate.registry import Context, Finding, error, rule, warning

# modelinfo is imported inside the two rules, for start-up time: only a full fine-tune
# (lora: null) needs its folder checks, shape tables and memory model, and `specforge validate`
# runs in every pre-commit hook (its start-up is held near 2x the import floor; these were 5 ms).


@rule("SF032")
def what_only_lora_does(ctx: Context) -> Iterator[Finding]:
    """Quantized weights and a LoRA adapter to start from need LoRA. (Half-precision weights do
    not: full fine-tuning trains fp32 master copies of them, saved back in model.dtype.)"""
    spec = ctx.spec
    if spec.lora is not None:
        return
    from specforge.modelinfo.folders import is_lora_adapter  # start-up time: see the top

    m = spec.model
    if m.quantization is not None:
        yield error(
            ("model", "quantization"),
            "full fine-tuning trains every weight; k-bit weights cannot take gradient steps "
            "(QLoRA trains a LoRA adapter on them)",
            "remove model.quantization, or configure a `lora:` section for QLoRA",
        )
    if m.adapter is not None and is_lora_adapter(Path(m.adapter).expanduser()):
        yield error(
            ("model", "adapter"),
            f"{m.adapter} is a LoRA adapter; full fine-tuning starts from whole weights",
            "name a merged export (`specforge export RUN --format merged`) or a full "
            "fine-tuning run's folder, or configure `lora:` to continue the adapter",
        )


@rule("SF033")
def full_states_fit(ctx: Context) -> Iterator[Finding]:
    """The weights, gradients and optimizer states of a full fine-tune fit the device (a warning)."""
    spec = ctx.spec
    if spec.lora is not None:
        return
    # start-up time: see the top
    from specforge.modelinfo import cost
    from specforge.modelinfo.layout import device_of
    from specforge.modelinfo.params import count
    from specforge.modelinfo.shape import find_shape

    shape = find_shape(spec)
    if shape is None:
        return
    params = count(spec, shape)
    device = device_of(spec)
    states, reference = cost.full_states(spec, params)
    launch = spec.launch
    shards = launch.world_size() if launch.strategy == "fsdp" else 1
    need = (states + reference) / shards / cost.GIB + cost.OVERHEAD_GIB
    if need <= device.memory_gib:
        return
    per_weight = cost.MASTER_BYTES + cost.full_state_bytes(spec)
    what = f"{params.base / 1e9:.2f} B weights x {per_weight:g} bytes"
    what += " (fp32 master weights, gradients, optimizer states)"
    if reference:
        what += f" + a {spec.method} reference copy"
    if shards > 1:
        what += f", sharded over {shards} FSDP ranks"
    path = ("lora",) if "lora" in spec.model_fields_set else ("model", "dtype")
    yield warning(
        path,
        f"full fine-tuning needs about {need:.0f} GiB per device before activations ({what}); "
        f"{device.name} has {device.memory_gib:g} GiB",
        "train a LoRA adapter (a `lora:` section), use a larger GPU (training.gpu) or shard "
        "it over more GPUs (launch.strategy: fsdp), or an 8-bit optimizer "
        "(training.optim: adamw_8bit)",
    )
