"""The OpenAI-compatible HTTP API over one served run (FastAPI): /health, /v1/models,
/v1/completions and /v1/chat/completions, each streaming with `stream: true` (server-sent events
in OpenAI's chunk shapes, ending `data: [DONE]`). Errors use OpenAI's error shape.

Completions take the prompt as is, or, with a `fields` object in the body (the spec's template
fields, e.g. `extra_body={"fields": {...}}` in the openai client), build it with the run's own
prompt function. Chat completions build it from the messages (a conversation spec's own prompt
function, else the tokenizer's chat template). Decoding defaults are the spec's inference
settings; `max_tokens`, `temperature` (0 is greedy), `top_p`, `seed` and `stop` change them.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from specforge.serve.engine import Engine, Params, run
from specforge.serve.queue import Busy, GenerationQueue, Stream
from specforge.serve.run import ServedRun

RETRY_AFTER_S = 1


class ApiError(Exception):
    """An error the client caused (or a full line): OpenAI's error shape, with this status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code=None,
        param=None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.code, self.param = status, kind, code, param

    def response(self) -> JSONResponse:
        body = {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}
        headers = {"Retry-After": str(RETRY_AFTER_S)} if self.status == 503 else None
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


class Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send OpenAI fields this server ignores

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1)  # one answer per request: the model answers one at a time


class CompletionRequest(Sampling):
    prompt: str | list[str] | None = None
    fields: dict[str, str] | None = None  # the spec's template fields: its prompt function applies


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(
            str(part.get("text", "")) for part in self.content if part.get("type") == "text"
        )


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


@dataclass
class Served:
    """What the app serves: the run, its loaded model and that model's line of requests."""

    run: ServedRun
    engine: Engine
    queue: GenerationQueue
    api_key: str | None = None


def create_app(served: Served) -> FastAPI:
    app = FastAPI(title=f"specforge serve: {served.run.model_id}", docs_url=None, redoc_url=None)
    app.state.served = served
    _error_handlers(app)

    if served.api_key is not None:
        app.add_middleware(BearerToken, key=served.api_key)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": served.run.model_id, "pending": served.queue.pending}

    @app.get("/v1/models")
    def models() -> dict:
        entry = {
            "id": served.run.model_id,
            "object": "model",
            "created": _created(served),
            "owned_by": "specforge",
        }
        return {"object": "list", "data": [entry]}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest):
        _check_model(served, body.model)
        return await _answer(served, body, _completion_prompt(served.run, body), chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        _check_model(served, body.model)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        try:
            prompt = served.run.conversation_prompt(messages)
        except ValueError as err:
            raise ApiError(400, str(err), param="messages") from None
        return await _answer(served, body, prompt, chat=True)

    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, err: ApiError):
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, err: RequestValidationError):
        problems = err.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return ApiError(
                400, "the request body is not valid JSON", code="invalid_json"
            ).response()
        first = problems[0] if problems else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        if not where:  # the body itself: a form, a list, a bare string
            message = "the request body must be a JSON object (Content-Type: application/json)"
            return ApiError(400, message).response()
        return ApiError(
            400, f"{where}: {first.get('msg', 'invalid request')}", param=where or None
        ).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, err: StarletteHTTPException):
        return ApiError(err.status_code, str(err.detail)).response()


class BearerToken:
    """ASGI middleware: /v1 requests must carry the key as a bearer token, checked before the
    body is read (a request without it learns nothing else). A plain ASGI class, not
    BaseHTTPMiddleware, so streaming responses still see a client that disconnects. The token
    is never logged."""

    def __init__(self, app, key: str) -> None:
        self.app, self.key = app, key.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            headers = dict(scope.get("headers") or [])
            scheme, _, token = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.key):
                message = "invalid or missing API key (Authorization: Bearer ...)"
                response = ApiError(401, message, code="invalid_api_key").response()
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _check_model(served: Served, name: str) -> None:
    if name != served.run.model_id:
        raise ApiError(
            404,
            f"the model {name!r} does not exist here; this server serves {served.run.model_id!r}",
            code="model_not_found",
            param="model",
        )


