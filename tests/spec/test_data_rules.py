"""What validate reads in local data files: a line that is not JSON, an empty file, a list or
mapping column formatted into a prompt (issues 23, 24), each located and with a hint."""

from __future__ import annotations

import json

from tests.helpers import diagnose, only_rule, write_jsonl

from .conftest import line_col, spec_text

ROW = {"question": "q", "answer": "a"}


def test_a_line_that_is_not_json_is_located_at_the_data_file(write_spec, workdir):
    lines = [json.dumps(ROW)] * 56 + ['{"question": "q" "answer": "a"}'] + [json.dumps(ROW)] * 3
    (workdir / "data").mkdir()
    (workdir / "data/x.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    text = spec_text(dataset={"path": "data/x.jsonl"})
    diag = only_rule(diagnose(write_spec(text)), "SF009")
    assert diag.render().splitlines()[0] == (
        "data/x.jsonl:57:18: error: dataset.path: the line is not JSON: "
        "Expecting ',' delimiter [SF009]"
    )
    line, col = line_col(text, "data/x.jsonl")
    where = f"spec.yaml:{line}:{col}"
    assert diag.hints == (
        f"the file is dataset.path ({where}); fix or remove the line (train.py stops at it)",
    )


def test_a_bad_line_in_a_mixture_names_its_source(write_spec, workdir):
    write_jsonl(workdir / "a.jsonl", [ROW])
    (workdir / "b.jsonl").write_text(json.dumps(ROW) + "\n\n{oops\n", encoding="utf-8")
    sources = [{"path": "a.jsonl"}, {"path": "b.jsonl"}]
    path = write_spec(dataset={"path": None, "sources": sources})
    diag = only_rule(diagnose(path), "SF009")
    assert (diag.location.file, diag.location.line) == ("b.jsonl", 3)
    assert diag.key == "dataset.sources.1.path"


def test_a_line_that_is_not_utf8_is_located(write_spec, workdir):
    (workdir / "train.jsonl").write_bytes(json.dumps(ROW).encode() + b'\n{"question": "\xff"}\n')
    diag = only_rule(diagnose(write_spec(dataset={"path": "train.jsonl"})), "SF009")
    assert (diag.location.file, diag.location.line) == ("train.jsonl", 2)
    assert diag.message == "the line is not UTF-8 text"


def test_a_json_file_that_does_not_parse_is_located(write_spec, workdir):
    (workdir / "train.json").write_text('[\n  {"question": "q",}\n]\n', encoding="utf-8")
    diag = only_rule(diagnose(write_spec(dataset={"path": "train.json"})), "SF009")
    assert str(diag.location) == "train.json:2:20"  # the `}` after the comma
    assert diag.message.startswith("the file is not JSON: ")


def test_an_empty_data_file_says_it_is_empty(write_spec, workdir):
    for name, text in (("train.jsonl", "\n\n"), ("train.csv", ""), ("train.json", "[]")):
        (workdir / name).write_text(text, encoding="utf-8")
        diag = only_rule(diagnose(write_spec(dataset={"path": name})), "SF009")
        assert diag.key == "dataset.path"
        assert diag.message == f"local dataset {name} is empty: it holds no rows"


def test_a_list_column_in_a_prompt_field_is_an_error(write_spec, workdir):
    rows = [ROW, {"question": ["two", "parts"], "answer": "a"}]
    write_jsonl(workdir / "train.jsonl", rows)
    text = spec_text(dataset={"path": "train.jsonl"})
    diag = only_rule(diagnose(write_spec(text)), "SF010")
    assert diag.key == "prompt.template"
    assert diag.location.line == line_col(text, "template:")[0]
    assert diag.message == (
        "column question holds a list (train.jsonl:2), but {question} formats it as text: "
        "the prompt would show its Python repr"
    )
    assert "prompt.conversation" in diag.hints[0] and "prompt.messages" in diag.hints[0]


def test_a_mapping_column_in_the_completion_is_an_error(write_spec, workdir):
    write_jsonl(workdir / "train.jsonl", [{"question": "q", "answer": {"label": "yes"}}])
    diag = only_rule(diagnose(write_spec(dataset={"path": "train.jsonl"})), "SF010")
    assert diag.key == "prompt.completion"
    assert diag.message.startswith("column answer holds a mapping (train.jsonl:1)")


def test_a_mapped_source_column_is_checked_under_its_own_name(write_spec, workdir):
    write_jsonl(workdir / "a.jsonl", [ROW])
    write_jsonl(workdir / "b.jsonl", [{"query": ["x"], "answer": "a"}])
    sources = [{"path": "a.jsonl"}, {"path": "b.jsonl", "columns": {"question": "query"}}]
    diag = only_rule(diagnose(write_spec(dataset={"path": None, "sources": sources})), "SF010")
    assert diag.message.startswith("column query holds a list (b.jsonl:1), but {question}")


def test_sf007_reports_each_token_once(write_spec):
    prompt = {"template": "<q> {question} <q>\n<response>", "completion": "<q>{answer}<eos>"}
    diags = diagnose(write_spec(prompt=prompt))
    diag = only_rule(diags, "SF007", severity="warning")
    assert diag.key == "prompt.template" and diag.message.startswith("<q> ")
