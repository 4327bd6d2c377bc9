"""What the browser tests share: Debian's Chromium, its flags, and signing in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def log_in(page: Any, key: str, accepted: bool = True) -> None:
    """Sign in; with ``accepted``, wait until the browser has left the login page, so that the test's
    next navigation cannot race the redirect (and the cookie it sets)."""
    page.goto("/ui/login")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    if accepted:
        page.wait_for_url(lambda url: "/ui/login" not in url)
