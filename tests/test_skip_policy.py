"""tests/skip_policy.py: under CI=true an unlisted skip fails the run and is named; listed skips, xfails,
deselected tests and runs outside CI pass. Each case runs pytest in-process on a tiny generated suite."""

from __future__ import annotations

import pytest

import skip_policy

pytest_plugins = ["pytester"]

SUITE = """
import pytest

def test_runs():
    pass

def test_no_gpu():
    pytest.skip("needs a GPU")

@pytest.mark.xfail(reason="known bug", strict=True)
def test_known_bug():
    assert False

@pytest.mark.slow
def test_slow_and_skipped():
    pytest.skip("never reached: deselected")
"""


@pytest.fixture
def suite(pytester):
    pytester.makeini("[pytest]\nmarkers = slow: long\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def run(pytester, allowed: str, *args, ci: bool, monkeypatch):
    if ci:
        monkeypatch.setenv("CI", "true")
    else:
        monkeypatch.delenv("CI", raising=False)
    allow_list = pytester.path / "allowed.txt"
    allow_list.write_text(allowed)
    return pytester.runpytest("-p", "skip_policy", "--skips-allowed", str(allow_list), "-m", "not slow", *args)


def test_under_ci_an_unlisted_skip_fails_the_run_and_is_named(suite, monkeypatch):
    result = run(suite, "# nothing allowed\n", ci=True, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1, xfailed=1, deselected=1)  # the tests themselves all went fine
    result.stdout.fnmatch_lines(["*1 skipped test(s) not in allowed.txt (CI=true: the run fails)*",
                                 "SKIPPED test_suite.py::test_no_gpu: needs a GPU"])
    # Only the unlisted skip is named: not the xfail, not the deselected slow test.
    assert "test_known_bug" not in result.stdout.str() and "test_slow_and_skipped" not in result.stdout.str()


@pytest.mark.parametrize("pattern", ["test_suite.py::test_no_gpu", "test_suite.py::*gpu*"])
def test_under_ci_a_listed_skip_passes_and_is_reported_as_allowed(suite, monkeypatch, pattern):
    result = run(suite, f"{pattern} | CI has no GPU\n", ci=True, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1 allowed skip(s) (allowed.txt)*", "skipped test_suite.py::test_no_gpu: needs a GPU"])
    assert "not in allowed.txt" not in result.stdout.str()


def test_outside_ci_skips_are_reported_but_do_not_fail(suite, monkeypatch):
    result = run(suite, "", ci=False, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1 skipped test(s) not in allowed.txt (under CI=true the run would fail)*",
                                 "SKIPPED test_suite.py::test_no_gpu: needs a GPU"])


def test_a_module_skipped_at_import_counts_and_parametrised_ids_match_exactly(pytester, monkeypatch):
    pytester.makepyfile(test_tool="import pytest\npytest.importorskip('no_such_module_here')\n",
                        test_params="import pytest\n\n@pytest.mark.parametrize('d', ['cpu', 'gpu'])\n"
                                    "def test_device(d):\n    if d == 'gpu':\n        pytest.skip('no GPU')\n")
    result = run(pytester, "test_params.py::test_device[gpu] | CI has no GPU\n", ci=True, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*1 skipped test(s) not in allowed.txt*",
                                 "SKIPPED test_tool.py: *no_such_module_here*"])
    assert "SKIPPED test_params.py" not in result.stdout.str()


def test_a_failing_run_keeps_its_status(pytester, monkeypatch):
    pytester.makepyfile(test_bad="import pytest\n\ndef test_fails():\n    assert False\n\n"
                                 "def test_skips():\n    pytest.skip('why')\n")
    result = run(pytester, "", ci=True, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, skipped=1)


def test_an_allow_list_line_without_a_reason_is_refused_naming_the_line(suite, monkeypatch):
    result = run(suite, "# header\ntest_suite.py::test_no_gpu\n", ci=True, monkeypatch=monkeypatch)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*allowed.txt:2: expected 'PATTERN | REASON'*"])


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("True", True), ("", False),
                                             ("false", False), ("0", False)])
def test_ci_is_read_from_the_environment(value, expected):
    assert skip_policy.in_ci({"CI": value}) is expected
    assert skip_policy.in_ci({}) is False


def test_the_repository_allow_list_parses_and_gives_every_entry_a_reason():
    for entry in skip_policy.read_allow_list(skip_policy.DEFAULT_ALLOW_LIST):
        assert entry.pattern.startswith("tests/") and entry.reason
