"""Suite-wide fixtures and rules: under CI (``CI`` set, as .ci/run has it) no test silently skips.

- ``pytest_plugins``: fixture modules shared across directories.

- ``service_unreachable(message)``: what a fixture calls when PostgreSQL or Redis cannot be
  reached: a skip on a developer's machine, a failure under CI (the services are CI's to start).
- At the end of every run the skip count is printed; under CI the run fails if any skip's reason
  is not on ``ALLOWED_SKIPS`` (each names a case where the checked thing cannot exist there).
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

import pytest

# Fixtures shared across directories (tests/client and tests/cli use the real ``saft serve``).
pytest_plugins = ["tests.client.service_fixtures"]

# Substrings of the skip reasons that are legitimate even in CI.
ALLOWED_SKIPS = (
    "needs a machine without CUDA",  # tests/core/test_networks.py, on a GPU runner
)


def in_ci() -> bool:
    """True when the CI environment variable is set to anything but an explicit false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def service_unreachable(message: str) -> NoReturn:
    """Skip locally; fail under CI, where a missing server would hide every test that needs it."""
    if in_ci():
        pytest.fail(f"{message} (CI is set: the CI script must start it)", pytrace=False)
    pytest.skip(message)


def _skip_reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


_skips: list[tuple[str, str]] = []  # (test id, reason) of every skipped test or module


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _skip_reason(report)))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        _skips.append((report.nodeid, _skip_reason(report)))


def _unexpected_skips() -> list[tuple[str, str]]:
    return [(n, r) for n, r in _skips if not any(a in r for a in ALLOWED_SKIPS)]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if in_ci() and _unexpected_skips() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    unexpected = _unexpected_skips()
    terminalreporter.write_line(
        f"skipped: {len(_skips)} ({len(_skips) - len(unexpected)} on the allow-list)"
    )
    if in_ci() and unexpected:
        terminalreporter.write_line(
            f"CI: {len(unexpected)} skip(s) not on tests/conftest.py's ALLOWED_SKIPS fail the run:",
            red=True,
        )
        for nodeid, reason in unexpected[:20]:
            terminalreporter.write_line(f"  {nodeid}: {reason}", red=True)
