"""Rules on the base model: remote code (SF001) and the weights' dtype against the precision and
attention kernel they run under (SF005). A pre-quantized base (model.prequantized): not quantized
again (SF080), not a GGUF (SF081), trains only an adapter (SF082), bits its format has (SF083),
AWQ's float16 (SF084), what peft's layers for it cannot do (SF085), and the checkpoint's own
quantization_config where validation can read it, or a model id that names a format (SF086)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from specforge.modelinfo.vocab import hub_file
from specforge.spec.models import is_local_path
from specforge.validate.registry import Context, Finding, error, rule, warning

# (training.precision, model.dtype) pairs mixed precision cannot train
CLASHES = {("fp16", "bfloat16"), ("bf16", "float16"), ("fp32", "float16"), ("fp32", "bfloat16")}
CLASH_HINTS = {
    "fp16": "use model.dtype: float16 (or float32)",
    "bf16": "use model.dtype: bfloat16",
    "fp32": "use model.dtype: float32, or precision fp16/bf16 to match the weights",
}


@rule("SF001")
def remote_code(ctx: Context) -> Iterator[Finding]:
    """Remote code runs arbitrary Python from the Hub: refused unless asked for."""
    if ctx.spec.model.trust_remote_code and not ctx.allow_remote_code:
        yield error(
            ("model", "trust_remote_code"),
            "trust_remote_code runs code from the model repository; refused by default",
            "pass --allow-remote-code on the command line if you trust this model",
        )


@rule("SF005")
def precision_fits_dtype(ctx: Context) -> Iterator[Finding]:
    """Mixed precision must agree with the dtype the weights are loaded in."""
    dtype, precision = ctx.spec.model.dtype, ctx.spec.training.precision
    if (precision, dtype) in CLASHES:
        yield error(
            ("training", "precision"),
            f"precision {precision} does not fit weights loaded as {dtype}",
            CLASH_HINTS[precision],
        )
    if ctx.spec.model.attn_implementation == "flash_attention_2" and dtype == "float32":
        yield error(
            ("model", "attn_implementation"),
            "flash_attention_2 runs only in float16/bfloat16",
            "set model.dtype: bfloat16 or float16",
        )


# the bits each pre-quantized format stores a weight in (AWQ: 4 only; compressed-tensors' int4
# and int8/fp8 schemes)
PREQUANTIZED_BITS = {"gptq": (2, 3, 4, 8), "awq": (4,), "compressed-tensors": (4, 8)}
# a model id's suffix that names its format (TheBloke/Mistral-7B-v0.1-GPTQ, ...-AWQ)
FORMAT_SUFFIX = re.compile(r"[-_.](gptq|awq)(?:[-_.][A-Za-z0-9]+)*$", re.IGNORECASE)


@rule("SF080")
def prequantized_not_quantized_again(ctx: Context) -> Iterator[Finding]:
    """bitsandbytes quantizes float weights as they load; pre-quantized ones are integers already."""
    m = ctx.spec.model
    if m.prequantized is not None and m.quantization is not None:
        yield error(
            ("model", "quantization"),
            f"the {m.prequantized.method} checkpoint is quantized already; bitsandbytes "
            "cannot quantize its weights again",
            "remove model.quantization: the checkpoint's own quantization_config loads it",
        )


@rule("SF081")
def prequantized_not_gguf(ctx: Context) -> Iterator[Finding]:
    """A GGUF is dequantised into float weights before training: it is no GPTQ/AWQ checkpoint."""
    m = ctx.spec.model
    if m.prequantized is not None and m.gguf_file is not None:
        yield error(
            ("model", "gguf_file"),
            "a GGUF file is dequantised into float weights; it is not a "
            f"{m.prequantized.method} checkpoint",
            "remove model.prequantized (the GGUF's float weights train as they are), "
            "or model.gguf_file",
        )


@rule("SF082")
def prequantized_needs_lora(ctx: Context) -> Iterator[Finding]:
    """Packed integer weights take no gradient steps: only an adapter trains on them."""
    m = ctx.spec.model
    if m.prequantized is not None and ctx.spec.lora is None:
        yield error(
            ("model", "prequantized"),
            f"full fine-tuning trains every weight; the {m.prequantized.method} checkpoint's "
            "packed integer weights cannot take gradient steps",
            "configure a `lora:` section (an adapter trains on them), or start from the "
            "float weights the checkpoint was quantized from",
        )


@rule("SF083")
def prequantized_bits(ctx: Context) -> Iterator[Finding]:
    """Each format stores weights in the bits it has kernels for."""
    q = ctx.spec.model.prequantized
    if q is not None and q.bits not in PREQUANTIZED_BITS[q.method]:
        allowed = " or ".join(str(b) for b in PREQUANTIZED_BITS[q.method])
        yield error(
            ("model", "prequantized", "bits"),
            f"{q.method} checkpoints store {allowed}-bit weights, not {q.bits}",
            "set bits to what the checkpoint's quantization_config says",
        )


@rule("SF084")
def awq_runs_in_float16(ctx: Context) -> Iterator[Finding]:
    """transformers casts an AWQ model to float16 on a GPU (its kernels have no bfloat16)."""
    q, spec = ctx.spec.model.prequantized, ctx.spec
    if q is None or q.method != "awq":
        return
    if spec.model.dtype == "bfloat16":
        yield error(
            ("model", "dtype"),
            "AWQ's kernels run in float16: transformers loads an AWQ model as float16 on a GPU",
            "set model.dtype: float16 and training.precision: fp16",
        )
    elif spec.training.precision == "bf16":
        yield error(
            ("training", "precision"),
            "bf16 autocast over AWQ's float16 weights: transformers loads them as float16",
            "set training.precision: fp16 (and model.dtype: float16)",
        )


@rule("SF085")
def prequantized_adapter_limits(ctx: Context) -> Iterator[Finding]:
    """What peft's LoRA layers on quantized linears (and FSDP's flat parameters) cannot do."""
    spec = ctx.spec
    q, lora = spec.model.prequantized, spec.lora
    if q is None or lora is None:
        return
    init = lora.init_lora_weights
    if init.startswith(("pissa", "olora")):
        yield error(
            ("lora", "init_lora_weights"),
            f"{init} decomposes the base weights, which peft does on float weights only",
            "use init_lora_weights: default or gaussian on a pre-quantized base",
        )
    if q.method == "awq" and lora.use_dora:
        yield error(
            ("lora", "use_dora"),
            "peft's LoRA layer for AWQ has no DoRA (AwqLoraLinear refuses use_dora)",
            "set use_dora: false, or use a GPTQ checkpoint (peft's GPTQ layer has DoRA)",
        )
    if spec.launch.strategy == "fsdp":
        yield error(
            ("launch", "strategy"),
            "FSDP cannot shard packed integer weights into its flat parameters",
            "use strategy: ddp (each GPU holds the quantized model)",
        )


def _checkpoint_config(ctx: Context) -> dict | None:
    """The model's config.json where validation can read it: a local folder, or the Hub cache."""
    m = ctx.spec.model
    if m.package or m.gguf_file:
        return None
    path = Path(m.name).expanduser() / "config.json" if is_local_path(m.name) else None
    path = path or hub_file(ctx.spec, "config.json")
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path else None
    except (OSError, ValueError):
        return None


