"""GPU check: LoRA training throughput, MFU and peak memory of a Mistral-7B-shaped model.

Builds a MistralForCausalLM with random weights from a config (no download: hidden 4096,
32 layers, 32 heads, 8 KV heads, intermediate 14336, vocab 32000) in bf16 on cuda, wraps it
with LoRA r=16 on all seven projections, and trains on random token ids in the FinGPT batch
shape (batch 8; row lengths drawn uniformly from [48, 256] tokens, our estimate of FinGPT
sentiment rows under the Mistral tokenizer: a ~25-token instruction plus a sentence, tweet or
news paragraph; --min-len/--max-len change it) in four layouts:

  padded-sdpa   rows padded to the longest in the batch, attention_mask, sdpa
  packed-sdpa   padding-free: one row of concatenated sequences, position_ids restart per
                sequence, no attention_mask (transformers builds a block-diagonal mask)
  packed-flex   the same with flex_attention (torch.compile'd, block-sparse: skips the
                cross-sequence blocks); CUDA only
  packed-fa2    the same with flash_attention_2 (varlen kernels); skipped without flash_attn

Every layout sees the same batches from the same starting LoRA weights (restored before each
layout), so the first-step losses must agree (exactness) and the last losses should be close.
Per layout: non-pad tokens/s, model TFLOP/s, MFU, peak memory (torch.cuda.max_memory_allocated,
reset per layout), first and last loss.

FLOP formula (model FLOPs of one LoRA training step; recompute from gradient checkpointing is
not counted, as MFU is defined):

  F = (4 * N_frozen + 6 * N_lora) * T + 12 * L * d_attn * sum_i(l_i ** 2)

  N_frozen  weights of every matmul of the base: per layer q, k, v, o, gate, up, down, plus
            lm_head (vocab * hidden); the embedding lookup is no matmul and is left out
  4 * N     the frozen base: forward 2N per token, backward 2N for activation gradients only
            (frozen weights need no weight gradient, the "third" 2N of the usual 6N)
  6 * N     the LoRA matrices: forward, activation and weight gradients (r * (in + out) each)
  12*L*d*l  attention scores and values per token of a sequence of length l (PaLM appendix B
            convention: QK^T and AV, forward 4*L*d*l, backward twice that; causal masking is
            not halved); d_attn = heads * head_dim; summed over sequences, so padding and
            cross-sequence attention do not count as useful work
  T         non-pad tokens in the step

MFU = F / step_time / peak. Peak bf16 dense: H200/H100 SXM 989 TFLOP/s, A100 312 TFLOP/s
(from torch.cuda.get_device_name; --peak-tflops overrides). MFU@6N is the conventional
6 * N_params * T figure (as if every weight trained), printed for comparison with papers.

    python benchmarks/gpu_check.py                 # GPU, ~2-4 min on an H200
    python benchmarks/gpu_check.py --dry-run       # tiny config, 1 + 2 steps on CPU, seconds
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # bf16 dense, SXM parts


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def projection_dims(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each projection of one decoder layer."""
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return {
            "q_proj": (self.hidden, q),
            "k_proj": (self.hidden, kv),
            "v_proj": (self.hidden, kv),
            "o_proj": (q, self.hidden),
            "gate_proj": (self.hidden, self.intermediate),
            "up_proj": (self.hidden, self.intermediate),
            "down_proj": (self.intermediate, self.hidden),
        }


MISTRAL_7B = Shape(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=32000)
TINY = Shape(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=1000)


def matmul_params(shape: Shape) -> int:
    """Weights that take part in a matmul: every projection of every layer, plus lm_head."""
    per_layer = sum(i * o for i, o in shape.projection_dims().values())
    return shape.layers * per_layer + shape.vocab * shape.hidden


def total_params(shape: Shape) -> int:
    """All base weights: matmuls + input embeddings (unless tied) + RMSNorm weights."""
    embed = 0 if shape.tied else shape.vocab * shape.hidden
    norms = (2 * shape.layers + 1) * shape.hidden
    return matmul_params(shape) + embed + norms


def lora_params(shape: Shape, r: int, targets=PROJECTIONS) -> int:
    """LoRA A (in x r) and B (r x out) of each targeted projection, all layers."""
    dims = shape.projection_dims()
    return shape.layers * sum(r * (dims[t][0] + dims[t][1]) for t in targets)


def step_flops(shape: Shape, seq_lens, r: int, targets=PROJECTIONS) -> float:
    """Model FLOPs of one LoRA training step over sequences of the given lengths (see module doc)."""
    tokens = sum(seq_lens)
    dense = (4 * matmul_params(shape) + 6 * lora_params(shape, r, targets)) * tokens
    attention = 12 * shape.layers * shape.heads * shape.head_dim * sum(n * n for n in seq_lens)
    return float(dense + attention)


def six_n_flops(shape: Shape, seq_lens) -> float:
    """The conventional 6 * N * T estimate (full fine-tuning, no attention term)."""
    return 6.0 * total_params(shape) * sum(seq_lens)


