"""SF030: each training method's data fields and hyperparameters, located and with a hint."""

from __future__ import annotations

import pytest

from specforge.core.errors import SpecError
from specforge.validate.load import load_spec
from tests.helpers import diagnose, fired, only_rule

from .conftest import DROP, line_col, spec_text

PAIR = {"template": "Question: {question}\n<response>", "completion": "{chosen}<eos>"}


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_paired_method_without_rejected_is_located_at_prompt(write_spec, method):
    text = spec_text(method=method, prompt=PAIR)
    diag = only_rule(diagnose(write_spec(text)), "SF030")
    assert f"method {method} trains on preference pairs but prompt.rejected is not set" in (
        diag.message
    )
    assert (diag.location.line, diag.location.col) == line_col(
        text, "template:"
    )  # the section's first key
    assert any("rejected:" in hint for hint in diag.hints)


def test_kto_without_label_field(write_spec):
    diag = only_rule(diagnose(write_spec(method="kto")), "SF030")
    assert "method kto needs prompt.label_field" in diag.message
    assert diag.hints == ("add label_field: label (a column of true/false)",)


def test_kto_with_rejected_says_kto_takes_one_completion(write_spec):
    prompt = {**PAIR, "rejected": "{rejected}<eos>", "label_field": "good"}
    diag = only_rule(diagnose(write_spec(method="kto", prompt=prompt)), "SF030")
    assert diag.key == "prompt.rejected"
    assert "labelled by label_field" in diag.hints[0]


def test_dpo_with_rejected_loads(write_spec):
    spec = load_spec(write_spec(method="dpo", prompt={**PAIR, "rejected": "{rejected}<eos>"})).spec
    assert spec.method == "dpo" and spec.prompt.rejected_fields() == ["rejected"]


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"preference": {"beta": 0.2}}, "preference"),
        ({"model": {"adapter": "runs/base/latest"}}, "model.adapter"),
        ({"prompt": {"rejected": "{rejected}<eos>"}}, "prompt.rejected"),
        ({"prompt": {"label_field": "good"}}, "prompt.label_field"),
    ],
)
def test_preference_settings_on_an_sft_spec_are_errors(write_spec, sections, key):
    diag = only_rule(diagnose(write_spec(**sections)), "SF030")
    assert diag.key == key and "not sft" in diag.message


def test_loss_type_is_checked_per_method_with_a_suggestion(write_spec):
    text = spec_text(
        method="dpo",
        prompt={**PAIR, "rejected": "{rejected}<eos>"},
        preference={"loss_type": "sigmod"},
    )
    diag = only_rule(diagnose(write_spec(text)), "SF030")
    assert "loss_type 'sigmod' is not a dpo loss" in diag.message
    assert diag.hints == ("did you mean `sigmoid`?",)
    assert (diag.location.line, diag.location.col) == line_col(text, "sigmod")


def test_kto_loss_and_weights(write_spec):
    prompt = {**PAIR, "label_field": "good"}
    pref = {"loss_type": "apo_zero_unpaired", "desirable_weight": 1.3}
    spec = load_spec(write_spec(method="kto", prompt=prompt, preference=pref)).spec
    assert spec.preference.desirable_weight == 1.3
    orpo = {"loss_type": "kto", "desirable_weight": 2.0}
    diags = diagnose(
        write_spec(method="orpo", prompt={**PAIR, "rejected": "{r}<eos>"}, preference=orpo)
    )
    assert {d.key for d in fired(diags, "SF030")} == {
        "preference.loss_type",
        "preference.desirable_weight",
    }


@pytest.mark.parametrize(
    ("method", "prompt", "why"),
    [
        ("orpo", {**PAIR, "rejected": "{rejected}<eos>"}, "orpo's loss already holds one"),
        ("kto", {**PAIR, "label_field": "good"}, "its trainer has no sft loss"),
    ],
)
def test_sft_weight_is_for_dpo(write_spec, method, prompt, why):
    text = spec_text(method=method, prompt=prompt, preference={"sft_weight": 1.0})
    diag = only_rule(diagnose(write_spec(text)), "SF030")
    assert diag.key == "preference.sft_weight" and diag.message.endswith(why)
    line, col = line_col(text, "sft_weight:")
    assert (diag.location.line, diag.location.col) == (line, col + len("sft_weight: "))


