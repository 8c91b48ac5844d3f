"""run.json's throughput: the mean of train.py's logged tokens/s and MFU."""

from __future__ import annotations

import pytest

from specforge.runs.record import throughput


def test_throughput_averages_the_logged_intervals():
    metrics = [
        {"step": 1, "loss": 2.0, "num_tokens": 100.0},  # the first entry has no interval
        {"step": 2, "loss": 1.5, "tokens_per_second": 100.0, "mfu": 0.2},
        {"step": 2, "eval_loss": 1.4},
        {"step": 3, "loss": 1.2, "tokens_per_second": 300.0, "mfu": 0.4},
    ]
    assert throughput(metrics) == {
        "tokens_per_second": 200.0,
        "mfu": pytest.approx(0.3),
        "intervals": 2,
    }


def test_no_throughput_without_an_interval():
    assert throughput([{"step": 1, "loss": 2.0, "num_tokens": 100.0}]) is None
