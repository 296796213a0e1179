"""Shared pytest hooks and fixtures of the course's test suite (each section names the tests it serves)."""
import os
from pathlib import Path

import pytest

# --- browser tests (tests/notebooks/test_browser.py, tests/grader/test_feedback_browser.py) ---
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless, and no traffic of chromium's own (this machine reaches no host but the registries).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright; the tests skip, saying why, where either is missing."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("browser tests skipped: Playwright is not installed (pip install playwright)")
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests skipped: no browser at {CHROMIUM} "
                    "(`make test` installs Debian's chromium when run as root; else apt-get install chromium)")
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    except Error as error:
        playwright.stop()
        pytest.skip(f"browser tests skipped: {CHROMIUM} does not start: {str(error).splitlines()[0]}")
    yield chromium
    chromium.close()
    playwright.stop()


def pytest_terminal_summary(terminalreporter):
    """Say where the browser tests' screenshots are."""
    folders = {value for reports in terminalreporter.stats.values() for report in reports
               for name, value in getattr(report, "user_properties", ()) if name == "screenshots"}
    for folder in sorted(folders):
        terminalreporter.write_line(f"browser test screenshots: {folder}")
