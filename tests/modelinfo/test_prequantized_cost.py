"""explain's arithmetic for a pre-quantized base (model.prequantized, issue 25 item 7): memory
counts the checkpoint's bits a weight (plus its scales and zero points), FLOPs count each packed
weight whole, as for QLoRA."""

from __future__ import annotations

from specforge.modelinfo import cost
from specforge.modelinfo.params import count
from specforge.modelinfo.shape import find_shape
from specforge.spec.models import Spec

BASE: dict = {
    "spec_version": 1,
    "name": "q",
    "model": {"name": "mistralai/Mistral-7B-v0.1", "dtype": "float16"},
    "dataset": {"path": "org/rows"},
    "prompt": {"template": "{q}", "completion": "{a}"},
    "training": {"precision": "fp16"},
}


def spec(**model) -> Spec:
    return Spec.model_validate({**BASE, "model": {**BASE["model"], **model}})


def weights_gib(s: Spec) -> float:
    shape = find_shape(s, hub_cache=False)
    assert shape is not None  # Mistral-7B is in specforge's table
    params = count(s, shape)
    mem = cost.memory(s, shape, params, cost.DEVICES["H100"], micro_tokens=2048, checkpointing=True)
    return mem.weights / cost.GIB


def test_a_4_bit_gptq_7b_holds_about_4_bits_a_weight():
    gptq = spec(prequantized={"method": "gptq", "bits": 4})
    shape = find_shape(gptq, hub_cache=False)
    assert shape is not None
    bits = weights_gib(gptq) * cost.GIB * 8 / count(gptq, shape).base
    assert 4.0 < bits < 4.3  # 4 bits + a float16 scale and packed zero point per 128 weights
    assert weights_gib(gptq) < weights_gib(spec()) / 3.5  # float16: 16 bits a weight
    awq = spec(prequantized={"method": "awq"})
    assert weights_gib(awq) == weights_gib(gptq)
    eight = spec(prequantized={"method": "gptq", "bits": 8})
    assert 1.9 < weights_gib(eight) / weights_gib(gptq) < 2.0


def test_compressed_tensors_counts_its_decompressed_weights():
    """transformers 5.23 decompresses them at the first forward (no kernels for training)."""
    ct = spec(prequantized={"method": "compressed-tensors", "bits": 4})
    assert weights_gib(ct) == weights_gib(spec())


def test_packed_weights_count_whole_in_flops():
    gptq, plain = spec(prequantized={"method": "gptq", "bits": 4}), spec()
    shape = find_shape(plain, hub_cache=False)
    assert shape is not None
    per_token = [cost.flops_per_token(count(s, shape), shape, 512.0) for s in (gptq, plain)]
    assert per_token[0] == per_token[1]