def test_packing_is_for_sft(write_spec):
    prompt = {**PAIR, "rejected": "{rejected}<eos>"}
    diags = diagnose(write_spec(method="dpo", prompt=prompt, training={"packing": True}))
    assert [d.key for d in fired(diags, "SF030")] == ["training.packing"]


def test_rejected_without_the_stop_token_warns(write_spec):
    spec = write_spec(method="dpo", prompt={**PAIR, "rejected": "{rejected}"})
    diags = diagnose(spec)
    [diag] = fired(diags, "SF030")
    assert diag.severity == "warning" and "stop token <eos>" in diag.message


def test_lora_beside_a_parent_adapter_warns_it_is_unused(write_spec):
    prompt = {**PAIR, "rejected": "{rejected}<eos>"}
    path = write_spec(
        method="dpo", prompt=prompt, model={"adapter": "runs/x/latest"}, lora={"r": 8}
    )
    diag = only_rule(diagnose(path), "SF030", severity="warning")
    assert diag.key == "lora"


def test_cli_validate_reports_every_missing_field_at_once(write_spec):
    from tests.conftest import run_cli

    path = write_spec(method="orpo", prompt={**PAIR, "label_field": "good"})
    result = run_cli("validate", str(path), cwd=path.parent)
    assert result.returncode == 1
    assert "prompt.rejected is not set" in result.stdout + result.stderr
    assert "label_field is for kto, not orpo" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_method_suggests(write_spec):
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(method="dop", prompt={**PAIR, "rejected": "{r}<eos>", "x": DROP}))
    assert "did you mean `dpo`?" in err.value.diagnostics[0].render()


def test_truncate_field_is_for_sft(write_spec):
    prompt = {**PAIR, "rejected": "{rejected}<eos>", "truncate_field": "question"}
    diag = only_rule(diagnose(write_spec(method="dpo", prompt=prompt)), "SF030")
    assert diag.key == "prompt.truncate_field" and "drops (and counts) rows" in diag.message


def test_mixtures_and_conversations_are_for_sft(write_spec):
    """train_preference.py reads one source: a mixture on a dpo spec is a located error, not a
    script that fails later (conversations: tests/spec/test_preference_data_rules.py)."""
    sources = [{"path": "org/a"}, {"path": "org/b"}]
    prompt = {**PAIR, "rejected": "{rejected}<eos>"}
    dataset = {"path": DROP, "sources": sources}
    diags = diagnose(write_spec(method="dpo", prompt=prompt, dataset=dataset))
    assert "dataset.sources" in [d.key for d in fired(diags, "SF030")]


def test_kto_weights_are_null_elsewhere_and_one_for_kto(write_spec):
    """A dpo spec resolves with null kto weights (so its spec.resolved.yaml validates again);
    kto's are written out as 1.0, with `preference: null` too."""
    dpo = load_spec(write_spec(method="dpo", prompt={**PAIR, "rejected": "{rejected}<eos>"}))
    assert dpo.spec.model_dump()["preference"] is None
    dpo = load_spec(
        write_spec(
            method="dpo", prompt={**PAIR, "rejected": "{rejected}<eos>"}, preference={"beta": 0.2}
        )
    )
    assert dpo.spec.preference.desirable_weight is None
    assert dpo.spec.preference.undesirable_weight is None
    kto = load_spec(write_spec(method="kto", prompt={**PAIR, "label_field": "good"}))
    assert kto.spec.preference.desirable_weight == kto.spec.preference.undesirable_weight == 1.0
    kto = load_spec(
        write_spec(
            method="kto",
            prompt={**PAIR, "label_field": "good"},
            preference={"undesirable_weight": 1.5},
        )
    )
    assert (kto.spec.preference.desirable_weight, kto.spec.preference.undesirable_weight) == (
        1.0,
        1.5,
    )


def test_default_lora_beside_a_parent_adapter_says_nothing(write_spec):
    """A resolved spec writes the lora defaults out; only a lora section that says something
    the parent adapter ignores is warned about."""
    prompt = {**PAIR, "rejected": "{rejected}<eos>"}
    path = write_spec(
        method="dpo", prompt=prompt, model={"adapter": "runs/x/latest"}, lora={"r": 16}
    )
    assert diagnose(path) == []