def _created(served: Served) -> int:
    return int((served.run.run_dir / "run.json").stat().st_mtime)


def _completion_prompt(run: ServedRun, body: CompletionRequest) -> str:
    if body.fields is not None:
        try:
            return run.template_prompt(body.fields)
        except ValueError as err:
            raise ApiError(400, str(err), param="fields") from None
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise ApiError(400, "one prompt per request", param="prompt")
        prompt = prompt[0]
    if prompt is None:
        raise ApiError(400, f"give a prompt, or the template's fields {run.fields}", param="prompt")
    return prompt


def _params(served: Served, body: Sampling, ids: list[int]) -> Params:
    """The request's decoding settings, checked against the context length."""
    context = served.engine.context_length
    asked = body.max_tokens or getattr(body, "max_completion_tokens", None)
    max_tokens = asked or int(served.engine.defaults.get("max_new_tokens", 16))
    if max_tokens > context:
        raise ApiError(
            400,
            f"max_tokens {max_tokens} is beyond the model's context length {context}",
            param="max_tokens",
        )
    if len(ids) + max_tokens > context:
        raise ApiError(
            400,
            f"the prompt ({len(ids)} tokens) and max_tokens ({max_tokens}) exceed the model's "
            f"context length {context}",
            code="context_length_exceeded",
            param="messages" if isinstance(body, ChatRequest) else "prompt",
        )
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return Params(
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop,
    )


async def _answer(served: Served, body: Sampling, prompt: str, *, chat: bool):
    ids = served.engine.encode(prompt)
    params = _params(served, body, ids)
    if chat:
        params.stop_ids = served.run.chat_stop_ids()

    def job(on_text: Callable[[str], None], cancel) -> Any:
        return run(served.engine, ids, params, on_text, cancelled=cancel.is_set)

    try:
        stream = Stream(served.queue, job)
    except Busy:
        raise ApiError(
            503,
            "the server is busy: its request queue is full; retry shortly",
            kind="server_error",
            code="queue_full",
        ) from None
    shape = _Shape(model=served.run.model_id, chat=chat)
    if body.stream:
        return StreamingResponse(_events(stream, shape), media_type="text/event-stream")
    outcome = await stream.result()
    return shape.whole(outcome)


async def _events(stream: Stream, shape: _Shape) -> AsyncIterator[str]:
    if shape.chat:
        yield _sse(shape.chunk({"role": "assistant", "content": ""}))
    async for piece in stream.pieces():
        yield _sse(shape.chunk(piece))
    outcome = await stream.result()
    yield _sse(shape.chunk(None, finish=outcome.finish_reason))
    yield "data: [DONE]\n\n"


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


class _Shape:
    """OpenAI's response and chunk objects for one request."""

    def __init__(self, *, model: str, chat: bool) -> None:
        self.model, self.chat = model, chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def _head(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, piece: str | dict | None, *, finish: str | None = None) -> dict:
        if self.chat:
            delta = (
                piece if isinstance(piece, dict) else ({} if piece is None else {"content": piece})
            )
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**self._head("chat.completion.chunk"), "choices": [choice]}
        text = "" if piece is None else piece
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return {**self._head("text_completion"), "choices": [choice]}

    def whole(self, outcome) -> dict:
        usage = {
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
        }
        if self.chat:
            message = {"role": "assistant", "content": outcome.text}
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": outcome.finish_reason,
            }
            return {**self._head("chat.completion"), "choices": [choice], "usage": usage}
        choice = {
            "index": 0,
            "text": outcome.text,
            "logprobs": None,
            "finish_reason": outcome.finish_reason,
        }
        return {**self._head("text_completion"), "choices": [choice], "usage": usage}
