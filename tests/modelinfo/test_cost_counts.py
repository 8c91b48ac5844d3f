"""FLOPs per token: `specforge explain`'s prediction (modelinfo/cost.py) and train.py's measurement
(MetricsFile) count the same work: 4-bit weights whole (bitsandbytes packs two to a byte), the
forward-only passes of dpo's reference and kto's reference and KL passes; orpo, which logs no
num_tokens, gets tokens/s and MFU from train.py's own count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from specforge.codegen.compiler import compile_files
from specforge.modelinfo import cost
from specforge.modelinfo.params import count
from specforge.modelinfo.shape import find_shape
from specforge.validate.load import load_spec
from tests.conftest import load_generated, tiny_spec
from tests.helpers import PAIRS, method_spec

ROW_TOKENS = 50


def loaded(tmp_path: Path, text: str, name: str = "spec"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return load_spec(path, check_files=False)


@pytest.mark.parametrize(
    ("method", "loss", "passes"),
    [
        ("sft", None, 0),
        ("orpo", None, 0),
        ("dpo", None, 1),  # the reference model
        ("kto", None, 3),  # the reference, and the KL pass of the policy and of the reference
        ("kto", "apo_zero_unpaired", 1),  # trl estimates no KL term for it
    ],
)
def test_forward_only_passes_per_method(tmp_path, method, loss, passes):
    text = tiny_spec(Path("m")) if method == "sft" else method_spec(Path("m"), method, method)
    if loss:
        text += f"preference:\n  loss_type: {loss}\n"
    spec = loaded(tmp_path, text).spec
    assert cost.extra_forwards(spec) == passes
    script = compile_files(loaded(tmp_path, text))["train.py"]
    if passes:
        assert f"EXTRA_FORWARDS = {passes}" in script
        assert "# spec: method; forward-only passes per token: the reference's" in script
    else:
        assert "EXTRA_FORWARDS" not in script


def test_a_forward_only_pass_adds_two_flops_a_weight_and_a_third_of_attention(tiny_model_dir):
    spec = load_spec_text(tiny_model_dir)
    shape = find_shape(spec)
    params = count(spec, shape)
    trained = cost.flops_per_token(params, shape, ROW_TOKENS)
    ref = cost.flops_per_token(params, shape, ROW_TOKENS, forwards=1)
    forward = 2 * (params.matmul + sum(params.lora.values()))
    attention = 4 * shape.layers * shape.heads * shape.dim * ROW_TOKENS
    assert ref - trained == forward + attention


def load_spec_text(model_dir: Path):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return loaded(Path(folder), tiny_spec(model_dir)).spec


def lora_model(module, model_dir: Path):
    """The tiny model as the tiny spec's train.py builds it: new token rows, LoRA on every
    Linear, the rows trained by peft."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.add_special_tokens(module.SPECIAL_TOKENS, replace_extra_special_tokens=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    model.resize_token_embeddings(len(tokenizer))
    ids = tokenizer.convert_tokens_to_ids(["<response>", "<response|end>"])
    config = LoraConfig(**module.LORA_CONFIG, trainable_token_indices={"embed_tokens": ids})
    return get_peft_model(model, config)


def pack_like_4bit(model) -> int:
    """Give each frozen base Linear the weight bitsandbytes' Linear4bit holds: uint8, two values
    a byte, shape (in * out / 2, 1). Returns how many it packed."""
    import torch

    packed = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad:
            numel = module.in_features * module.out_features
            data = torch.zeros(numel // 2, 1, dtype=torch.uint8)
            module.weight = torch.nn.Parameter(data, requires_grad=False)
            packed += 1
    return packed


@pytest.mark.train
def test_metrics_file_counts_as_explain_does_with_4bit_packed_weights(tmp_path, tiny_model_dir):
    text = tiny_spec(tiny_model_dir)
    (tmp_path / "train.py").write_text(compile_files(loaded(tmp_path, text))["train.py"])
    module = load_generated(tmp_path / "train.py", "cost_counts_train")
    spec = loaded(tmp_path, text).spec
    shape = find_shape(spec)
    expected = cost.flops_per_token(count(spec, shape), shape, ROW_TOKENS)

    model = lora_model(module, tiny_model_dir)
    assert module.MetricsFile(model, ROW_TOKENS).flops_per_token == expected
    assert pack_like_4bit(model) == 2 * 7 + 1  # 7 projections a layer, and the LM head
    # the packed numel is half the weights; the measurement still counts each weight once
    assert module.MetricsFile(model, ROW_TOKENS).flops_per_token == expected


@pytest.mark.train
def test_orpo_run_logs_tokens_per_second_and_mfu(tmp_path, tiny_model_dir):
    (tmp_path / "data").mkdir()
    lines = [json.dumps(r) for r in PAIRS[:40]]
    (tmp_path / "data/pairs.jsonl").write_text("\n".join(lines) + "\n")
    text = method_spec(tiny_model_dir, "orpo", "orpo")
    files = compile_files(loaded(tmp_path, text))
    for name, content in files.items():  # train.py copies spec.resolved.yaml beside it
        (tmp_path / name).write_text(content)
    mp = pytest.MonkeyPatch()
    mp.chdir(tmp_path)
    try:
        load_generated(tmp_path / "train.py", "orpo_tokens_train").train(tmp_path / "run")
    finally:
        mp.undo()
    entries = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    train = [e for e in entries if "loss" in e]
    assert len(train) == 4
    tokens = [e["num_tokens"] for e in train]
    assert tokens == sorted(tokens) and tokens[0] > 0  # cumulative, as trl's own
    rates = [e for e in train if "tokens_per_second" in e]
    assert len(rates) == 3 and all(e["tokens_per_second"] > 0 and e["mfu"] > 0 for e in rates)
    assert not [e for e in entries if "eval_loss" in e and "tokens_per_second" in e]
