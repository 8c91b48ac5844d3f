"""prompt.if_empty (issue 25, item 2): the alpaca format's other prompt for a row whose input
is empty, said as data. The spec refuses alternatives that cannot work, located; train.py and
infer.py pick the same prompt for each row; a tiny model trains on both kinds of row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from specforge.core.errors import SpecError
from specforge.validate.load import load_spec
from tests.conftest import load_generated, run_cli, tiny_spec
from tests.spec.conftest import DROP, line_col, spec_text

WITH_INPUT = "Instruction: {instruction}\nInput: {input}\n<response>"
WITHOUT_INPUT = "Instruction: {instruction}\n<response>"
ROWS = [
    {"instruction": "Say the label of: up 5%", "input": "", "output": "positive"},
    {"instruction": "Say the label of", "input": "down 3%", "output": "negative"},
    {"instruction": "Say the label of: flat", "input": None, "output": "neutral"},
]


def refused(tmp_path: Path, prompt: dict) -> tuple[str, str]:
    text = spec_text(prompt=prompt)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(path, check_files=False)
    (diag,) = err.value.diagnostics
    return text, diag.render()


@pytest.mark.parametrize(
    ("if_empty", "says"),
    [
        ({"answer": "Q: {question}\n"}, "prompt.if_empty: 'answer' is not a field of the prompt"),
        ({"question": "Q: {question}\n"}, "for an empty 'question': the prompt uses {question}"),
        ({"question": "Q: {context}\n"}, "uses context, not in the main prompt"),
        ({"question": [{"role": "user", "content": "hi"}]}, "write the alternative prompt as a"),
    ],
)
def test_alternatives_that_cannot_work_are_refused_where_they_are(tmp_path, if_empty, says):
    text, rendered = refused(
        tmp_path,
        {"template": "Q: {question}\n", "completion": "{answer}<eos>", "if_empty": if_empty},
    )
    assert says in rendered
    line, _ = line_col(text, "if_empty:")
    assert f"spec.yaml:{line + 1}:" in rendered, rendered  # at the alternatives themselves


def test_a_conversation_takes_no_alternative_prompt(tmp_path):
    prompt = {
        "template": DROP,
        "completion": DROP,
        "conversation": {"column": "messages"},
        "if_empty": {"input": "x"},
    }
    _, rendered = refused(tmp_path, prompt)
    assert "`if_empty` is for `template`/`messages` prompts" in rendered


def alpaca_spec(model_dir: Path, chat: bool = False) -> str:
    text = tiny_spec(model_dir, name="alpaca", max_steps=2, eval_strategy="no")
    main = '  template: "Instruction: {instruction}\\nInput: {input}\\n<response>"\n'
    assert main in text
    if chat:
        return text.replace(
            main,
            "  messages:\n"
            '    - {role: user, content: "{instruction}\\n{input}"}\n'
            "  if_empty:\n"
            '    input: [{role: user, content: "{instruction}"}]\n',
        )
    alternative = '  if_empty:\n    input: "Instruction: {instruction}\\n<response>"\n'
    return text.replace(main, main + alternative)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("alpaca")
    (root / "specs").mkdir()
    (root / "data").mkdir()
    lines = [json.dumps(row) for row in ROWS * 8]
    (root / "data/train.jsonl").write_text("\n".join(lines) + "\n")
    (root / "data/heldout.jsonl").write_text("\n".join(lines[:3]) + "\n")
    (root / "specs/alpaca.yaml").write_text(alpaca_spec(tiny_model_dir))
    result = run_cli("compile", "specs/alpaca.yaml", cwd=root)
    assert result.returncode == 0, result.stderr
    return root


def test_train_and_infer_pick_the_same_prompt_for_each_row(project):
    train = load_generated(project / "generated/alpaca/train.py", "alpaca_train")
    infer = load_generated(project / "generated/alpaca/infer.py", "alpaca_infer")
    assert train.PROMPT_IF_EMPTY == {"input": WITHOUT_INPUT}
    prompts = [train.build_prompt(row) for row in ROWS]
    assert prompts == [
        "Instruction: Say the label of: up 5%\n<response>",
        "Instruction: Say the label of\nInput: down 3%\n<response>",
        "Instruction: Say the label of: flat\n<response>",
    ]
    assert [infer.build_prompt(row) for row in ROWS] == prompts


def test_explain_samples_the_prompt_each_row_takes(project):
    from specforge.modelinfo.sample import _texts

    spec = load_spec(project / "specs/alpaca.yaml", check_files=False).spec
    texts = [_texts(spec, row)[0] for row in ROWS[:2]]
    assert texts[0].startswith("Instruction: Say the label of: up 5%\n<response>")
    assert "Input: down 3%" in texts[1]


@pytest.mark.train
def test_a_tiny_model_trains_on_rows_with_and_without_input(project):
    result = subprocess.run(
        [sys.executable, "generated/alpaca/train.py", "--output-dir", "runs/alpaca/t"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((project / "runs/alpaca/t/train_summary.json").read_text())
    assert summary["train"]["dropped"] == 0 and summary["train"]["rows"] > 0
    metrics = [
        json.loads(x) for x in (project / "runs/alpaca/t/metrics.jsonl").read_text().splitlines()
    ]
    assert any("loss" in m for m in metrics)


def test_a_chat_prompt_s_alternative_is_messages(tmp_path, tiny_model_dir):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/train.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    (tmp_path / "data/heldout.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    (tmp_path / "spec.yaml").write_text(alpaca_spec(tiny_model_dir, chat=True))
    result = run_cli("compile", "spec.yaml", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    train = load_generated(tmp_path / "out/alpaca/train.py", "alpaca_chat_train")
    assert train.prompt_turns(ROWS[0]) == [["user", "{instruction}"]]
    assert train.prompt_turns(ROWS[1]) == [["user", "{instruction}\n{input}"]]
