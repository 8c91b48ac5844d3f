"""The load benchmark, bounded: 50 concurrent streaming requests on localhost against a short
line, each answered completely and correctly or refused with 503 (benchmarks/serve_load.py)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, load_generated

pytestmark = pytest.mark.train


def test_fifty_concurrent_streams_are_answered_or_refused(tiny_chat_run):
    bench = load_generated(REPO / "benchmarks/serve_load.py", "serve_load")
    figures = bench.measure(tiny_chat_run, requests=50, queue=4, max_tokens=8)
    assert figures["errors"] == [] and figures["wrong_answers"] == 0
    assert figures["answered"] + figures["refused_503"] == 50
    assert 1 <= figures["answered"] <= 50 and figures["refused_503"] >= 1  # 5 fit in the line
    assert figures["reference"] and figures["p95_s"] >= figures["p50_s"] > 0
