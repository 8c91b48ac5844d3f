"""explain's trainable count is peft's: the same LoRA config and token rows, built for real."""

from __future__ import annotations

import pytest

from specforge.modelinfo.params import count
from specforge.modelinfo.shape import BUILT_IN, Shape
from specforge.spec.models import Spec
from tests.helpers import spec_for

TINY = Shape(64, 2, 4, 2, 128, 1000, tied=True)


def peft_counts(shape: Shape, spec: Spec, *, meta: bool) -> tuple[int, int]:
    """(trainable, total) from peft for the model train.py builds: resized, LoRA, token rows."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        intermediate_size=shape.intermediate,
        vocab_size=shape.vocab,
        tie_word_embeddings=shape.tied,
    )
    with torch.device("meta" if meta else "cpu"):
        model = LlamaForCausalLM(config)
    added = [t for t in spec.tokenizer.special_tokens.all() if t not in shape.base_tokens]
    model.resize_token_embeddings(shape.vocab + len(added), mean_resizing=False)
    pad = spec.tokenizer.special_tokens.pad
    ids = [shape.vocab + i for i, t in enumerate(added) if t != pad]
    lora = spec.lora
    whole = set(lora.modules_to_save)  # as train.py picks the layers that get token rows
    if shape.tied:
        layers = [] if whole & {"embed_tokens", "lm_head"} else ["embed_tokens"]
    else:
        layers = [name for name in ("embed_tokens", "lm_head") if name not in whole]
    extra = {"modules_to_save": lora.modules_to_save, "ensure_weight_tying": True} if whole else {}
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
        trainable_token_indices={name: ids for name in layers} if ids and layers else None,
        **extra,
    )
    trainable, total = get_peft_model(model, config).get_nb_trainable_parameters()
    return trainable, total


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"]])
def test_trainable_count_equals_peft_on_a_tiny_model(tied, targets):
    shape = Shape(64, 2, 4, 2, 128, 1000, tied=tied)
    spec = spec_for("tiny", targets=targets)
    params = count(spec, shape)
    assert (params.trainable, params.total) == peft_counts(shape, spec, meta=False)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize(
    "whole", [["embed_tokens", "lm_head"], ["lm_head"], ["input_layernorm", "norm"]]
)
def test_modules_to_save_count_equals_peft_on_a_tiny_model(tied, whole):
    """peft trains a whole copy of each (one for a tied pair); a layer trained whole gets no
    token rows."""
    shape = Shape(64, 2, 4, 2, 128, 1000, tied=tied)
    data = spec_for("tiny", targets=["q_proj", "v_proj"]).model_dump()
    spec = Spec.model_validate(
        {**data, "lora": {**data["lora"], "modules_to_save": whole}}, strict=False
    )
    params = count(spec, shape)
    assert sum(params.saved.values()) > 0
    assert (params.trainable, params.total) == peft_counts(shape, spec, meta=False)


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_trainable_count_equals_peft_for_the_shipped_models(name):
    """SmolLM2-135M and Mistral-7B at full size, built on the meta device (no memory)."""
    shape = BUILT_IN[name]
    spec = spec_for(
        name,
        r=16,
        targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    params = count(spec, shape)
    assert (params.trainable, params.total) == peft_counts(shape, spec, meta=True)


def test_padding_is_added_but_not_trained():
    params = count(spec_for("tiny"), TINY)
    assert params.new_tokens == ["<pad>", "<response>", "<response|end>"]
    assert params.trained_tokens == ["<response>", "<response|end>"]
    assert params.token_rows == 2 * 64  # tied: the head shares the embedding's rows


@pytest.mark.parametrize("tied", [True, False])
def test_full_fine_tuning_trains_every_weight_of_the_model_train_py_builds(tied):
    """lora: null: trainable == total == the resized model's parameters, counted by torch."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = Shape(64, 2, 4, 2, 128, 1000, tied=tied)
    spec = Spec.model_validate({**spec_for("tiny").model_dump(), "lora": None}, strict=False)
    params = count(spec, shape)
    config = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=1000,
        tie_word_embeddings=tied,
    )
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.resize_token_embeddings(1000 + len(params.new_tokens), mean_resizing=False)
    every = sum(p.numel() for p in model.parameters())
    assert params.full and params.lora == {} and params.token_rows == 0
    assert params.trainable == params.total == every


def test_full_fine_tuning_memory_is_weights_grads_adamw_and_a_reference_for_dpo():
    from specforge.modelinfo import cost

    shape = BUILT_IN["mistralai/Mistral-7B-v0.1"]
    data = {**spec_for("mistralai/Mistral-7B-v0.1").model_dump(), "lora": None}
    data["model"] = {**data["model"], "dtype": "float32"}
    data["training"] = {**data["training"], "precision": "bf16"}
    sft = Spec.model_validate(data, strict=False)
    params = count(sft, shape)
    device = cost.DEVICES["A100-80GB"]
    mem = cost.memory(sft, shape, params, device, micro_tokens=1024, checkpointing=True)
    assert mem.weights == params.base * 4  # fp32 weights under bf16 autocast
    assert mem.adapter_and_optimizer == params.base * 12  # fp32 grads + AdamW's two moments
    assert mem.reference == 0
    dpo = Spec.model_validate(
        {**data, "method": "dpo", "prompt": {**data["prompt"], "rejected": "{c}<response|end>"}},
        strict=False,
    )
    dpo_mem = cost.memory(dpo, shape, params, device, micro_tokens=1024, checkpointing=True)
    assert dpo_mem.reference == params.base * 4
    eight_bit = Spec.model_validate(
        {**data, "training": {**data["training"], "optim": "adamw_8bit"}}, strict=False
    )
    assert cost.full_state_bytes(eight_bit) == 4 + 2  # the gradient, two 1-byte moments
    four_bit = Spec.model_validate(
        {**data, "training": {**data["training"], "optim": "adamw_torch_4bit"}}, strict=False
    )
    assert cost.full_state_bytes(four_bit) == 4 + 1  # torchao: two half-byte moments


def test_a_continued_adapter_is_counted_with_the_parent_s_lora_not_the_spec_s(
    tmp_path, monkeypatch
):
    """quickstart-dpo has no lora section (the schema's default: r 8, four attention projections)
    and continues the quickstart's adapter (r 16, all seven): peft trains the parent's LoRA."""
    import json

    from specforge.runs.lineage import parent_lora_config
    from specforge.validate.load import load_spec
    from tests.conftest import REPO

    def load(name):
        return load_spec(REPO / f"specs/{name}.yaml", check_files=False).spec

    shape = BUILT_IN["SmolLM2-135M-Instruct"]
    monkeypatch.chdir(tmp_path)
    dpo = load("quickstart-dpo")
    before = count(dpo, shape, parent_lora_config(dpo.model.adapter))  # no parent run: the spec's
    assert before.lora_from is None and set(before.lora) == {"q_proj", "k_proj", "v_proj", "o_proj"}

    sft = load("quickstart")
    run = tmp_path / "runs/quickstart/20260101T000000Z-aaaaaa"
    (run / "adapter").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "succeeded"}))
    config = {"r": sft.lora.r, "target_modules": list(reversed(sft.lora.target_modules))}
    (run / "adapter/adapter_config.json").write_text(json.dumps(config))
    after = count(dpo, shape, parent_lora_config(dpo.model.adapter))
    assert after.lora_from == "runs/quickstart/latest"
    assert after.lora == count(sft, shape).lora and list(after.lora) == sft.lora.target_modules
    assert after.trainable > 2 * before.trainable
