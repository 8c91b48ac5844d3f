"""explain's trainable count is peft's: the same LoRA config and token rows, built for real."""

from __future__ import annotations

import pytest

from specforge.explain.params import count
from specforge.explain.shape import BUILT_IN, Shape
from specforge.spec.models import Spec

TINY = Shape(64, 2, 4, 2, 128, 1000, tied=True)


def spec_for(name: str, *, r: int = 8, targets="all-linear", pad: bool = True) -> Spec:
    tokens = {"additional": ["<response>", "<response|end>"]} | ({"pad": "<pad>"} if pad else {})
    return Spec.model_validate(
        {
            "spec_version": 1,
            "name": "t",
            "model": {"name": name},
            "tokenizer": {"special_tokens": tokens},
            "dataset": {"path": "data/x.jsonl"},
            "prompt": {"template": "{a}<response>", "completion": "{b}<response|end>"},
            "lora": {"r": r, "target_modules": targets},
        },
        strict=False,
    )


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
    layers = ["embed_tokens"] if shape.tied else ["embed_tokens", "lm_head"]
    lora = spec.lora
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
        trainable_token_indices={name: ids for name in layers} if ids else None,
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
