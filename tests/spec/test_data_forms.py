"""The data language's forms: a conversation column instead of templates, and a mixture of
sources instead of one path. Each misuse is one located error."""

from __future__ import annotations

import json

from specforge.core.errors import SpecError
from specforge.validate.load import load_spec

from .conftest import DROP


def errors(path) -> list[str]:
    try:
        load_spec(path)
    except SpecError as err:
        return [d.render().splitlines()[0] for d in err.diagnostics]
    return []


CONVERSATION = {"conversation": {"column": "messages"}, "template": DROP, "completion": DROP}
TWO = [{"path": "org/a", "weight": 1.0}, {"path": "org/b", "weight": 2.0}]


def test_a_conversation_spec_needs_no_template_or_completion(write_spec):
    spec = load_spec(write_spec(prompt=CONVERSATION)).spec
    assert spec.prompt.prompt_fields() == ["messages"]
    assert spec.answer_column() == "reference" and spec.stop_token() is None


def test_a_conversation_with_a_completion_is_refused(write_spec):
    (line,) = errors(write_spec(prompt={**CONVERSATION, "completion": "{answer}<eos>"}))
    assert "prompt: a conversation's assistant turns are the completions" in line


def test_a_template_without_completion_is_refused(write_spec):
    (line,) = errors(write_spec(prompt={"completion": DROP}))
    assert "set `completion`: the text the model learns" in line


def test_conversation_keys_must_be_plain_names(write_spec):
    path = write_spec(prompt={**CONVERSATION, "conversation": {"role_key": "a b"}})
    (line,) = errors(path)
    assert "prompt.conversation.role_key" in line and "plain column or key name" in line


def test_conversation_roles_map_onto_the_three_roles(write_spec):
    path = write_spec(prompt={**CONVERSATION, "conversation": {"roles": {"gpt": "bot"}}})
    (line,) = errors(path)
    assert "prompt.conversation.roles.gpt" in line


def test_examples_do_not_apply_to_a_conversation(write_spec):
    path = write_spec(prompt=CONVERSATION, inference={"examples": [{"messages": "hi"}]})
    (line,) = errors(path)
    assert "inference.examples: examples are rows of text columns" in line and "[SF020]" in line


def test_a_misnamed_conversation_column_is_located(write_spec, workdir):
    row = {"conversations": [{"role": "user", "content": "hi"}]}
    (workdir / "chat.jsonl").write_text(json.dumps(row) + "\n")
    path = write_spec(dataset={"path": "chat.jsonl"}, prompt=CONVERSATION)
    try:
        load_spec(path)
    except SpecError as err:
        (diag,) = err.diagnostics
    assert diag.rule == "SF010" and "field(s) messages not in the dataset's columns" in diag.message
    assert diag.hints == ("set prompt.conversation.column",)


def test_path_or_sources_not_both(write_spec):
    (line,) = errors(write_spec(dataset={"sources": TWO}))
    assert "dataset: set exactly one of `path` and `sources`" in line


def test_weights_on_every_source_or_none(write_spec):
    path = write_spec(dataset={"path": DROP, "sources": [TWO[0], {"path": "org/b"}]})
    (line,) = errors(path)
    assert "set `weight` on every source or on none" in line


def test_mixture_settings_live_on_each_source(write_spec):
    path = write_spec(dataset={"path": DROP, "sources": TWO, "max_samples": 10})
    (line,) = errors(path)
    assert "`max_samples` does not apply to a mixture: set it per source" in line


def test_a_mapped_column_must_be_a_prompt_column(write_spec):
    sources = [TWO[0], {**TWO[1], "columns": {"questoin": "q"}}]
    path = write_spec(dataset={"path": DROP, "sources": sources})
    (line,) = errors(path)
    assert "dataset.sources.1.columns.questoin: questoin is not a prompt column" in line


def test_answer_format_is_text_or_json(write_spec):
    spec = load_spec(write_spec(inference={"answer_format": "json"})).spec
    assert spec.inference.answer_format == "json"
    (line,) = errors(write_spec(inference={"answer_format": "yaml"}))
    assert "inference.answer_format" in line


def test_bad_conversation_rows_are_named_by_line_at_validate_time(write_spec, workdir):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    empty = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}
    bot = {"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "yo"}]}
    rows = [good, empty, good, bot, empty]
    (workdir / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = write_spec(dataset={"path": "chat.jsonl"}, prompt=CONVERSATION)
    lines = errors(path)
    assert any("chat.jsonl line(s) 2, 5: an empty assistant turn [SF020]" in x for x in lines)
    assert any("line(s) 4: role 'bot' is not one of assistant, system, user" in x for x in lines)
    assert all(x.startswith("spec.yaml:") for x in lines)  # located at prompt.conversation