def mfu(flops: float, seconds: float, peak_flops: float | None) -> float | None:
    if not peak_flops or seconds <= 0:
        return None
    return flops / seconds / peak_flops


def peak_tflops_for(device_name: str) -> float | None:
    for key, value in PEAK_TFLOPS.items():
        if key in device_name.upper():
            return value
    return None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="tiny config, CPU, 1 warm-up + 2 timed steps"
    )
    parser.add_argument(
        "--batch", type=int, default=8, help="rows per batch (default: %(default)s)"
    )
    parser.add_argument(
        "--min-len", type=int, default=48, help="shortest row (default: %(default)s)"
    )
    parser.add_argument(
        "--max-len", type=int, default=256, help="longest row (default: %(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, default=10, help="timed steps per layout (default: %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps per layout (default: %(default)s)"
    )
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default: %(default)s)")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="as specs/fingpt.yaml does"
    )
    parser.add_argument(
        "--peak-tflops", type=float, help="bf16 dense peak (default: from the device name)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.min_len, args.max_len = min(args.min_len, 12), min(args.max_len, 24)
        args.steps, args.warmup = 2, 1  # one untimed step: first-call costs
    if not 1 <= args.min_len <= args.max_len:
        parser.error("need 1 <= --min-len <= --max-len")
    return args


def make_batches(args, shape: Shape, count: int):
    """`count` batches of random ids: one list of 1-D LongTensors per batch (same for every layout)."""
    import torch

    gen = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(count):
        lens = torch.randint(args.min_len, args.max_len + 1, (args.batch,), generator=gen).tolist()
        batches.append([torch.randint(3, shape.vocab, (n,), generator=gen) for n in lens])
    return batches


def padded_inputs(rows, device):
    """Pad to the longest row: input_ids, attention_mask, labels (-100 on padding)."""
    import torch

    longest = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }, ids.numel()


def packed_inputs(rows, device):
    """One row of concatenated sequences; position_ids restart at 0; no cross-sequence label."""
    import torch

    ids = torch.cat(rows).unsqueeze(0)
    positions = torch.cat([torch.arange(len(r)) for r in rows]).unsqueeze(0)
    labels = ids.clone()
    labels[positions == 0] = -100  # the previous sequence's last token must not predict this one
    inputs = {
        "input_ids": ids.to(device),
        "position_ids": positions.to(device),
        "labels": labels.to(device),
    }
    return inputs, ids.numel()


def build_model(shape: Shape, args, device, dtype):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, MistralConfig

    config = MistralConfig(
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.intermediate,
        vocab_size=shape.vocab,
        max_position_embeddings=4096 if not args.dry_run else 256,
        sliding_window=None,
        tie_word_embeddings=shape.tied,
        rms_norm_eps=1e-5,
    )
    torch.manual_seed(args.seed)
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    if args.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    lora = LoraConfig(
        r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        lora_dropout=0.0,
        target_modules=list(PROJECTIONS),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, lora)
    return base, model


def flex_available(device: str) -> str | None:
    """None when flex_attention can run here, else why not."""
    if device != "cuda":
        return "CUDA only here (compiling it for the CPU dry run costs minutes)"
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except ImportError as err:
        return f"torch has no flex_attention ({err})"
    return None


def flash_attn_available() -> str | None:
    """None when flash_attention_2 can run here, else why not."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    if importlib.util.find_spec("flash_attn") is None:
        return "flash_attn is not importable (pip install flash-attn)"
    return None


LAYOUTS = {
    # name: (attn_implementation, batch layout)
    "padded-sdpa": ("sdpa", "padded"),
    "packed-sdpa": ("sdpa", "packed"),
    "packed-flex": ("flex_attention", "packed"),
    "packed-fa2": ("flash_attention_2", "packed"),
}


def trainable_state(model):
    """A copy of the LoRA weights, to start every layout from the same point."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def restore(model, state):
    import torch

    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in state:
                p.copy_(state[n])


def run_layout(name, base, model, batches, args, shape, device, peak):
    import torch

    cuda = device == "cuda"
    attn, layout = LAYOUTS[name]
    base.set_attn_implementation(attn)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    build = padded_inputs if layout == "padded" else packed_inputs
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model.train()
    timed, real_tokens, computed_tokens, seq_lens = 0.0, 0, 0, []
    first_loss = loss = float("nan")
    for step, rows in enumerate(batches):
        inputs, computed = build(rows, device)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        # use_cache=False as TRL's trainer passes it: with a KV cache transformers does not build
        # the per-sequence mask from position_ids, and packed rows would attend across sequences
        out = model(**inputs, use_cache=False)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        loss = float(out.loss.detach())
        if step == 0:
            first_loss = loss
        if step >= args.warmup:
            timed += elapsed
            real_tokens += sum(len(r) for r in rows)
            computed_tokens += computed
            seq_lens += [len(r) for r in rows]
    del optimizer
    steps = len(batches) - args.warmup
    flops = step_flops(shape, seq_lens, args.lora_r)
    six_n = six_n_flops(shape, seq_lens)
    return {
        "layout": name,
        "attn": attn,
        "real_per_step": real_tokens / steps,
        "computed_per_step": computed_tokens / steps,
        "step_ms": 1000 * timed / steps,
        "tokens_per_s": real_tokens / timed,
        "tflops": flops / timed / 1e12,
        "mfu": mfu(flops, timed, peak),
        "mfu_6n": mfu(six_n, timed, peak),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "first_loss": first_loss,
        "loss": loss,
    }


