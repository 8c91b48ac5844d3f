"""The planner's method decisions, without rendering: trainer, arguments, data shape, adapter."""

from __future__ import annotations

import pytest

from specforge.codegen.plan import SFT_ONLY_ARGS, build_plan
from specforge.spec.models import Spec

BASE = {
    "spec_version": 1,
    "name": "unit",
    "model": {"name": "org/base-model"},
    "tokenizer": {"special_tokens": {"additional": ["<response>", "<end>"]}},
    "dataset": {"path": "org/pairs"},
    "prompt": {"template": "Q: {question}\n<response>", "completion": "{chosen}<end>"},
}


def plan(method: str, **sections):
    data = {**BASE, "method": method, **sections}
    data["prompt"] = {**BASE["prompt"], **sections.get("prompt", {})}
    return build_plan(Spec.model_validate(data), "specs/unit.yaml", "0" * 64, "generated/unit")


def args(p) -> dict:
    return {a.name: a.value for a in p.training.args}


def test_sft_has_no_method_part_and_keeps_its_arguments():
    p = plan("sft")
    assert p.method is None
    assert {"completion_only_loss", "padding_free", "eos_token"} <= set(args(p))


@pytest.mark.parametrize(
    ("method", "prompt", "trainer", "module", "loss"),
    [
        ("dpo", {"rejected": "{rejected}<end>"}, "DPOTrainer", "trl", "sigmoid"),
        ("orpo", {"rejected": "{rejected}<end>"}, "ORPOTrainer", "trl.experimental.orpo", None),
        ("kto", {"label_field": "good"}, "KTOTrainer", "trl", "kto"),
    ],
)
def test_each_method_picks_its_trainer_and_writes_its_defaults(
    method, prompt, trainer, module, loss
):
    p = plan(method, prompt=prompt)
    assert (p.method.trainer, p.method.module, p.method.paired) == (
        trainer,
        module,
        method != "kto",
    )
    a = args(p)
    assert not SFT_ONLY_ARGS - {"max_length"} & set(a)
    assert a["max_length"] == 1024 and a["beta"] == 0.1 and a.get("loss_type") == loss
    assert ("desirable_weight" in a) == (method == "kto")
    assert (p.method.reference is None) == (method == "orpo")  # orpo is reference-free
    assert p.method.adapter is None


def test_a_parent_adapter_is_continued_and_is_the_reference():
    p = plan(
        "dpo",
        prompt={"rejected": "{rejected}<end>"},
        model={"name": "org/base-model", "adapter": "runs/sft/latest"},
        preference={"beta": 0.3, "loss_type": "ipo"},
    )
    assert p.method.adapter.value == "runs/sft/latest" and p.method.adapter.key == "model.adapter"
    assert p.method.reference == "the parent adapter, frozen"
    assert (args(p)["beta"], args(p)["loss_type"]) == (0.3, "ipo")
    assert [v.name for v in p.method.constants] == ["REJECTED_TEMPLATE", "REJECTED_FIELDS"]


def test_sft_weight_adds_trl_s_sft_loss_to_dpo_s(tmp_path):
    """RPO: trl sums the listed losses with loss_weights; DPOConfig takes what is written."""
    from trl import DPOConfig

    p = plan("dpo", prompt={"rejected": "{rejected}<end>"}, preference={"sft_weight": 0.5})
    a = args(p)
    assert (a["loss_type"], a["loss_weights"]) == (["sigmoid", "sft"], [1.0, 0.5])
    weights = next(v for v in p.training.args if v.name == "loss_weights")
    assert weights.key == "preference.sft_weight"
    written = {key: a[key] for key in ("loss_type", "loss_weights")}
    config = DPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, **written)
    assert config.loss_type == ["sigmoid", "sft"] and config.loss_weights == [1.0, 0.5]
    assert "loss_weights" not in args(plan("dpo", prompt={"rejected": "{rejected}<end>"}))
