"""Shared pytest hooks of the course's test suite (each section names the tests it serves)."""


# --- browser tests (tests/test_browser.py): say where their screenshots are ---
def pytest_terminal_summary(terminalreporter):
    folders = {value for reports in terminalreporter.stats.values() for report in reports
               for name, value in getattr(report, "user_properties", ()) if name == "screenshots"}
    for folder in sorted(folders):
        terminalreporter.write_line(f"browser test screenshots: {folder}")