def fmt(value, pattern):
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, pattern)
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.dry_run:
        shape, device, dtype = TINY, "cpu", torch.float32
        torch.set_num_threads(1)  # tiny tensors: threads only add sync cost on a shared CPU
        device_name = "CPU (dry run, tiny config)"
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device; use --dry-run on CPU")
        shape, device, dtype = MISTRAL_7B, "cuda", torch.bfloat16
        device_name = torch.cuda.get_device_name()
    peak_tflops = args.peak_tflops or (None if args.dry_run else peak_tflops_for(device_name))
    peak = peak_tflops * 1e12 if peak_tflops else None

    print(f"device: {device_name}; peak bf16 {fmt(peak_tflops, '.0f')} TFLOP/s")
    print(
        f"shape: hidden {shape.hidden}, layers {shape.layers}, heads {shape.heads}/{shape.kv_heads} kv, "
        f"intermediate {shape.intermediate}, vocab {shape.vocab}; params {total_params(shape) / 1e6:.1f} M, "
        f"matmul {matmul_params(shape) / 1e6:.1f} M, LoRA r={args.lora_r} {lora_params(shape, args.lora_r) / 1e6:.2f} M"
    )
    print(
        f"batch {args.batch} x lengths [{args.min_len}, {args.max_len}], {args.warmup} warm-up + {args.steps} timed steps, "
        f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}",
        flush=True,
    )
    start = time.perf_counter()
    base, model = build_model(shape, args, device, dtype)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"model built in {time.perf_counter() - start:.1f} s; trainable {trainable / 1e6:.2f} M",
        flush=True,
    )
    batches = make_batches(args, shape, args.warmup + args.steps)

    start_state = trainable_state(model)
    skipped = {}
    results = []
    for name in LAYOUTS:
        why = {"packed-flex": flex_available(device), "packed-fa2": flash_attn_available()}.get(
            name
        )
        if why:
            skipped[name] = why
            print(f"{name}: skipped ({why})", flush=True)
            continue
        restore(model, start_state)
        try:
            results.append(run_layout(name, base, model, batches, args, shape, device, peak))
        except Exception as err:  # report (OOM, a kernel that fails) and go on
            if name == "padded-sdpa" and not isinstance(err, torch.OutOfMemoryError):
                raise  # the reference layout must work
            first = (str(err).strip().splitlines() or [""])[0][:200]
            skipped[name] = f"{type(err).__name__}: {first}"
            print(f"{name}: {skipped[name]}", flush=True)
            if device == "cuda":
                torch.cuda.empty_cache()
            continue
        r = results[-1]
        print(f"{name}: {r['tokens_per_s']:.0f} tokens/s, {r['step_ms']:.0f} ms/step", flush=True)

    print()
    print(
        "| layout | attention | real tokens/step | computed tokens/step | ms/step | tokens/s | model TFLOP/s | MFU | MFU@6N | peak mem GiB | first loss | last loss |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['layout']} | {r['attn']} | {r['real_per_step']:.0f} | {r['computed_per_step']:.0f} | {r['step_ms']:.1f} | "
            f"{r['tokens_per_s']:.0f} | {r['tflops']:.2f} | {fmt(r['mfu'], '.1%')} | {fmt(r['mfu_6n'], '.1%')} | "
            f"{fmt(r['peak_gib'], '.1f')} | {r['first_loss']:.4f} | {r['loss']:.4f} |"
        )
    for name, why in skipped.items():
        print(f"| {name} | skipped: {why} |")

    by_name = {r["layout"]: r for r in results}
    ref = by_name.get("padded-sdpa")
    if ref:
        print()
        for name in ("packed-sdpa", "packed-flex", "packed-fa2"):
            if name in by_name:
                r = by_name[name]
                mem = (
                    f"{r['peak_gib'] / ref['peak_gib']:.2f}x"
                    if r["peak_gib"] and ref["peak_gib"]
                    else "-"
                )
                print(
                    f"ratio {name} / padded-sdpa: tokens/s {r['tokens_per_s'] / ref['tokens_per_s']:.2f}x, peak memory {mem}, "
                    f"first-step loss diff {abs(r['first_loss'] - ref['first_loss']):.2e}"
                )
        pad_share = 1 - ref["real_per_step"] / ref["computed_per_step"]
        print(f"padding share of the padded batches: {pad_share:.1%}")
    if results:
        print(
            f"median loss across layouts: {statistics.median(r['loss'] for r in results):.3f} (random weights: ~ln(vocab) = {math.log(shape.vocab):.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
