"""The quickstart's page as a person sees it: `make demo`'s run (SmolLM2, 30 steps, 120 held-out
rows), its report.html written by `specforge run`, rendered in a real headless browser."""

from __future__ import annotations

import json

import pytest

from tests.report.browser import ink, needs_chromium, screenshot
from tests.report.dom import external_references, read

pytestmark = pytest.mark.slow

LIMIT = 2_000_000  # bytes: a page to attach to a pull request


def test_quickstart_page_headline_equals_the_record(quickstart_run):
    page_path = quickstart_run / "report.html"
    assert page_path.is_file() and page_path.stat().st_size < LIMIT
    record = json.loads((quickstart_run / "run.json").read_text())
    page = read(page_path)
    assert external_references(page) == []
    assert page.by_id["headline-status"].attrs["data-value"] == record["status"] == "succeeded"
    main = page.by_id["headline-main"]
    tuned, base = record["results"]["eval_tuned"], record["results"]["eval_base"]
    assert main.attrs["data-metric"] == "accuracy"
    assert float(main.attrs["data-tuned"]) == tuned["accuracy"]
    assert float(main.attrs["data-base"]) == base["accuracy"]
    assert f"{tuned['accuracy'] * 100:.1f} %" in main.content
    assert f"{base['accuracy'] * 100:.1f} %" in main.content
    assert "stopped" not in page.by_id


@needs_chromium
def test_quickstart_page_renders_in_a_browser(quickstart_run, tmp_path):
    png = screenshot(quickstart_run / "report.html", tmp_path / "quickstart.png")
    colours, painted = ink(png)
    assert colours > 200 and painted > 0.03
    assert ink(png, (0, 0, 1280, 400))[1] > 0.02  # the headline, above the fold
