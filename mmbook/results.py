"""Reading the recorded benchmark runs, for the book's "Measured results" appendix.

``benchmarks/gpu_check.py`` appends one JSON object per line to a ``.jsonl`` file for every
result it measures; the files it wrote on GPUs are kept in ``benchmarks/gpu_runs/``. A small
index, ``benchmarks/measured_results.json``, says for each file on which device, with which
command and on which date it was written, and which rows the appendix's summary table shows.
This module reads both and turns them into tables, so that no recorded figure is typed twice.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

INDEX_NAME = "measured_results.json"
RUNS_FOLDER = "gpu_runs"
# Steps of gpu_check.py that train and evaluate one model ("chosen" repeats a row, "warmup" is untimed).
TRAINING_STEPS = ("fastcnn", "seed", "reference")


@dataclass(frozen=True)
class Record:
    """One line of a run file.

    Attributes:
        run: the file's name, e.g. ``"2026-11-26-h200-run1.jsonl"``.
        line: its line number (from 1).
        row: the JSON object as written.
    """

    run: str
    line: int
    row: Mapping[str, object] = field(hash=False)

    @property
    def step(self) -> str:
        return str(self.row.get("step", ""))

    @property
    def recipe(self) -> str | None:
        recipe = self.row.get("recipe")
        return None if recipe is None else str(recipe)

    @property
    def config(self) -> dict:
        config = self.row.get("config") or {}
        return dict(config) if isinstance(config, Mapping) else {}

    @property
    def epochs(self) -> int | None:
        """Epochs from the config, else the number of timed epochs; None when neither was recorded."""
        if "epochs" in self.config:
            return int(self.config["epochs"])
        epoch_seconds = self.row.get("epoch_seconds")
        return len(epoch_seconds) if isinstance(epoch_seconds, list) else None

    def get(self, key: str, default: object = None) -> object:
        return self.row.get(key, default)


def find_benchmarks(start: Path | str | None = None) -> Path:
    """The repository's ``benchmarks/`` folder.

    Looks in ``$MMBOOK_BENCHMARKS`` if set, else in ``start`` (default: the working directory) and
    each folder above it, then beside the installed package (an editable install from a clone).

    Raises:
        FileNotFoundError: if no folder holding ``measured_results.json`` is found.
    """
    if os.environ.get("MMBOOK_BENCHMARKS"):
        candidates = [Path(os.environ["MMBOOK_BENCHMARKS"])]
    else:
        here = Path(start) if start is not None else Path.cwd()
        candidates = [folder / "benchmarks" for folder in (here.resolve(), *here.resolve().parents)]
        candidates.append(Path(__file__).resolve().parents[1] / "benchmarks")
    for candidate in candidates:
        if (candidate / INDEX_NAME).is_file():
            return candidate
    raise FileNotFoundError(
        f"no benchmarks/{INDEX_NAME} found (looked in {', '.join(str(c) for c in candidates[:3])}...). "
        "The recorded runs live in a clone of the book's repository: run from inside one, "
        "or set MMBOOK_BENCHMARKS to its benchmarks/ folder."
    )


def read_run(path: Path | str) -> list[Record]:
    """All records of one ``.jsonl`` run file, in order.

    Raises:
        ValueError: if a line is not a JSON object (the message names the file and line).
    """
    path = Path(path)
    records = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path.name}, line {number}: not valid JSON ({error.msg}); "
                             "each line of a run file must be one JSON object") from error
        if not isinstance(row, dict):
            raise ValueError(f"{path.name}, line {number}: expected a JSON object, got {type(row).__name__}")
        records.append(Record(path.name, number, row))
    return records


@dataclass
class Measurements:
    """The index and every record it describes.

    Attributes:
        runs: file name -> what the index says about it (code_version, date, device, software, command, note).
        records: every record of every indexed file, file by file in the index's order.
        highlights: the index's list of ``{"label", "run", "recipe"}`` rows for the summary table.
        cpu_tables: tables copied from printed CPU results, each with its source.
    """

    runs: dict[str, dict]
    records: list[Record]
    highlights: list[dict]
    cpu_tables: list[dict]

    def in_run(self, run: str) -> list[Record]:
        return [r for r in self.records if r.run == run]

    def find(self, run: str, recipe: str) -> Record:
        """The training record of ``recipe`` in ``run``.

        Raises:
            KeyError: if there is none, or more than one.
        """
        matches = [r for r in self.in_run(run) if r.recipe == recipe and r.step in TRAINING_STEPS]
        if len(matches) != 1:
            known = sorted({r.recipe for r in self.in_run(run) if r.recipe})
            raise KeyError(f"{run} has {len(matches)} training records of recipe {recipe!r} (expected 1); "
                           f"its recipes are: {known}")
        return matches[0]


def load_measurements(benchmarks: Path | str | None = None) -> Measurements:
    """Read ``benchmarks/measured_results.json`` and every run file it lists.

    Raises:
        ValueError: if the index lists a file that does not exist, or ``gpu_runs/`` holds a file
            the index does not describe (so that no recorded run is silently left out).
    """
    folder = Path(benchmarks) if benchmarks is not None else find_benchmarks()
    index = json.loads((folder / INDEX_NAME).read_text())
    runs = dict(index.get("gpu_runs", {}))
    on_disk = sorted(p.name for p in (folder / RUNS_FOLDER).glob("*.jsonl"))
    missing = [name for name in runs if name not in on_disk]
    if missing:
        raise ValueError(f"{INDEX_NAME} lists run files that do not exist in {folder / RUNS_FOLDER}: {missing}")
    undescribed = [name for name in on_disk if name not in runs]
    if undescribed:
        raise ValueError(f"{folder / RUNS_FOLDER} holds run files that {INDEX_NAME} does not describe: {undescribed}; "
                         "add an entry (date, device, software, command) for each under 'gpu_runs'")
    records = [record for name in runs for record in read_run(folder / RUNS_FOLDER / name)]
    return Measurements(runs, records, list(index.get("highlights", [])), list(index.get("cpu_tables", [])))


@dataclass(frozen=True)
class SeedGroup:
    """Runs of one configuration that differ only in their seed.

    Attributes:
        recipe: the first member's recipe name.
        records: the members, in the order they were recorded.
        key: the metric summarised.
    """

    recipe: str
    records: tuple[Record, ...]
    key: str

    @property
    def values(self) -> list[float]:
        return [float(r.get(self.key)) for r in self.records]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single value."""
        values = self.values
        if len(values) < 2:
            return 0.0
        mean = self.mean
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def seed_groups(records: Iterable[Record], versions: Mapping[str, str], key: str = "test_accuracy_tta",
                min_size: int = 2) -> list[SeedGroup]:
    """Group training records whose configurations differ only in ``seed``.

    Records are grouped within one version of the code (``versions`` maps a run file to its
    ``code_version``), since the code changed between run files. Records without ``key`` (failed runs) are skipped.

    Returns:
        the groups with at least ``min_size`` members, in the order of their first member.
    """
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        if record.step not in TRAINING_STEPS or record.get(key) is None or not record.config:
            continue
        config = {k: v for k, v in record.config.items() if k != "seed"}
        group_key = (versions.get(record.run, record.run), json.dumps(config, sort_keys=True))
        groups.setdefault(group_key, []).append(record)
    return [SeedGroup(members[0].recipe or "", tuple(members), key)
            for members in groups.values() if len(members) >= min_size]


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A Markdown (MyST) table.

    Args:
        headers: column titles.
        rows: cells, converted with ``str``; ``|`` inside a cell is escaped.
        align: one letter per column, ``l`` or ``r`` (default: the first column left, the others right).
    """
    align = align or "l" + "r" * (len(headers) - 1)
    if len(align) != len(headers):
        raise ValueError(f"align has {len(align)} letters for {len(headers)} columns; give one 'l' or 'r' per column")

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    for row in rows:
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"a row has {len(row)} cells for {len(headers)} columns: {row}")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def percent(value: object, digits: int = 1) -> str:
    """``0.9309`` -> ``"93.1%"``; a missing value -> ``"-"``."""
    return "-" if value is None else f"{100 * float(value):.{digits}f}%"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of ``values``; the deviation of one value is 0.

    Raises:
        ValueError: if ``values`` is empty.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value (one per seed), got none")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def within_spread(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two sets of runs (one value per seed) are within each other's spread.

    The rule is deliberately simple: the difference of the means is smaller than the sum of
    the two standard deviations. It is no significance test; with three seeds it only says
    which differences a reader should not read anything into.

    Raises:
        ValueError: if either side has fewer than two values (a spread needs two seeds).
    """
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a spread needs at least two seeds on each side, got {len(a)} and {len(b)}")
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    return abs(mean_a - mean_b) < std_a + std_b


def format_mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    """``[0.70, 0.72, 0.74]`` -> ``"0.720 ± 0.020"`` (multiplied by ``scale`` first, e.g. 100 for points)."""
    mean, std = mean_std([scale * v for v in values])
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
