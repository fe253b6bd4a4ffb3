"""pytest configuration shared by the unit tests and the notebooks (nbval).

Notebooks are committed without outputs. A cell tagged ``nbval-check-output`` (the
nbval cell tag; older notebooks start the cell with a ``# NBVAL_CHECK_OUTPUT`` line, which
``scripts/retag_notebooks.py`` turns into the tag) keeps its expected output in its
metadata instead, under ``metadata["mmbook"]["expected_output"]`` (text); this hook gives
that text to nbval as the cell's reference output, so nbval compares it with what the
cell prints. ``scripts/record_expected_outputs.py`` writes that metadata.
"""

from __future__ import annotations

import matplotlib
import pytest
from nbformat.v4 import new_output

# Plots in unit tests need no screen. (Not MPLBACKEND: kernels would inherit it, and a
# kernel with the Agg backend shows no figures.)
matplotlib.use("Agg")


CHECK_TAG = "nbval-check-output"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


def is_checked_cell(cell: dict) -> bool:
    """True for a code cell whose output nbval compares: the cell tag, or the older first-line comment."""
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    return (CHECK_TAG in cell.get("metadata", {}).get("tags", [])
            or source.partition("\n")[0].strip() == CHECK_MARKER)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or not is_checked_cell(cell):
            continue
        expected = cell.get("metadata", {}).get("mmbook", {}).get("expected_output")
        if expected is None:
            raise pytest.UsageError(
                f"{item.nodeid}: a cell tagged {CHECK_TAG!r} has no metadata.mmbook.expected_output; "
                f"run `python scripts/record_expected_outputs.py NOTEBOOK` to record it"
            )
        cell["outputs"] = [new_output("stream", name="stdout", text=expected)]
        # nbval refuses reference outputs on a cell that was never run ("Unrun reference
        # cell has outputs"); committed notebooks have no execution counts, so give one.
        cell["execution_count"] = cell.get("execution_count") or 1
