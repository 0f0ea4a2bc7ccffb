"""pytest plugin: a run says which tests it did not run, and under CI a skip nobody allowed fails it.

A test that skips because its tool or folder is missing (the web app, Chromium, ONNX, torch, git,
``../shared``) would otherwise turn a broken install step into a green run with fewer tests. So:

* every skip (test or whole module, at collection, set-up or in the test) is listed in one section
  of the terminal summary, with its reason;
* with ``CI`` set to true in the environment (CI services set it; ``.ci/run`` runs ``make test`` there),
  a skip that no line of the allow-list matches makes the run fail (exit status 1).

The allow-list (default ``tests/skips_allowed.txt``, or ``--skips-allowed PATH``) holds one
``PATTERN | REASON`` per line; PATTERN is a node id (``tests/test_x.py::test_y[param]``; a module
skipped at import is ``tests/test_x.py``) or an ``fnmatch`` pattern over node ids, and REASON says why
that test cannot run on CI's machine. ``#`` starts a comment line. An xfail is not a skip, and tests
deselected with ``-m`` or ``-k`` are not run at all, so neither is counted.

Registered from tests/conftest.py (``pytest_plugins``); each run's state is a `SkipPolicy` registered
with that run's plugin manager.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import pathlib

import pytest

DEFAULT_ALLOW_LIST = pathlib.Path(__file__).resolve().parent / "skips_allowed.txt"
_TRUE = {"1", "true", "yes", "on"}


@dataclasses.dataclass(frozen=True)
class Allowed:
    pattern: str
    reason: str

    def matches(self, nodeid: str) -> bool:
        # Exact first: parametrised ids hold brackets, which fnmatch reads as character classes.
        return nodeid == self.pattern or fnmatch.fnmatchcase(nodeid, self.pattern)


def in_ci(environ=os.environ) -> bool:
    """Whether the environment says this is a CI run (``CI=true``, as GitHub Actions and GitLab CI set it)."""
    return environ.get("CI", "").strip().lower() in _TRUE


def read_allow_list(path: pathlib.Path) -> list[Allowed]:
    """The ``PATTERN | REASON`` lines of ``path``; a missing file or a line without a reason is a usage
    error naming the file (and line)."""
    if not path.is_file():
        raise pytest.UsageError(f"{path}: no such allow-list file (--skips-allowed)")
    allowed = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, bar, reason = (part.strip() for part in line.partition("|"))
        if not (bar and pattern and reason):
            raise pytest.UsageError(f"{path}:{number}: expected 'PATTERN | REASON' (every allowed skip says why), "
                                    f"got {line!r}")
        allowed.append(Allowed(pattern, reason))
    return allowed


def _reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_addoption(parser):
    parser.addoption("--skips-allowed", metavar="PATH", default=None,
                     help=f"skips that may happen under CI=true, one 'PATTERN | REASON' a line "
                          f"(default: {DEFAULT_ALLOW_LIST.name} beside this plugin)")


def pytest_configure(config):
    option = config.getoption("--skips-allowed")
    path = pathlib.Path(option) if option else DEFAULT_ALLOW_LIST
    config.pluginmanager.register(SkipPolicy(path, read_allow_list(path), in_ci()), "adain_jax_skip_policy")


class SkipPolicy:
    """One run's skips, reported at the end and, when ``enforce``, failing the run unless allowed."""

    def __init__(self, allow_list: pathlib.Path, allowed: list[Allowed], enforce: bool):
        self.allow_list, self.allowed, self.enforce = allow_list, allowed, enforce
        self.skips: dict[str, str] = {}  # node id -> reason

    def unlisted(self) -> dict[str, str]:
        return {n: r for n, r in self.skips.items() if not any(a.matches(n) for a in self.allowed)}

    def _record(self, report) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.skips.setdefault(report.nodeid, _reason(report))

    def pytest_runtest_logreport(self, report):
        self._record(report)

    def pytest_collectreport(self, report):  # a module skipped at import (importorskip, allow_module_level)
        self._record(report)

    def pytest_sessionfinish(self, session):
        if self.enforce and self.unlisted() and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter):
        if not self.skips:
            return
        unlisted = self.unlisted()
        allowed = {n: r for n, r in self.skips.items() if n not in unlisted}
        if unlisted:
            verdict = "CI=true: the run fails" if self.enforce else "under CI=true the run would fail"
            terminalreporter.section(f"{len(unlisted)} skipped test(s) not in {self.allow_list.name} ({verdict})",
                                     sep="=", red=self.enforce, bold=True)
            for nodeid, reason in sorted(unlisted.items()):
                terminalreporter.write_line(f"SKIPPED {nodeid}: {reason}")
            terminalreporter.write_line(
                "Install what they need (make test does); only a test that cannot run on CI's machine belongs "
                f"in {self.allow_list}, as 'PATTERN | REASON'.")
        if allowed:
            terminalreporter.section(f"{len(allowed)} allowed skip(s) ({self.allow_list.name})", sep="-")
            for nodeid, reason in sorted(allowed.items()):
                terminalreporter.write_line(f"skipped {nodeid}: {reason}")
