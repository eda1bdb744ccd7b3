"""What the benchmark scripts share: printing a table for BENCHMARKS.md."""

from __future__ import annotations


def markdown(table, **options) -> str:
    """``table`` (a DataFrame) as a markdown table, or as plain text without ``tabulate`` installed.

    ``options`` go to ``DataFrame.to_markdown`` (e.g. ``floatfmt=".3g"``).
    """
    try:
        import tabulate  # noqa: F401  (pandas' to_markdown needs it)
    except ImportError:
        return table.to_string(index=False)
    return table.to_markdown(index=False, **options)
