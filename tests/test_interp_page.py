"""interp.page: a self-contained report page that a real browser opens cleanly.

The browser tests run headless Chromium (Debian's `chromium`; `scripts/test.sh` installs it) and
save their screenshots under `tests/artifacts/` (git-ignored) for a person to look at.
"""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_browser import find_browser, open_page

from interp.page import Page

ARTIFACTS = Path(__file__).parent / "artifacts"
# Skipped only outside CI: in CI (CI=true) a missing browser is a failure, not a silent skip.
needs_browser = pytest.mark.skipif(
    find_browser() is None and not os.environ.get("CI"),
    reason="no chromium: `bash scripts/test.sh` installs it",
)


def png(h=40, w=60, seed=0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def sample_page() -> Page:
    page = Page("Sample report", subtitle="checkpoint x, step 1")
    page.section("Numbers", "A table and a figure.")
    page.table(["target", "R^2", "n"], [["cube x", 0.97123, 1200], ["cube y", -0.01, 1200]])
    page.figure(png(), "random pixels")
    page.verdict("cube x is decodable (R^2 0.97, shuffled 0.00)", "supported")
    page.command("python -m interp.report --checkpoint runs/x --out runs/r")
    page.tree({"params": {"dense": {"kernel": np.ones((2, 3), np.float32)}}}, "param tree")
    return page


def test_page_is_self_contained_and_escapes_text(tmp_path):
    page = sample_page()
    page.paragraph("<script>alert(1)</script>")
    text = page.write(tmp_path / "r.html").read_text()
    assert "&lt;script&gt;alert(1)" in text and "<script>alert(1)" not in text
    assert "data:image/png;base64," in text and page.n_figures == 1
    assert "0.971" in text and "1,200" in text
    with pytest.raises(ValueError, match="not PNG"):
        page.figure(b"GIF89a", "wrong format")
    with pytest.raises(ValueError, match="status"):
        page.verdict("x", "maybe")


@needs_browser
def test_page_opens_in_chromium_without_errors(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    path = sample_page().write(tmp_path / "r.html")
    shot = ARTIFACTS / "sample_page.png"
    result = open_page(path, screenshot=shot)
    assert result.errors == []
    assert result.title == "Sample report"
    assert result.images and all(ok for _, ok in result.images)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[1] == 1200 and image.shape[0] > 300


@needs_browser
def test_the_browser_check_sees_a_broken_image_and_a_console_error(tmp_path):
    page = sample_page()
    page.raw('<img src="missing.png" alt="missing"><script>console.error("planted")</script>')
    result = open_page(page.write(tmp_path / "r.html"))
    assert [ok for _, ok in result.images] == [True, False]
    assert any("planted" in e for e in result.errors)
    assert any("ERR_FILE_NOT_FOUND" in e for e in result.errors)
