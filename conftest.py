"""pytest configuration shared by the unit tests and the notebooks (nbval).

Notebooks are committed without outputs. A cell marked ``# NBVAL_CHECK_OUTPUT``
keeps its expected output in its metadata instead, under
``metadata["mmbook"]["expected_output"]`` (text); this hook gives that text to
nbval as the cell's reference output, so nbval compares it with what the cell
prints. ``scripts/record_expected_outputs.py`` writes that metadata.
"""

from __future__ import annotations

import matplotlib
import pytest
from nbformat.v4 import new_output

# Plots in unit tests need no screen. (Not MPLBACKEND: kernels would inherit it, and a
# kernel with the Agg backend shows no figures.)
matplotlib.use("Agg")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or "NBVAL_CHECK_OUTPUT" not in cell.get("source", ""):
            continue
        expected = cell.get("metadata", {}).get("mmbook", {}).get("expected_output")
        if expected is None:
            raise pytest.UsageError(
                f"{item.nodeid}: a '# NBVAL_CHECK_OUTPUT' cell has no metadata.mmbook.expected_output; "
                f"run `python scripts/record_expected_outputs.py NOTEBOOK` to record it"
            )
        cell["outputs"] = [new_output("stream", name="stdout", text=expected)]
        # nbval refuses reference outputs on a cell that was never run ("Unrun reference
        # cell has outputs"); committed notebooks have no execution counts, so give one.
        cell["execution_count"] = cell.get("execution_count") or 1
