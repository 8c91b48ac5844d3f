"""`make demo`'s run served and chatted with, on SmolLM2: the answers (real labels) equal
infer.py's held-out predictions, through the openai client (streamed or not) and the terminal."""

from __future__ import annotations

import openai
import pytest

from tests.serve.conftest import answer_after, read_jsonl, serving, spawn

pytestmark = pytest.mark.slow

ROWS = 6


def test_served_quickstart_answers_as_infer_did(quickstart_run):
    rows = read_jsonl(quickstart_run / "predictions.jsonl")[:ROWS]
    assert any(row["prediction"] in ("negative", "neutral", "positive") for row in rows)
    with serving(quickstart_run) as (url, _):
        api = openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0, timeout=300)
        for row in rows:
            fields = {"instruction": row["instruction"], "input": row["input"]}
            body = {"model": "quickstart", "prompt": "", "extra_body": {"fields": fields}}
            assert api.completions.create(**body).choices[0].text == row["prediction"]
            chunks = api.completions.create(stream=True, **body)
            assert "".join(c.choices[0].text for c in chunks) == row["prediction"]


def test_chat_with_the_quickstart_reads_the_label(quickstart_run):
    row = read_jsonl(quickstart_run / "predictions.jsonl")[0]
    session = spawn(quickstart_run)
    session.expect_exact("input> ")
    answer_after(session, f"instruction={row['instruction']}", "input> ")
    assert answer_after(session, row["input"], "input> ") == row["prediction"]
    session.sendline("/exit")
    session.expect_exact("")
    session.close()
