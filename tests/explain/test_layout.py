"""The planner: the spec's rows per step, in as few micro-batches as fit, checkpointing off where
memory allows; the recipe's own layout otherwise."""

from __future__ import annotations

from dataclasses import replace

from specforge.modelinfo import cost
from specforge.modelinfo.layout import choose, layout_of
from specforge.modelinfo.params import count
from specforge.modelinfo.sample import Rows
from specforge.modelinfo.shape import BUILT_IN
from tests.helpers import spec_for

MISTRAL = BUILT_IN["mistralai/Mistral-7B-v0.1"]
ROWS = Rows(76772, 152.0, 26744.0, "test")


def fingpt_like(**training):
    spec = spec_for("mistralai/Mistral-7B-v0.1", r=16)
    settings = {
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 8,
        "gradient_checkpointing": True,
        "precision": "fp16",
        "max_length": 512,
        **training,
    }
    return spec.model_copy(update={"training": spec.training.model_copy(update=settings)})


def plan(spec, device="H200"):
    return choose(spec, MISTRAL, count(spec, MISTRAL), ROWS, cost.DEVICES[device])


def test_auto_keeps_rows_per_step_and_needs_fewer_micro_batches():
    result = plan(fingpt_like(layout="auto"))
    assert result.layout == "auto" and result.rows_per_step == 64
    assert result.accumulation < 8
    assert result.memory_gib <= cost.DEVICES["H200"].memory_gib * 0.9


def test_checkpointing_goes_off_when_memory_allows():
    short_rows = fingpt_like(layout="auto", max_length=128)  # 64 x 128 tokens at worst
    result = plan(short_rows)
    assert (result.accumulation, result.checkpointing) == (1, False)
    assert "checkpointing off" in result.why


def test_recipe_is_the_spec_as_written():
    result = plan(fingpt_like(layout="recipe"))
    assert (result.batch, result.accumulation, result.checkpointing) == (8, 8, True)


def test_nothing_fits_keeps_the_recipe_and_says_why():
    tiny_device = replace(cost.DEVICES["H200"], memory_gib=10.0)
    spec = fingpt_like(layout="auto")
    result = choose(spec, MISTRAL, count(spec, MISTRAL), ROWS, tiny_device)
    assert result.layout == "recipe" and "fits" in result.why


def test_auto_is_the_default_only_for_gpu_specs():
    assert layout_of(fingpt_like()) == "auto"  # fp16 needs CUDA
    assert layout_of(fingpt_like(precision="fp32")) == "recipe"
