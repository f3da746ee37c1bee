"""Debian's Chromium, headless, driven by Playwright: the browser tests, and the benchmark's
idle part that keeps the pipeline page open. Playwright's own browser download cannot work
offline, so it launches the system's browser."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from script.layout import StackError
from script.procs import apt_install

CHROMIUM = Path("/usr/bin/chromium")
# Headless off the closed network (its background connections are refused here), as root.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> None:
    """Install Debian's chromium when it is missing (as root), else name the fix."""
    if CHROMIUM.exists() or apt_install("chromium", "for the browser tests"):
        return
    raise StackError(f"{CHROMIUM} is missing: `sudo apt-get install chromium`, then run again")


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser), closed afterwards."""
    from playwright.sync_api import sync_playwright

    ensure_chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
