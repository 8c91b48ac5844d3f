"""Load on `specforge serve`: N concurrent streaming requests on localhost (default 50), each
either answered completely and correctly (its streamed text equals the non-streamed answer to
the same prompt) or refused with 503 because the request line is full. Prints requests/s and
the p50/p95 latency of the answered ones.

    .venv/bin/python benchmarks/serve_load.py runs/quickstart/<run-id>
    .venv/bin/python benchmarks/serve_load.py RUN_DIR --requests 50 --queue 16 --max-tokens 32

It starts the server itself (127.0.0.1, a free port) from the project the run belongs to. The
prompt is the run's first held-out row: a completion with the template's fields, or a chat
completion for a conversation spec. Figures: benchmarks/results/serve_load.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

START_TIMEOUT_S = 300


def first_row(run_dir: Path) -> dict:
    for name in ("predictions.jsonl", "examples.jsonl"):
        path = run_dir / name
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    raise SystemExit(f"error: {run_dir} has no predictions.jsonl to take a prompt from")


def request_for(run_dir: Path, max_tokens: int | None) -> tuple[str, dict]:
    """(endpoint, body arguments) for the run's first held-out row."""
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    spec = record["spec"]["resolved"]
    row = first_row(run_dir)
    extra = {"max_tokens": max_tokens} if max_tokens else {}
    conversation = (spec.get("prompt") or {}).get("conversation")
    if conversation:
        column = conversation.get("column", "messages")
        messages = [{"role": t["role"], "content": t["content"]} for t in row[column][:-1]]
        return "chat", {"model": spec["name"], "messages": messages, **extra}
    fields = {k: v for k, v in row.items() if k not in ("prediction", "output")}
    return "completions", {
        "model": spec["name"],
        "prompt": "",
        "extra_body": {"fields": fields},
        **extra,
    }


async def one(client: openai.AsyncOpenAI, endpoint: str, body: dict) -> tuple[str, float | str]:
    """("ok", seconds) with the streamed text checked later, ("503", reason) or ("error", why)."""
    started = time.perf_counter()
    try:
        if endpoint == "chat":
            stream = await client.chat.completions.create(stream=True, **body)
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
        else:
            stream = await client.completions.create(stream=True, **body)
            text = "".join([c.choices[0].text async for c in stream])
    except openai.APIStatusError as err:
        return ("503", "queue full") if err.status_code == 503 else ("error", str(err))
    return "ok:" + text, time.perf_counter() - started


async def load(url: str, endpoint: str, body: dict, requests: int) -> dict:
    client = openai.AsyncOpenAI(base_url=url, api_key="-", max_retries=0, timeout=600)
    if endpoint == "chat":
        reference = (await client.chat.completions.create(**body)).choices[0].message.content
    else:
        reference = (await client.completions.create(**body)).choices[0].text
    started = time.perf_counter()
    results = await asyncio.gather(*(one(client, endpoint, body) for _ in range(requests)))
    wall = time.perf_counter() - started
    answered = [(kind[3:], t) for kind, t in results if kind.startswith("ok:")]
    latencies = sorted(float(t) for _, t in answered)
    return {
        "requests": requests,
        "answered": len(answered),
        "refused_503": sum(kind == "503" for kind, _ in results),
        "errors": [t for kind, t in results if kind == "error"],
        "wrong_answers": sum(text != reference for text, _ in answered),
        "reference": reference,
        "wall_s": round(wall, 3),
        "answered_per_s": round(len(answered) / wall, 2),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": round(latencies[math.ceil(0.95 * len(latencies)) - 1], 3) if latencies else None,
    }


def start_server(run_dir: Path, queue: int, log: Path) -> tuple[subprocess.Popen, str]:
    root = run_dir.resolve().parents[2]  # runs/<name>/<id>: the project the run belongs to
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "specforge",
                "serve",
                str(run_dir.resolve()),
                "--port",
                "0",
                "--queue",
                str(queue),
            ],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SPECFORGE_API_KEY": ""},
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("listening on "):
                return process, line.split()[2] + "/v1"
        if process.poll() is not None:
            raise SystemExit(
                f"error: specforge serve exited {process.returncode}:\n{log.read_text()}"
            )
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"error: specforge serve did not start in {START_TIMEOUT_S}s")


def measure(
    run_dir: Path, *, requests: int = 50, queue: int = 16, max_tokens: int | None = None
) -> dict:
    endpoint, body = request_for(run_dir, max_tokens)
    with tempfile.TemporaryDirectory() as scratch:
        process, url = start_server(run_dir, queue, Path(scratch) / "serve.log")
        try:
            figures = asyncio.run(load(url, endpoint, body, requests))
        finally:
            process.terminate()
            process.wait(timeout=30)
    return {"endpoint": endpoint, "queue": queue, "max_tokens": max_tokens, **figures}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name")
        ]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--queue", type=int, default=16, help="the server's --queue")
    parser.add_argument("--max-tokens", type=int, default=None, help="default: the spec's")
    args = parser.parse_args()
    figures = measure(
        args.run_dir, requests=args.requests, queue=args.queue, max_tokens=args.max_tokens
    )
    print(f"machine: {machine()}")
    print(f"run: {args.run_dir}  endpoint: {figures['endpoint']}  server --queue {args.queue}")
    print(
        f"{figures['requests']} concurrent streaming requests: {figures['answered']} answered "
        f"({figures['wrong_answers']} differing from the non-streamed answer), "
        f"{figures['refused_503']} refused with 503, {len(figures['errors'])} other errors"
    )
    print(
        f"{figures['answered_per_s']} answered requests/s over {figures['wall_s']} s; "
        f"latency of the answered: p50 {figures['p50_s']} s, p95 {figures['p95_s']} s"
    )
    if figures["errors"] or figures["wrong_answers"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
