"""`specforge serve` through the official openai client, as a user points one at it: answers
equal infer.py's for the same held-out rows (streamed or not), the bearer token is enforced,
bad requests get OpenAI's error shape, a full line gets 503, a client that leaves frees its slot."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from tests.serve.conftest import infer_answers, read_jsonl, serving

pytestmark = pytest.mark.train

KEY = "sk-test-7f3a9c"  # a made-up token: it must never reach the server's log


@pytest.fixture(scope="module")
def tiny_server(tiny_run):
    with serving(tiny_run, env={"SPECFORGE_API_KEY": KEY}) as (url, log):
        yield url, log


@pytest.fixture(scope="module")
def chat_server(tiny_chat_run):
    with serving(tiny_chat_run, "--queue", "0") as (url, log):
        yield url, log


def held_out(run_dir) -> list[dict]:
    """The rows infer.py answered in the run's evaluation, without its answers."""
    rows = read_jsonl(run_dir / "predictions.jsonl")
    return [{k: v for k, v in row.items() if k not in ("prediction", "reference")} for row in rows]


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=300)


def test_completion_equals_infer_answer_streamed_or_not(tiny_server, tiny_run):
    api = client(tiny_server[0])
    rows = [{k: row[k] for k in ("instruction", "input")} for row in held_out(tiny_run)[:4]]
    for fields, expected in zip(rows, infer_answers(tiny_run, rows)):
        whole = api.completions.create(model="tiny", prompt="", extra_body={"fields": fields})
        assert whole.choices[0].text == expected
        assert whole.choices[0].finish_reason in ("stop", "length")
        chunks = list(
            api.completions.create(
                model="tiny", prompt="", extra_body={"fields": fields}, stream=True
            )
        )
        assert "".join(c.choices[0].text for c in chunks) == expected
        assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_chat_completion_equals_infer_answer_on_a_conversation_run(chat_server, tiny_chat_run):
    api = client(chat_server[0])
    rows = held_out(tiny_chat_run)
    for row, expected in zip(rows, infer_answers(tiny_chat_run, rows)):
        messages = row["messages"][:-1]  # infer.py answers the last assistant turn afresh
        whole = api.chat.completions.create(model="conv", messages=messages)
        assert whole.choices[0].message.content == expected
        stream = api.chat.completions.create(model="conv", messages=messages, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == expected
    assert [m.id for m in api.models.list()] == ["conv"]


def test_bearer_token_is_enforced_and_never_logged(tiny_server):
    url, log = tiny_server
    for key in ("wrong", ""):
        with pytest.raises(openai.AuthenticationError) as caught:
            client(url, key or "-").models.list()
        assert caught.value.status_code == 401
        assert caught.value.body["type"] == "invalid_request_error"
    assert httpx.get(f"{url}/v1/models").status_code == 401  # no Authorization header at all
    unread = httpx.post(f"{url}/v1/completions", content=b"{not json")  # checked before the body
    assert unread.status_code == 401 and unread.json()["error"]["code"] == "invalid_api_key"
    assert [m.id for m in client(url).models.list()] == ["tiny"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"  # health checks need no key
    assert KEY not in log.read_text()


def test_bad_requests_get_the_openai_error_shape(tiny_server):
    url, _ = tiny_server
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    reply = httpx.post(
        f"{url}/v1/completions", content=b'{"model": "tiny", "prompt": ', headers=headers
    )
    assert reply.status_code == 400
    assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
    api = client(url)
    with pytest.raises(openai.NotFoundError) as caught:
        api.completions.create(model="gpt-4", prompt="hello")
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        api.completions.create(model="tiny", prompt="hello", max_tokens=100_000)
    assert "beyond the model's context length 512" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        api.completions.create(model="tiny", prompt="word " * 600)
    assert caught.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as caught:
        api.completions.create(model="tiny", prompt="", extra_body={"fields": {"input": "x"}})
    assert "instruction" in caught.value.body["message"]


def test_full_queue_gets_503_and_a_client_that_leaves_frees_its_slot(chat_server, tiny_chat_run):
    url, _ = chat_server  # --queue 0: one request at a time, none waiting
    messages = read_jsonl(tiny_chat_run / "predictions.jsonl")[0]["messages"][:-1]
    body = {"model": "conv", "messages": messages, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as first:
        lines = first.iter_lines()
        assert next(lines).startswith("data: ")  # it is generating
        refused = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
    started = time.monotonic()  # the first client has gone: its generation stops at a token
    while httpx.get(f"{url}/health").json()["pending"] and time.monotonic() - started < 30:
        time.sleep(0.05)
    assert httpx.get(f"{url}/health").json()["pending"] == 0
    answer = client(url).chat.completions.create(model="conv", messages=messages, max_tokens=2)
    assert answer.choices[0].finish_reason == "length"


def test_one_generation_at_a_time_while_others_wait(chat_server, tiny_chat_run):
    """With --queue 0 two requests at once: one is answered, one refused, none interleaved."""
    url, _ = chat_server
    messages = read_jsonl(tiny_chat_run / "predictions.jsonl")[0]["messages"][:-1]
    statuses: list[int] = []

    def ask():
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "conv", "messages": messages, "max_tokens": 64},
            timeout=300,
        )
        statuses.append(reply.status_code)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) >= 1 and set(statuses) <= {200, 503}
