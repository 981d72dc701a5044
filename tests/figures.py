"""Figures that tests record with record_property, printed in one section after the run.

The report hooks of both test suites (tests/ and tests_docker/) hand over to a Figures.
"""

from __future__ import annotations

from typing import Any

import pytest

Group = tuple[str, list[tuple[str, object]]]  # a title, then name: value lines


class Figures:
    def __init__(self) -> None:
        self.by_test: list[Group] = []

    def collect(self, report: pytest.TestReport) -> None:
        """For pytest_runtest_logreport: keep what a test's call recorded."""
        if report.when == "call" and report.user_properties:
            self.by_test.append((report.nodeid, list(report.user_properties)))

    def write(self, terminalreporter: Any, *first: Group) -> None:
        """For pytest_terminal_summary: the section "measured figures", groups `first` on top."""
        groups = [*first, *self.by_test]
        if not groups:
            return
        terminalreporter.section("measured figures")
        for title, props in groups:
            terminalreporter.write_line(title)
            for name, value in props:
                terminalreporter.write_line(f"    {name}: {value}")
