"""Reading the recorded benchmark runs, for the book's "Measured results" appendix.

``benchmarks/gpu_check.py`` appends one JSON object per line to a ``.jsonl`` file for every
result it measures; the files it wrote on GPUs are kept in ``benchmarks/gpu_runs/``. A small
index, ``benchmarks/measured_results.json``, says for each file on which device, with which
command and on which date it was written, and which rows the appendix's summary table shows.
This module reads both and turns them into tables, so that no recorded figure is typed twice.

It also holds the book's rule for comparing results over seeds: :func:`mean_std`, :func:`within_spread`
and :func:`compare`, whose :class:`Verdict` says in a sentence whether one result is ahead of another by
more than the spread between seeds, and :func:`tied_extremes` for "the most" and "the least" with ties.
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


# Student's t, 97.5% quantile, by degrees of freedom (standard table values, 1 to 30).
_T_975_BY_DF = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_975(seeds: int) -> float:
    """Student's t 97.5% quantile for the mean of ``seeds`` values (``seeds - 1`` degrees of freedom).

    Beyond 31 values it returns the value for 30 degrees of freedom, which is slightly larger than the
    exact quantile, so intervals err on the wide side.

    Raises:
        ValueError: if ``seeds`` is below 2 (one value has no spread).
    """
    if seeds < 2:
        raise ValueError(f"a t-interval needs at least two values, got {seeds}")
    return _T_975_BY_DF[min(seeds - 1, len(_T_975_BY_DF)) - 1]


def _values(x: object) -> list[float]:
    """A number, a sequence of numbers or a tensor -> a list of floats."""
    try:
        values = [float(v) for v in x]  # type: ignore[union-attr]
    except TypeError:
        values = [float(x)]  # type: ignore[arg-type]
    if not values:
        raise ValueError("compare needs at least one value on each side (one per seed), got none")
    return values


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`compare`: which of two results is ahead, and whether the spread between seeds allows saying so.

    Attributes:
        names: the two results' names, ``(a, b)``.
        mean_a, mean_b: their means, multiplied by the comparison's ``scale``.
        difference: ``mean_a - mean_b`` (scaled).
        spread: what the difference is measured against (scaled): the sum of the two standard
            deviations (``rule="spread"``), the half-width of the 95% interval of the seed-by-seed
            differences (``rule="paired"``), or None when one seed leaves it unknown (``rule="one seed"``).
        rule: ``"spread"``, ``"paired"``, ``"borrowed spread"`` (one value per side, measured against a
            standard deviation between seeds given by the caller), ``"one seed"``, or ``"undefined"`` (a side
            holds NaN, e.g. a precision over no predictions: there is nothing to compare).
        seeds: the number of values on each side.
    """

    names: tuple[str, str]
    mean_a: float
    mean_b: float
    difference: float
    spread: float | None
    rule: str
    seeds: tuple[int, int]
    higher_is_better: bool = True
    unit: str = "points"
    digits: int = 1
    words: tuple[str, str] = ("is above", "is below")

    @property
    def decided(self) -> bool:
        """Whether the difference is larger than the spread (never, on one seed; never, for equal means)."""
        if self.spread is None or self.difference == 0:
            return False
        if self.rule == "paired":
            return abs(self.difference) > self.spread
        return abs(self.difference) >= self.spread  # the complement of within_spread's strict rule

    @property
    def better(self) -> str | None:
        """The name of the better result when the difference is decided, else None."""
        if not self.decided:
            return None
        a_higher = self.difference > 0
        return self.names[0] if a_higher == self.higher_is_better else self.names[1]

    @property
    def worse(self) -> str | None:
        """The name of the worse result when the difference is decided, else None."""
        better = self.better
        return None if better is None else self.names[1] if better == self.names[0] else self.names[0]

    @property
    def relation(self) -> str:
        """``"larger than"`` or ``"within"``, to complete "a difference ... the spread between seeds"."""
        return "larger than" if self.decided else "within"

    def _gap(self) -> str:
        a, b = self.names
        if self.rule == "undefined":
            undefined = [name for name, mean in zip(self.names, (self.mean_a, self.mean_b)) if math.isnan(mean)]
            return (f"{a} and {b} cannot be compared: {' and '.join(undefined)} "
                    f"{'has' if len(undefined) == 1 else 'have'} no value (NaN) on this run")
        if self.difference == 0:
            return f"{a} and {b} are equal"
        if round(abs(self.difference), self.digits) == 0:  # would print as "by 0.0": say how small it is
            return f"{a} and {b} differ by less than {0.5 * 10 ** -self.digits:.{self.digits + 1}f} {self.unit}".rstrip()
        word = self.words[0] if self.difference > 0 else self.words[1]
        return f"{a} {word} {b} by {abs(self.difference):.{self.digits}f} {self.unit}".rstrip()

    @property
    def sentence(self) -> str:
        """The verdict as a sentence (no final full stop), for ``glue``."""
        a, b = self.names
        if self.rule == "undefined":
            return self._gap()
        if self.rule == "one seed":
            return f"{self._gap()} on one seed, with no spread between seeds to measure the difference against"
        if self.rule == "borrowed spread":
            reference = (f"twice the standard deviation between seeds "
                         f"(2 × {self.spread / 2:.{self.digits}f} {self.unit})").replace(" )", ")")
            if self.decided:
                return f"{self._gap()} on one seed each, more than {reference}"
            return f"{self._gap()} on one seed each, within {reference}: these runs cannot tell them apart"
        if self.decided:
            return f"{self._gap()}, more than the spread between seeds"
        return f"{a} and {b} are within the spread between seeds ({self._gap()}): these runs cannot tell them apart"

    def __str__(self) -> str:
        return self.sentence