@rule("SF086")
def prequantized_matches_checkpoint(ctx: Context) -> Iterator[Finding]:
    """model.prequantized says what the checkpoint's quantization_config is: the preflight's
    packages, the adapter's preparation, explain's memory and export's refusal follow from it."""
    m = ctx.spec.model
    config = _checkpoint_config(ctx)
    quant = (config or {}).get("quantization_config")
    method = quant.get("quant_method") if isinstance(quant, dict) else None
    declared = m.prequantized.method if m.prequantized else None
    if method in PREQUANTIZED_BITS and method != declared:
        where = "model.prequantized.method" if declared else "model.prequantized"
        yield error(
            ("model", "prequantized", "method") if declared else ("model", "name"),
            f"the checkpoint's config.json says quant_method {method}"
            + (f", not {declared}" if declared else ", but model.prequantized is not set"),
            f"set {where}: {method if declared else '{method: ' + method + '}'}",
        )
    elif config is not None and declared and method is None:
        yield error(
            ("model", "prequantized"),
            f"the checkpoint's config.json has no {declared} quantization_config: its "
            "weights are not pre-quantized",
            "remove model.prequantized (or use model.quantization for QLoRA on it)",
        )
    elif config is None and declared is None and (found := FORMAT_SUFFIX.search(m.name)):
        name = found.group(1).lower()
        yield warning(
            ("model", "name"),
            f"{m.name} looks like a pre-quantized {name.upper()} checkpoint, and "
            "model.prequantized is not set",
            f"declare it: model.prequantized: {{method: {name}, bits: 4}} (the preflight then "
            "checks its packages and export refuses to merge into it)",
        )
