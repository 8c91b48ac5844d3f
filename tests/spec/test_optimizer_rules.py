"""Optimiser and LoRA-variant keys (issue 25, items 3-5): the schema takes them, and the rules
that tie them to the rest of the spec (SF060-SF065) fail at the value, with a hint."""

from __future__ import annotations

import pytest

from specforge.validate.load import load_spec
from tests.helpers import diagnose, only_rule
from tests.spec.conftest import DROP, line_col, spec_text

FULL = {"lora": None}
GALORE = {"optim": "galore_adamw", "optim_target_modules": ["self_attn", "mlp"]}


def located(diag, text: str, needle: str) -> str:
    line, col = line_col(text, needle)
    first = diag.render().splitlines()[0]
    assert first.startswith(f"spec.yaml:{line}:{col}: "), first
    return first


def test_every_new_key_loads(write_spec):
    lora = {
        "init_lora_weights": "pissa_niter_16",
        "modules_to_save": ["embed_tokens", "lm_head"],
        "loraplus_lr_ratio": 16.0,
        "loraplus_lr_embedding": 1e-6,
        "use_rslora": True,
    }
    adam = {"adam_beta1": 0.85, "adam_beta2": 0.95, "adam_epsilon": 1e-6, "optim": "adamw_8bit"}
    spec = load_spec(write_spec(lora=lora, training=adam)).spec
    assert spec.lora.init_lora_weights == "pissa_niter_16"
    assert spec.training.adam_beta2 == 0.95
    full = {**GALORE, "optim_args": {"rank": 64, "scale": 0.25}, "gradient_accumulation_steps": 1}
    spec = load_spec(write_spec(training=full, **FULL)).spec
    assert spec.training.optim_args == {"rank": 64, "scale": 0.25}
    spec = load_spec(
        write_spec(training={"unfrozen_parameters": ["^lm_head.weight$"]}, **FULL)
    ).spec
    assert spec.training.unfrozen_parameters == ["^lm_head.weight$"]


@pytest.mark.parametrize("init", ["pissa_niter_0", "eva", "corda", "loftq"])
def test_an_unknown_init_is_a_schema_error(write_spec, init):
    diags = diagnose(write_spec(lora={"init_lora_weights": init}))
    assert diags and all(d.severity == "error" for d in diags)
    assert "lora.init_lora_weights" in diags[0].render()


def test_loraplus_under_fsdp_is_refused_at_the_ratio(write_spec):
    text = spec_text(
        lora={"loraplus_lr_ratio": 16.0},
        launch={"nproc_per_node": 2, "strategy": "fsdp"},
    )
    diag = only_rule(diagnose(write_spec(text)), "SF060")
    first = located(diag, text, "16.0")
    assert "the Trainer refuses under FSDP" in first


def test_loraplus_embedding_rate_without_a_ratio(write_spec):
    text = spec_text(lora={"loraplus_lr_embedding": 1.0e-5})
    diag = only_rule(diagnose(write_spec(text)), "SF060")
    assert "LoRA+ is off" in located(diag, text, "1.0e-05")


def test_galore_with_lora_is_refused(write_spec):
    text = spec_text(training=GALORE)
    diag = only_rule(diagnose(write_spec(text)), "SF061")
    assert "a LoRA adapter has only its" in located(diag, text, "galore_adamw")
    assert diag.hints[0].startswith("set `lora: null`")


def test_galore_needs_targets_and_knows_its_settings(write_spec):
    text = spec_text(training={"optim": "galore_adamw", "optim_args": {"rnak": 8}}, **FULL)
    errors = [d for d in diagnose(write_spec(text)) if d.rule == "SF061"]
    messages = [d.render().splitlines()[0] for d in errors]
    assert any("needs training.optim_target_modules" in m for m in messages), messages
    assert any("GaLore has no setting 'rnak'" in m for m in messages), messages


def test_layerwise_galore_cannot_accumulate(write_spec):
    training = {**GALORE, "optim": "galore_adamw_layerwise", "gradient_accumulation_steps": 4}
    text = spec_text(training=training, **FULL)
    diag = only_rule(diagnose(write_spec(text)), "SF061")
    assert "cannot accumulate gradients (got 4)" in located(diag, text, "4")


def test_galore_settings_without_galore(write_spec):
    text = spec_text(training={"optim_target_modules": ["mlp"], "optim_args": {"rank": 8}})
    errors = [d for d in diagnose(write_spec(text)) if d.rule == "SF061"]
    assert len(errors) == 2
    assert "only GaLore optimizers read optim_target_modules" in errors[0].render()


def test_adam_settings_do_nothing_for_sgd(write_spec):
    text = spec_text(training={"optim": "sgd", "adam_beta1": 0.8})
    diag = only_rule(diagnose(write_spec(text)), "SF062", severity="warning")
    assert "sgd does not read adam_beta1" in located(diag, text, "0.8")


@pytest.mark.parametrize(
    ("sections", "says"),
    [
        (
            {"model": {"name": "org/base-model", "quantization": {"bits": 4}}},
            "on float weights only",
        ),
        ({"method": "dpo", "prompt": {"rejected": "{bad}<eos>"}}, "reference adapter"),
        ({"launch": {"nproc_per_node": 2, "strategy": "fsdp"}}, "which FSDP has sharded"),
        ({"lora": {"use_dora": True}}, "DoRA's magnitude vector"),
    ],
)
def test_pissa_where_the_base_cannot_move(write_spec, sections, says):
    lora = {"init_lora_weights": "pissa", **sections.pop("lora", {})}
    text = spec_text(lora=lora, **sections)
    diag = only_rule(diagnose(write_spec(text)), "SF063")
    assert says in located(diag, text, "pissa")


def test_an_init_does_not_apply_to_a_parent_adapter(write_spec, workdir):
    text = spec_text(
        method="orpo",
        prompt={"rejected": "{bad}<eos>"},
        model={"adapter": "runs/parent/latest"},
        lora={"init_lora_weights": "gaussian"},
    )
    errors = [d for d in diagnose(write_spec(text)) if d.rule == "SF063"]
    assert len(errors) == 1
    assert "starts a new adapter" in located(errors[0], text, "gaussian")


def test_a_module_trains_whole_or_through_lora(write_spec):
    text = spec_text(lora={"target_modules": ["q_proj", "v_proj"], "modules_to_save": ["v_proj"]})
    diag = only_rule(diagnose(write_spec(text)), "SF064")
    assert "v_proj is in lora.target_modules too" in diag.render()


def test_unfrozen_parameters_need_full_fine_tuning_and_valid_patterns(write_spec):
    text = spec_text(training={"unfrozen_parameters": ["^lm_head"]})
    diag = only_rule(diagnose(write_spec(text)), "SF065")
    assert "this spec trains a LoRA adapter" in located(diag, text, "- ^lm_head")
    text = spec_text(training={"unfrozen_parameters": ["model.layers.[0-"]}, **FULL)
    diag = only_rule(diagnose(write_spec(text)), "SF065")
    assert "is not a regular expression" in located(diag, text, "model.layers.[0-")


def test_without_the_new_keys_nothing_fires(write_spec):
    assert diagnose(write_spec(lora=DROP)) == []