def compare(a: object, b: object, names: tuple[str, str] = ("A", "B"), *, higher_is_better: bool = True,
            paired: bool = False, spread: float | None = None, scale: float = 100.0, unit: str = "points",
            digits: int = 1, words: tuple[str, str] = ("is above", "is below")) -> Verdict:
    """Compare two results against the spread between seeds: the book's one rule for "A beats B".

    ``a`` and ``b`` are one value per seed (a number, a list or a tensor). The verdict is decided when:

    - ``paired=True`` (both sides trained on the same seeds, value ``i`` of ``a`` paired with value ``i`` of
      ``b``): the 95% Student's t interval of the mean of the seed-by-seed differences excludes zero;
    - otherwise, with two or more values on each side: the difference of the means is at least the sum of
      the two standard deviations (the complement of :func:`within_spread`);
    - with one value on a side, only if ``spread`` gives the standard deviation between seeds measured
      elsewhere (that side's standard deviation is taken to be ``spread``); without it the verdict is never
      decided, and its sentence reports the difference with that caveat.

    It is no significance test for the unpaired rule; it says which differences a reader may read something into.

    Args:
        names: how the sentence calls ``a`` and ``b``.
        higher_is_better: which direction :attr:`Verdict.better` prefers (False for errors, losses, seconds).
        scale, unit, digits: the difference is reported as ``scale * (mean_a - mean_b)`` in ``unit``
            (default: accuracies as percentage points).
        words: how the sentence says "a is higher than b" and "a is lower than b" (default
            ``("is above", "is below")``; e.g. ``("is slower than", "is faster than")`` for seconds).

    A side that holds NaN (a metric undefined on that run) gives ``rule="undefined"``: never decided, and a
    sentence that says which side has no value.

    Raises:
        ValueError: if a side is empty, or ``paired`` is asked for sides of different lengths or of one value.
    """
    values_a, values_b = _values(a), _values(b)
    mean_a, std_a = mean_std(values_a)
    mean_b, std_b = mean_std(values_b)
    seeds = (len(values_a), len(values_b))
    if math.isnan(mean_a) or math.isnan(mean_b):
        return Verdict(names=(names[0], names[1]), mean_a=scale * mean_a, mean_b=scale * mean_b, difference=math.nan,
                       spread=None, rule="undefined", seeds=seeds, higher_is_better=higher_is_better, unit=unit,
                       digits=digits, words=(words[0], words[1]))
    if paired:
        if len(values_a) != len(values_b) or len(values_a) < 2:
            raise ValueError(f"a paired comparison needs the same number (two or more) of seeds on both sides, got {seeds}")
        mean, std = mean_std([x - y for x, y in zip(values_a, values_b)])
        threshold, rule = t_975(len(values_a)) * std / math.sqrt(len(values_a)), "paired"
    elif min(seeds) >= 2:
        threshold, rule = std_a + std_b, "spread"
    elif spread is None:
        threshold, rule = None, "one seed"
    else:
        threshold = (std_a if seeds[0] >= 2 else float(spread)) + (std_b if seeds[1] >= 2 else float(spread))
        rule = "borrowed spread" if max(seeds) == 1 else "spread"
    return Verdict(names=(names[0], names[1]), mean_a=scale * mean_a, mean_b=scale * mean_b,
                   difference=scale * (mean_a - mean_b), spread=None if threshold is None else scale * threshold,
                   rule=rule, seeds=seeds, higher_is_better=higher_is_better, unit=unit, digits=digits,
                   words=(words[0], words[1]))


def tied_extremes(values: Mapping[str, float], tolerance: float = 0.0) -> tuple[list[str], list[str]]:
    """The names tied for the lowest and for the highest value, in ``values``' order.

    Two values tie when they differ by at most ``tolerance`` (e.g. half the last printed digit, so
    that values printed alike are not ranked).

    Raises:
        ValueError: if ``values`` is empty.
    """
    if not values:
        raise ValueError("tied_extremes needs at least one value")
    low, high = min(values.values()), max(values.values())
    return ([name for name, v in values.items() if v - low <= tolerance],
            [name for name, v in values.items() if high - v <= tolerance])


def join_names(names: Sequence[str], conjunction: str = "and") -> str:
    """``["a"]`` -> ``"a"``; ``["a", "b", "c"]`` -> ``"a, b and c"``."""
    names = [str(n) for n in names]
    if not names:
        return ""
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"
