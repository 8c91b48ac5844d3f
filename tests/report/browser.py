"""A real browser's view of a page: Debian's chromium, headless, from file:// (the way a person
opens the page), and a check that the screenshot shows something."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SIZE = (1280, 2200)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


needs_chromium = pytest.mark.skipif(
    chromium() is None, reason="chromium is not installed (`make test` installs Debian's)"
)


def screenshot(page: Path, png: Path, size: tuple[int, int] = SIZE) -> Path:
    """Render `page` headless with no network to reach (the page has no script: the DOM tests
    check that); returns the PNG."""
    browser = chromium()
    assert browser is not None
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--hide-scrollbars",
            "--proxy-server=127.0.0.1:9",  # a fetch would fail, and show as a broken chart
            f"--window-size={size[0]},{size[1]}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert png.is_file(), result.stderr[-3000:]
    return png


def ink(png: Path, box: tuple[int, int, int, int] | None = None) -> tuple[int, float]:
    """(distinct colours, share of pixels that are not the background) in `box` of the PNG."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        if box is not None:
            rgb = rgb.crop(box)
        colours = rgb.getcolors(maxcolors=1 << 24) or []
    total = sum(count for count, _ in colours)
    background = max(colours)[1] if colours else None
    painted = sum(count for count, colour in colours if colour != background)
    return len(colours), painted / total if total else 0.0
