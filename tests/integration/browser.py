"""A real browser for the tests: Debian's headless Chromium, run as a subprocess.

`scripts/setup.sh test` installs it. Chromium loads the page, runs its scripts and their
fetches against the server under test (virtual time does not advance while a fetch is
pending, so the page has its data before the budget runs out), then prints the DOM as it
stands or writes a screenshot. Asynchronous, so the server under test, in the same event
loop, keeps answering while the browser waits for it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

BUDGET_MS = 6000
TIMEOUT_S = 120.0


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("no chromium on PATH: `bash scripts/setup.sh test` installs it")
    return found


async def _run(url: str, *flags: str, budget_ms: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="sale-chromium-") as profile:
        process = await asyncio.create_subprocess_exec(
            chromium(),
            "--headless",
            "--no-sandbox",  # root in CI; the page is our own
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *flags,
            url,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
    if process.returncode != 0:
        raise RuntimeError(f"chromium exited {process.returncode}: {err.decode()[-2000:]}")
    return out


async def dump_dom(url: str, budget_ms: int = BUDGET_MS) -> str:
    """The page's DOM after its scripts ran for `budget_ms` of virtual time."""
    return (await _run(url, "--dump-dom", budget_ms=budget_ms)).decode()


async def screenshot(
    url: str, path: Path, size: tuple[int, int] = (1400, 1250), budget_ms: int = BUDGET_MS
) -> Path:
    """A PNG of the page after its scripts ran."""
    path = path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    await _run(
        url,
        f"--screenshot={path}",
        f"--window-size={size[0]},{size[1]}",
        "--hide-scrollbars",
        budget_ms=budget_ms,
    )
    return path
