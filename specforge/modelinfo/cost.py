"""FLOPs, memory and time of one optimiser step: the arithmetic `explain` and the layout plan share.

FLOP convention (benchmarks/gpu_check.py's; recompute from checkpointing is not counted, as MFU
is defined): F = (4 * N_frozen + 6 * N_trained) * T + 12 * L * d_attn * sum(l_i ** 2), plus
(2 * N * T + 4 * L * d_attn * sum(l_i ** 2)) for each forward-only pass over the same tokens
(dpo's reference model; kto's reference and the KL pass of both models: `extra_forwards`).
4N: the frozen base's forward (2N) and activation gradients (2N), no weight gradients; 6N: the
trained LoRA and token rows; attention: QK^T and AV (PaLM appendix B), per sequence, so padding and
cross-row attention are not useful work. T counts non-pad tokens. N counts a matmul weight by its
shape (in x out), so 4-bit weights, which bitsandbytes packs two to a byte (and GPTQ/AWQ
checkpoints eight to an int32), count whole. train.py's
MetricsFile measures MFU with the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from specforge.modelinfo.params import Params
from specforge.modelinfo.shape import Shape
from specforge.spec.models import Spec

GIB = 1024**3


@dataclass(frozen=True)
class Device:
    name: str
    peak_tflops: float  # dense matmul peak in the training precision
    memory_gib: float  # what the allocator can use
    mfu_max: float  # the MFU a large micro-batch reaches (the time model's ceiling)
    half_tokens: int  # the micro-batch size (tokens) at which MFU is half of mfu_max


# The time model: MFU = mfu_max * t / (t + half_tokens) for micro-batches of t tokens.
# GPUs: bf16/fp16 dense peaks of the SXM parts (H200/H100 989, A100 312 TFLOP/s); half_tokens is
# fitted to the one measured point, 8 padding-free rows of ~160 tokens with flex_attention at
# 15.7 % MFU on an H200 (benchmarks/README.md); mfu_max is NeMo AutoModel's reported 40-43 % for
# 7-8B LoRA on an H100, rounded up for 8k-token micro-batches. Unverified until a GPU run checks it.
# cpu: fp32 peak measured here (a 2048^2 matmul on 2 threads: 283 GFLOP/s); the curve is fitted
# to the quickstart run (30 steps of ~451 tokens in 89 s: 32 % MFU).
DEVICES = {
    "H200": Device("H200", 989.0, 139.0, 0.45, 2400),
    "H100": Device("H100", 989.0, 79.0, 0.45, 2400),
    "A100-80GB": Device("A100-80GB", 312.0, 79.0, 0.50, 2400),
    "cpu": Device("cpu", 0.283, 64.0, 0.35, 50),
}
OVERHEAD_GIB = 1.5  # CUDA context, allocator reserve, cuBLAS workspaces
LOSS_TILE = 4096  # trl/kernels/chunked_logprob.py TOKEN_CHUNK_SIZE
CPU_OVERHEAD_GIB = 1.0  # the Python process with torch, transformers, peft and trl loaded


# kto's loss that estimates no KL term (trl 1.16: calculate_kl is off for it alone)
KTO_WITHOUT_KL = "apo_zero_unpaired"


def extra_forwards(spec: Spec) -> int:
    """Forward-only passes over each trained token beside the trained one: dpo's reference model;
    kto's reference, and (unless its loss estimates no KL term) the KL pass of the policy and of
    the reference over mismatched completions, about as many tokens again."""
    if spec.method == "dpo":
        return 1
    if spec.method == "kto":
        loss = spec.preference.loss_type if spec.preference else None
        return 1 if loss == KTO_WITHOUT_KL else 3
    return 0


def step_flops(
    params: Params, shape: Shape, *, tokens: float, sum_sq: float, forwards: int = 0
) -> float:
    """Model FLOPs of one optimiser step: `tokens` non-pad tokens, `sum_sq` = sum of l_i**2,
    `forwards` forward-only passes over the same tokens besides the trained one."""
    attention = 4 * shape.layers * shape.heads * shape.dim * sum_sq  # forward: 1/3 of it
    if params.full:  # every matmul weight trains: forward, activation and weight gradients
        dense, matmul = 6 * params.matmul * tokens, params.matmul
    else:
        dense = (4 * params.matmul + 6 * params.trainable) * tokens
        matmul = params.matmul + sum(params.lora.values())
    extra = forwards * (2 * matmul * tokens + attention)
    return float(dense + 3 * attention + extra)


def flops_per_token(params: Params, shape: Shape, seq_len: float, forwards: int = 0) -> float:
    """step_flops per token for sequences of `seq_len` tokens."""
    return step_flops(params, shape, tokens=1.0, sum_sq=seq_len, forwards=forwards)


# GPTQ/AWQ keep a float16 scale and a packed zero point per group of (usually) 128 weights
PREQUANTIZED_CONSTANTS = 2.5 / 128


def weight_bytes(spec: Spec) -> float:
    """Bytes per base weight as train.py loads it."""
    q = spec.model.quantization
    if q is not None:
        return 0.5 + 0.0625 if q.bits == 4 else 1.0 + 0.03  # + quantisation constants
    pre = spec.model.prequantized
    # compressed-tensors decompresses its weights at the first forward (transformers 5.23's
    # route without dequantize=True): they take model.dtype's bytes, below
    if pre is not None and pre.method != "compressed-tensors":
        return pre.bits / 8 + PREQUANTIZED_CONSTANTS
    if spec.model.dtype in ("float16", "bfloat16"):
        return 2.0
    if spec.model.dtype == "auto":
        return 2.0 if spec.training.precision != "fp32" else 4.0
    return 4.0


# Optimizer state bytes per fp32 weight (default 8: torch's AdamW keeps both moments in fp32):
# 8-bit AdamW (bitsandbytes', torchao's) 1 byte a moment, torchao's 4-bit half of one; sgd
# without momentum keeps none; adafactor's factored row and column moments are a rough 0.4.
# GaLore's projected moments are not modelled: counted as AdamW's, an upper bound.
OPTIMIZER_BYTES = {
    "adamw_8bit": 2.0,
    "paged_adamw_8bit": 2.0,
    "adamw_torch_8bit": 2.0,
    "adamw_torch_4bit": 1.0,
    "sgd": 0.0,
    "adafactor": 0.4,
}


# Full fine-tuning trains fp32 master weights whatever model.dtype is (train.py upcasts what it
# loads, training.precision autocasts the compute, and the model is saved in model.dtype):
# AdamW's updates below a bfloat16 weight's rounding step (1/256 of it) would otherwise be lost.
MASTER_BYTES = 4.0


def full_state_bytes(spec: Spec) -> float:
    """Bytes per weight that full fine-tuning holds beyond the fp32 master weights: their fp32
    gradient and the optimizer's state (training.optim)."""
    return MASTER_BYTES + OPTIMIZER_BYTES.get(spec.training.optim, 2 * MASTER_BYTES)


