"""Rules on the base model: remote code (SF001) and the weights' dtype against the precision and
attention kernel they run under (SF005)."""

from __future__ import annotations

from collections.abc import Iterator

from specforge.validate.registry import Context, Finding, error, rule

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
