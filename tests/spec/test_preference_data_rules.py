"""Preference data as conversations: prompt.conversation names the prompt's turns and the answer
columns (SF030 says which a method takes), and SF021 checks a local file's first rows against
those shapes, each problem located at the data file's line."""

from __future__ import annotations

import pytest

from specforge.validate.load import load_spec
from tests.helpers import diagnose, fired, only_rule, write_jsonl

from .conftest import DROP, spec_text

SYSTEM = {"role": "system", "content": "Be brief."}
ASK = [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
ASK += [{"role": "user", "content": "Capital of France?"}]
ROW = {
    "conversation": ASK,
    "chosen": {"role": "assistant", "content": "Paris"},
    "rejected": {"role": "assistant", "content": "Lyon"},
}
PAIRS = {
    "conversation": {"column": "conversation", "chosen": "chosen", "rejected": "rejected"},
    "template": DROP,
    "completion": DROP,
}
SHAREGPT = {
    "column": "conversations",
    "role_key": "from",
    "content_key": "value",
    "roles": {"human": "user", "gpt": "assistant"},
}
KTO = {"conversation": SHAREGPT, "label_field": "kto_tag", "template": DROP, "completion": DROP}


def pairs_spec(write_spec, rows, method="dpo", prompt=PAIRS):
    write_jsonl(write_spec().parent / "pairs.jsonl", rows)
    return write_spec(method=method, dataset={"path": "pairs.jsonl"}, prompt=prompt)


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_a_pair_of_message_columns_after_a_multi_turn_prompt_loads(write_spec, method):
    spec = load_spec(pairs_spec(write_spec, [ROW, ROW], method=method)).spec
    assert spec.prompt.completion_fields() == ["chosen"]
    assert spec.prompt.rejected_fields() == ["rejected"]


def test_answers_may_be_text_or_a_list_whose_last_message_answers(write_spec):
    text = {**ROW, "chosen": "Paris", "rejected": "Lyon"}
    listed = {**ROW, "chosen": [ROW["chosen"]], "rejected": [ROW["rejected"]]}
    for row in (text, listed):
        assert load_spec(pairs_spec(write_spec, [row, row])).spec.method == "dpo"


def test_a_sharegpt_kto_conversation_answers_with_its_last_turn(write_spec):
    turns = [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    rows = [{"conversations": turns, "kto_tag": True}, {"conversations": turns, "kto_tag": False}]
    spec = load_spec(pairs_spec(write_spec, rows, method="kto", prompt=KTO)).spec
    assert spec.prompt.conversation.completion is None
    assert spec.prompt.completion_fields() == []


def test_chosen_as_text_where_the_prompt_s_turns_are_declared_is_located(write_spec, workdir):
    """chosen == column: the prompt is chosen's turns before its last, so chosen must be a
    list; text there is reported at the data file's line, with the spec key in the hint."""
    argilla = {**PAIRS, "conversation": {"column": "chosen", "chosen": "chosen"}}
    argilla["conversation"]["rejected"] = "rejected"
    good = {"chosen": ASK + [ROW["chosen"]], "rejected": ASK + [ROW["rejected"]]}
    rows = [good, {**good, "chosen": "Paris"}, good]
    diag = only_rule(diagnose(pairs_spec(write_spec, rows, prompt=argilla)), "SF021")
    assert diag.location.file.endswith("pairs.jsonl") and diag.location.line == 2
    assert diag.key == "prompt.conversation.chosen"
    assert "chosen is text, but the prompt's turns are declared there" in diag.message
    assert diag.hints[0].startswith("prompt.conversation.chosen (spec.yaml:")


def test_a_role_outside_the_mapping_is_located_at_its_lines(write_spec):
    bot = {**ROW, "rejected": {"role": "bot", "content": "Lyon"}}
    diag = only_rule(diagnose(pairs_spec(write_spec, [ROW, bot, ROW, bot])), "SF021")
    assert diag.location.line == 2 and "(and line(s) 4)" in diag.message
    assert "rejected: turn 0: role 'bot' is not one of assistant, system, user" in diag.message
    assert "role_key, content_key, roles" in diag.hints[0]


def test_an_answer_from_the_user_and_mixed_forms_are_reported(write_spec):
    user = {**ROW, "chosen": {"role": "user", "content": "Paris"}}
    text = {**ROW, "rejected": "Lyon"}
    diags = fired(diagnose(pairs_spec(write_spec, [ROW, user, text])), "SF021")
    messages = {d.location.line: d.message for d in diags}
    assert "the answer's role 'user' is not an assistant's" in messages[2]
    assert "rejected is text, but a message (a mapping) in line 1" in messages[3]


def test_a_kto_conversation_must_end_with_an_assistant_turn(write_spec):
    turns = [{"from": "human", "value": "Hi"}, {"from": "human", "value": "Hello?"}]
    rows = [{"conversations": turns, "kto_tag": True}]
    diag = only_rule(diagnose(pairs_spec(write_spec, rows, method="kto", prompt=KTO)), "SF021")
    assert "the answer's role 'human' is not an assistant's" in diag.message


@pytest.mark.parametrize(
    ("method", "conversation", "key", "says"),
    [
        ("dpo", {"chosen": "chosen"}, "prompt.conversation", "rejected is not set"),
        ("dpo", {"chosen": "a", "rejected": "a"}, "prompt.conversation.rejected", "both"),
        ("dpo", {"chosen": "a", "rejected": "b", "completion": "c"}, None, "not a dpo answer"),
        ("kto", {"chosen": "a"}, "prompt.conversation.chosen", "kto takes one answer"),
        ("sft", {"rejected": "a"}, "prompt.conversation.rejected", "every assistant turn"),
    ],
)
def test_each_method_names_its_own_answer_columns(write_spec, method, conversation, key, says):
    prompt = {**PAIRS, "conversation": {"column": "conversation", **conversation}}
    if method == "kto":
        prompt["label_field"] = "good"
    diags = fired(diagnose(write_spec(method=method, prompt=prompt)), "SF030")
    assert len(diags) == 1 and says in diags[0].message, [d.message for d in diags]
    assert key is None or diags[0].key == key


def test_a_conversation_pair_takes_no_rejected_template(write_spec):
    prompt = {**PAIRS, "rejected": "{rejected}<eos>"}
    diag = only_rule(diagnose(write_spec(method="dpo", prompt=prompt)), "SF030")
    assert diag.key == "prompt.rejected" and "columns" in diag.message


def test_drop_system_is_a_conversation_option_for_sft_too(write_spec):
    text = spec_text(prompt={**PAIRS, "conversation": {"column": "messages", "drop_system": True}})
    spec = load_spec(write_spec(text)).spec
    assert spec.prompt.conversation.drop_system is True
