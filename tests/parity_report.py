"""pytest plugin: collect the parity measurements of test_parity.py and print them as a table.

test_parity.py registers it on first use when the session has not (so nothing is required);
registering it explicitly (``pytest_plugins = ["parity_report"]`` in tests/conftest.py, or
``PYTHONPATH=tests pytest -p parity_report``) is also fine and prints one table, not two.

Rows live on the pytest ``config`` object under a fixed attribute name rather than in a module
global, so the table is complete even if this module ends up imported under two names
(``parity_report`` and ``tests.parity_report``).
"""

from __future__ import annotations

_ROWS_ATTR = "_adain_jax_parity_rows"

COLUMNS = (
    ("case", "case"),
    ("weights", "weights file"),
    ("shape", "content -> style"),
    ("max_abs_diff", "max abs diff (clipped)"),
    ("raw_rel_diff", "max rel diff (raw / loss+grads)"),
    ("ref_fp64_diff", "ref fp32 vs fp64"),
    ("inside", "ref inside (0,1)"),
)


def record(config, **row) -> None:
    """Add one row (keys of ``COLUMNS``; missing ones print as '-')."""
    rows = getattr(config, _ROWS_ATTR, None)
    if rows is None:
        rows = []
        setattr(config, _ROWS_ATTR, rows)
    rows.append(row)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2e}"
    return str(value)


def format_table(rows) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "|".join(" --- " for _ in COLUMNS) + "|"]
    for row in rows:
        cells = []
        for key, _ in COLUMNS:
            value = row.get(key)
            if key == "inside" and value is not None:
                cells.append(f"{value:.1%}")
            else:
                cells.append(_fmt(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = getattr(config, _ROWS_ATTR, None)
    if not rows:
        return
    terminalreporter.section("AdaIN parity: adain_jax.stylize vs the PyTorch reference")
    terminalreporter.write_line(format_table(rows))