def reference_copies(spec: Spec) -> int:
    """Frozen copies of the weights beside the trained ones: dpo/kto with no adapter to disable
    (full fine-tuning) compare against a copy of the start weights; orpo needs none."""
    return int(spec.lora is None and spec.method in ("dpo", "kto"))


def full_states(spec: Spec, params: Params) -> tuple[float, float]:
    """(master weights + gradients + optimizer states, reference weights) of full fine-tuning,
    in bytes; the frozen reference copy stays in model.dtype."""
    states = params.base * (MASTER_BYTES + full_state_bytes(spec))
    return states, params.base * weight_bytes(spec) * reference_copies(spec)


def activation_bytes(spec: Spec) -> float:
    fp32_weights = spec.model.dtype != "float16" or spec.lora is None  # full: fp32 masters
    return 4.0 if spec.training.precision == "fp32" and fp32_weights else 2.0


def layer_activations(spec: Spec, shape: Shape) -> float:
    """Bytes saved for backward per token per decoder layer, no checkpointing (flash/flex/sdpa
    efficient kernels: no l**2 attention matrix). Counted tensors: two norm inputs and outputs,
    q/k/v (and rotated q/k), the attention output, the MLP's gate, up, activation and product,
    and each LoRA path's dropout copy (plus a 1-byte mask) when dropout is on."""
    b, h, i = activation_bytes(spec), shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.dim, shape.kv_heads * shape.dim
    saved = b * (4 * h + 2 * q + 3 * kv + q + 4 * i)
    if spec.lora is not None and spec.lora.dropout > 0:
        dims = shape.projection_dims()
        targets = spec.lora.target_modules
        names = dims if targets == "all-linear" else [t for t in targets if t in dims]
        saved += (b + 1) * sum(dims[name][0] for name in names)
    return saved


@dataclass(frozen=True)
class Memory:
    weights: float
    adapter_and_optimizer: float
    activations: float  # of one micro-batch
    logits: float
    overhead: float
    reference: float = 0.0  # full fine-tuning's frozen reference model (dpo, kto)

    @property
    def total(self) -> float:
        return (self.weights + self.adapter_and_optimizer + self.activations + self.logits) + (
            self.overhead + self.reference
        )

    def as_gib(self) -> dict[str, float]:
        parts = {
            "weights": self.weights,
            "adapter_and_optimizer": self.adapter_and_optimizer,
            "activations": self.activations,
            "logits": self.logits,
            "overhead": self.overhead,
            **({"reference": self.reference} if self.reference else {}),
            "total": self.total,
        }
        return {k: round(v / GIB, 2) for k, v in parts.items()}


def memory(
    spec: Spec,
    shape: Shape,
    params: Params,
    device: Device,
    *,
    micro_tokens: float,
    checkpointing: bool,
) -> Memory:
    """Peak memory of one micro-batch of `micro_tokens` tokens (bytes)."""
    weights = params.base * weight_bytes(spec)
    # fp32 trainable weights, their gradients, AdamW's two moments: 16 bytes each
    adapter = params.trainable * 16.0
    reference = 0.0
    if params.full:  # fp32 master weights train in place: their gradients and optimizer states
        weights = params.base * MASTER_BYTES
        adapter = params.base * full_state_bytes(spec)
        reference = full_states(spec, params)[1]
    per_layer = layer_activations(spec, shape)
    b = activation_bytes(spec)
    if checkpointing:  # each layer keeps its input; one layer's activations live during recompute
        acts = micro_tokens * (shape.layers * b * shape.hidden + per_layer)
    else:
        acts = micro_tokens * shape.layers * per_layer
    # trl 1.16's fused LM head computes log-probabilities in tiles of LOSS_TILE tokens by the
    # vocabulary and never holds the whole logits (one fp32 tile, plus a few floats a token)
    vocab = shape.vocab + len(params.new_tokens)
    logits = min(micro_tokens, LOSS_TILE) * vocab * 4.0 + micro_tokens * 16.0
    overhead = (OVERHEAD_GIB if device.name != "cpu" else CPU_OVERHEAD_GIB) * GIB
    return Memory(
        weights=weights,
        adapter_and_optimizer=adapter,
        activations=acts,
        logits=logits,
        overhead=overhead,
        reference=reference,
    )


def mfu_at(device: Device, micro_tokens: float) -> float:
    """The time model's MFU for micro-batches of `micro_tokens` tokens (see DEVICES)."""
    return device.mfu_max * micro_tokens / (micro_tokens + device.half_tokens)
