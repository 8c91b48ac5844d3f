"""SF070-SF073: pretrain and reward specs, dataset.eval_path, early stopping and activation
offloading, each located at its key and with a hint where one helps."""

from __future__ import annotations

from specforge.validate.load import load_spec
from tests.helpers import diagnose, fired, only_rule

from .conftest import DROP, line_col, spec_text

TEXT = {"text_column": "text", "template": DROP, "completion": DROP}
PAIR = {"template": "Question: {question}\n", "completion": "{chosen}", "rejected": "{rejected}"}


def pretrain_text(training=None, **sections) -> str:
    training = {"packing": True, **(training or {})}
    return spec_text(method="pretrain", tokenizer=DROP, prompt=TEXT, training=training, **sections)


def reward_text(prompt=None, **sections) -> str:
    prompt = {**PAIR, **(prompt or {})}
    return spec_text(method="reward", tokenizer=DROP, prompt=prompt, **sections)


def test_pretrain_and_reward_specs_load_clean(write_spec):
    for text in (pretrain_text(), reward_text()):
        loaded = load_spec(write_spec(text), check_files=False)
        assert loaded.warnings == []
    assert loaded.spec.method == "reward"


def test_pretrain_needs_a_text_column(write_spec):
    text = spec_text(method="pretrain", training={"packing": True})
    diag = only_rule(diagnose(write_spec(text)), "SF070")
    assert "method pretrain trains on raw text: set prompt.text_column" in diag.message
    assert (diag.location.line, diag.location.col) == line_col(text, "template:")


def test_text_column_is_pretrain_s(write_spec):
    text = spec_text(tokenizer=DROP, prompt=TEXT)
    diag = only_rule(diagnose(write_spec(text)), "SF070")
    assert "text_column is raw text for method pretrain, not sft" in diag.message
    line, col = line_col(text, "text_column: text")
    assert (diag.location.line, diag.location.col) == (line, col + len("text_column: "))


def test_text_column_excludes_a_completion(write_spec):
    text = spec_text(method="pretrain", prompt={"text_column": "text", "template": DROP})
    diag = diagnose(write_spec(text))[0]
    assert "`text_column` is raw text, trained on whole: remove completion" in diag.message


def test_pretrain_without_packing_warns(write_spec):
    text = pretrain_text(training={"packing": False})
    diag = only_rule(diagnose(write_spec(text), check_files=False), "SF070", "warning")
    assert "each document over training.max_length loses its end" in diag.message
    assert any("packing: true" in hint for hint in diag.hints)


def test_pretrain_has_no_labels_to_score(write_spec):
    text = pretrain_text(inference={"labels": ["a", "b"]})
    [diag] = fired(diagnose(write_spec(text)), "SF070")  # SF011 finds no answer column too
    assert "held-out text is scored by perplexity" in diag.message
    assert (diag.location.line, diag.location.col) == line_col(text, "- a")


def test_reward_takes_no_preference_section_or_new_tokens(write_spec):
    text = reward_text(preference={"beta": 0.2})
    diag = only_rule(diagnose(write_spec(text)), "SF070")
    assert "preference is for dpo/orpo/kto, not reward" in diag.message
    text = spec_text(method="reward", prompt=PAIR)  # the base spec's special tokens
    found = [d for d in diagnose(write_spec(text)) if d.rule == "SF070"]
    assert ["reward adds no tokens" in d.message for d in found] == [True]


def test_reward_needs_the_rejected_answer(write_spec):
    text = reward_text(prompt={"rejected": DROP})
    diag = only_rule(diagnose(write_spec(text)), "SF030")
    assert "method reward trains on preference pairs" in diag.message


def test_reward_adapter_saves_the_score_head(write_spec):
    text = reward_text(lora={"modules_to_save": ["embed_tokens"]})
    diag = only_rule(diagnose(write_spec(text)), "SF070")
    assert "must train and save the new score head: add `score`" in diag.message


def test_eval_path_replaces_the_validation_split(write_spec):
    text = spec_text(dataset={"eval_path": "data/eval.jsonl", "validation_fraction": 0.1})
    diag = only_rule(diagnose(write_spec(text), check_files=False), "SF071")
    assert "validation_fraction and eval_path both name the evaluation rows" in diag.message
    assert (diag.location.line, diag.location.col) == line_col(text, "0.1")
    text = spec_text(dataset={"eval_split": "test"})
    diag = only_rule(diagnose(write_spec(text)), "SF071")
    assert "eval_split is the split of dataset.eval_path" in diag.message


def test_a_local_eval_path_exists(write_spec):
    text = spec_text(dataset={"eval_path": "data/missing.jsonl"})
    diag = only_rule(diagnose(write_spec(text)), "SF071")
    assert "local evaluation dataset data/missing.jsonl does not exist" in diag.message
    assert (diag.location.line, diag.location.col) == line_col(text, "data/missing.jsonl")


def test_early_stopping_needs_evaluations(write_spec):
    text = spec_text(training={"early_stopping_patience": 2})
    diag = only_rule(diagnose(write_spec(text)), "SF072")
    assert "early stopping needs evaluations" in diag.message
    assert (diag.location.line, diag.location.col) == line_col(text, "2\n")


def test_early_stopping_needs_checkpoints_at_the_evaluations(write_spec):
    training = {"early_stopping_patience": 2, "eval_strategy": "steps", "eval_steps": 10}
    dataset = {"validation_fraction": 0.1}
    text = spec_text(training={**training, "save_strategy": "epoch"}, dataset=dataset)
    diag = only_rule(diagnose(write_spec(text)), "SF072")
    assert "save_strategy epoch must be eval_strategy's (steps), or best" in diag.message
    steps = {"save_strategy": "steps", "save_steps": 15}
    text = spec_text(training={**training, **steps}, dataset=dataset)
    diag = only_rule(diagnose(write_spec(text)), "SF072")
    assert "save_steps (15) must be a multiple of eval_steps (10)" in diag.message
    for save in ({"save_strategy": "best"}, {"save_strategy": "steps", "save_steps": 20}):
        text = spec_text(training={**training, **save}, dataset=dataset)
        assert load_spec(write_spec(text)).warnings == []


def test_threshold_needs_patience(write_spec):
    text = spec_text(training={"early_stopping_threshold": 0.1})
    diag = only_rule(diagnose(write_spec(text)), "SF072")
    assert "early_stopping_threshold needs training.early_stopping_patience" in diag.message


def test_orpo_has_no_activation_offloading(write_spec):
    text = spec_text(
        method="orpo",
        prompt={"rejected": "{rejected}<eos>"},
        training={"activation_offloading": True},
    )
    diag = only_rule(diagnose(write_spec(text)), "SF073")
    assert "ORPO trainer has no activation offloading" in diag.message
