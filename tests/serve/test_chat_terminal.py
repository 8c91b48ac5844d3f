"""`specforge chat` driven through a pseudo-terminal (pexpect), as a person types into it: the
template spec's fields and rendered prompt, and a conversation with /system, /reset, /exit; the
answers equal what the same model answers through the server's code for the same prompt."""

from __future__ import annotations

import pexpect
import pytest

from specforge.serve.engine import Params, run
from specforge.serve.run import load, open_run
from tests.serve.conftest import answer_after, infer_answers, read_jsonl, spawn

pytestmark = pytest.mark.train


def test_template_spec_fields_and_the_rendered_prompt(tiny_run):
    row = read_jsonl(tiny_run / "predictions.jsonl")[0]
    (expected,) = infer_answers(tiny_run, [{k: row[k] for k in ("instruction", "input")}])
    session = spawn(tiny_run)
    session.expect_exact("input> ")
    assert answer_after(session, f"instruction={row['instruction']}", "input> ") == ""
    assert answer_after(session, row["input"], "input> ") == expected
    shown = answer_after(session, "/prompt", "input> ")
    expected = f"Instruction: {row['instruction']}\nInput: {row['input']}\n<response>"
    assert shown == repr(expected)
    session.sendline("/exit")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0


def test_conversation_keeps_turns_with_system_and_reset(tiny_chat_run):
    served = open_run(tiny_chat_run)
    engine = load(served)

    def expected(messages):
        prompt = served.conversation_prompt(messages)
        return run(engine, engine.encode(prompt), Params(max_tokens=4)).text

    session = spawn(tiny_chat_run)
    session.expect_exact("you> ")
    answer_after(session, "/system Answer with the exact words from the note.", "you> ")
    system = {"role": "system", "content": "Answer with the exact words from the note."}
    first = answer_after(session, "Where did Maria go?", "you> ")
    assert first == expected([system, {"role": "user", "content": "Where did Maria go?"}])
    history = [system, {"role": "user", "content": "Where did Maria go?"}]
    history.append({"role": "assistant", "content": first})
    second = answer_after(session, "Day?", "you> ")
    assert second == expected([*history, {"role": "user", "content": "Day?"}])
    assert "Where did Maria go?" in answer_after(session, "/prompt", "you> ")
    answer_after(session, "/reset", "you> ")
    answer_after(session, "/system", "you> ")  # no system turn any more
    alone = answer_after(session, "Day?", "you> ")
    assert alone == expected([{"role": "user", "content": "Day?"}])
    session.sendline("/exit")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0
