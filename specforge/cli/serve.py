"""`specforge chat` and `specforge serve`: talk to a finished run in the terminal, or serve it
over an OpenAI-compatible HTTP API; specforge.serve does the work."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from specforge.cli.common import add_verb
from specforge.core.errors import UsageError

# specforge.serve.run.FORMATS, named here because importing specforge.serve loads the run
# machinery and the ML stack, and every verb's parser is built at start-up.
FORMAT_CHOICES = ("adapter", "merged", "gguf")


def register(subparsers: Any) -> None:
    chat = add_verb(
        subparsers,
        "chat",
        run_chat,
        "Talk to a finished run in the terminal, with its own prompt, stop token and decoding.",
    )
    _common(chat)
    serve = add_verb(
        subparsers,
        "serve",
        run_serve,
        "Serve a finished run over an OpenAI-compatible HTTP API (/v1/completions, "
        "/v1/chat/completions, streaming); SPECFORGE_API_KEY sets a bearer token.",
    )
    _common(serve)
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="default 8000; 0 picks a free one")
    serve.add_argument(
        "--queue",
        type=int,
        default=16,
        metavar="N",
        help="requests that may wait behind the running one (default 16); more get 503",
    )


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "run_dir",
        type=Path,
        metavar="RUN_DIR",
        help="a run folder, runs/<name>/<id> (or runs/<name>: its latest succeeded run)",
    )
    sub.add_argument(
        "--format",
        default="adapter",
        choices=FORMAT_CHOICES,
        help="adapter (default, on its base as infer.py loads it), or an export: merged, gguf",
    )
    sub.add_argument(
        "--base", action="store_true", help="answer with the base (or parent) model instead"
    )


def run_chat(args: argparse.Namespace) -> int:
    # imported here for start-up time: specforge.serve loads the run machinery
    from specforge.serve.chat import chat

    return chat(args.run_dir, fmt=args.format, base=args.base)


def run_serve(args: argparse.Namespace) -> int:
    # imported here for start-up time: fastapi, uvicorn and the run machinery
    try:
        from specforge.serve.server import ServeOptions, serve
    except ModuleNotFoundError as err:
        if err.name not in ("fastapi", "uvicorn", "starlette"):
            raise
        raise UsageError(
            f"specforge serve needs {err.name}: pip install -c constraints.txt -e '.[train,serve]'"
        ) from None

    options = ServeOptions(
        run_dir=args.run_dir,
        fmt=args.format,
        base=args.base,
        host=args.host,
        port=args.port,
        queue_depth=args.queue,
    )
    return serve(options)
