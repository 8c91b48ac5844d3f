"""`specforge serve RUN_DIR`: load the run's model once and serve it over HTTP with uvicorn.

Binds 127.0.0.1 unless told otherwise. With SPECFORGE_API_KEY set, every /v1 request must carry
it as a bearer token. Port 0 picks a free port; the line `listening on http://HOST:PORT` names it.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from specforge.serve.app import Served, create_app
from specforge.serve.queue import GenerationQueue
from specforge.serve.run import ServeError, load, open_run

API_KEY_ENV = "SPECFORGE_API_KEY"


@dataclass
class ServeOptions:
    run_dir: Path
    fmt: str = "adapter"
    base: bool = False  # the base (or parent) model, as evaluation's base side loaded it
    host: str = "127.0.0.1"
    port: int = 8000
    queue_depth: int = 16  # requests waiting behind the running one; more get 503


def build(options: ServeOptions) -> Served:
    """The run, its model loaded, and its request line."""
    run = open_run(options.run_dir)
    engine = load(run, options.fmt, base=options.base)
    key = os.environ.get(API_KEY_ENV) or None
    return Served(run=run, engine=engine, queue=GenerationQueue(options.queue_depth), api_key=key)


def serve(options: ServeOptions) -> int:
    try:
        served = build(options)
    except ServeError as err:
        print(f"specforge: error: {err}", file=sys.stderr)
        return 1
    sock = socket.socket(socket.AF_INET6 if ":" in options.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as err:
        print(
            f"specforge: error: cannot listen on {options.host}:{options.port}: {err}",
            file=sys.stderr,
        )
        return 1
    host, port = sock.getsockname()[:2]
    model = served.run.model_id
    auth = f" (bearer token from {API_KEY_ENV})" if served.api_key else ""
    form = "the base model" if options.base else options.fmt
    print(f"serving {model} ({form}) from {served.run.run_dir}{auth}", flush=True)
    print(
        f"listening on http://{host}:{port}  (OpenAI base_url http://{host}:{port}/v1)", flush=True
    )
    config = uvicorn.Config(create_app(served), log_level="warning", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        served.queue.shutdown()
    return 0
