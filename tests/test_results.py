"""Reading the recorded benchmark runs (mmbook.results)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmbook.results import (
    Record,
    find_benchmarks,
    load_measurements,
    markdown_table,
    percent,
    read_run,
    seed_groups,
)

ROOT = Path(__file__).resolve().parents[1]


def write_benchmarks(folder: Path, runs: dict[str, list[dict]], index_runs: list[str] | None = None) -> Path:
    """A benchmarks/ folder with the given run files and an index describing ``index_runs`` (default: all)."""
    (folder / "gpu_runs").mkdir(parents=True)
    for name, rows in runs.items():
        (folder / "gpu_runs" / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    described = runs if index_runs is None else index_runs
    index = {"gpu_runs": {name: {"code_version": "s1", "date": "2026-01-01", "device": "a GPU", "command": "x"}
                          for name in described}, "highlights": [], "cpu_tables": []}
    (folder / "measured_results.json").write_text(json.dumps(index))
    return folder


def row(recipe: str, accuracy: float, seed: int | None = None, step: str = "fastcnn", **config) -> dict:
    config = {"widths": [8, 16, 16], "epochs": 2, **config}
    if seed is not None:
        config["seed"] = seed
    return {"step": step, "recipe": recipe, "config": config, "test_accuracy_tta": accuracy, "train_seconds": 1.0}


def test_read_run_names_the_bad_line(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text('{"step": "data"}\n\nnot json\n')
    with pytest.raises(ValueError, match=r"run.jsonl, line 3: not valid JSON"):
        read_run(path)
    path.write_text('{"step": "data"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"line 2: expected a JSON object, got list"):
        read_run(path)


def test_read_run_keeps_order_and_line_numbers(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text('{"step": "data"}\n\n{"step": "done"}\n')
    records = read_run(path)
    assert [(r.step, r.line) for r in records] == [("data", 1), ("done", 3)]


def test_index_and_run_files_must_agree(tmp_path):
    folder = write_benchmarks(tmp_path / "a", {"r1.jsonl": [row("x", 0.5)], "r2.jsonl": [row("y", 0.6)]},
                              index_runs=["r1.jsonl"])
    with pytest.raises(ValueError, match=r"does not describe: \['r2.jsonl'\]"):
        load_measurements(folder)
    folder = write_benchmarks(tmp_path / "b", {"r1.jsonl": [row("x", 0.5)]}, index_runs=["r1.jsonl", "gone.jsonl"])
    with pytest.raises(ValueError, match=r"do not exist.*gone.jsonl"):
        load_measurements(folder)


def test_find_looks_up_one_training_record(tmp_path):
    folder = write_benchmarks(tmp_path, {"r1.jsonl": [
        {"step": "data"}, row("a", 0.5), row("b", 0.6),
        {"step": "chosen", "recipe": "b", "config": {}, "test_accuracy_tta": 0.6}]})
    measurements = load_measurements(folder)
    assert measurements.find("r1.jsonl", "b").get("test_accuracy_tta") == 0.6  # "chosen" repeats it; not counted
    with pytest.raises(KeyError, match=r"0 training records of recipe 'c'.*\['a', 'b'\]"):
        measurements.find("r1.jsonl", "c")


def test_seed_groups_pair_configs_that_differ_only_in_seed():
    versions = {"r1.jsonl": "s1", "r2.jsonl": "s1", "r3.jsonl": "s2"}
    records = [Record("r1.jsonl", 1, row("base", 0.90)),
               Record("r1.jsonl", 2, row("base, seed 1", 0.92, seed=1, step="seed")),
               Record("r2.jsonl", 1, row("base, seed 2", 0.94, seed=2)),  # same code version, another file
               Record("r3.jsonl", 1, row("base, seed 3", 0.50, seed=3)),  # another code version: not pooled
               Record("r1.jsonl", 3, row("wider", 0.95, widths=[16, 32, 32])),  # another config, alone
               Record("r1.jsonl", 4, {"step": "chosen", "recipe": "base", "config": {"widths": [8, 16, 16], "epochs": 2},
                                      "test_accuracy_tta": 0.90})]
    groups = seed_groups(records, versions)
    assert len(groups) == 1
    group = groups[0]
    assert group.recipe == "base" and group.values == [0.90, 0.92, 0.94]
    assert group.mean == pytest.approx(0.92)
    assert group.std == pytest.approx(0.02)  # sample standard deviation
    assert len(seed_groups(records, versions, min_size=1)) == 3


def test_epochs_from_config_or_timed_epochs():
    assert Record("r", 1, {"config": {"epochs": 24}}).epochs == 24
    assert Record("r", 1, {"config": {}, "epoch_seconds": [1.0, 1.1, 0.9]}).epochs == 3
    assert Record("r", 1, {"config": {}}).epochs is None


def test_markdown_table_and_percent():
    table = markdown_table(["recipe", "acc"], [["a|b", percent(0.93094)], ["c", percent(None)]])
    assert table.splitlines() == ["| recipe | acc |", "|---|---:|", "| a\\|b | 93.1% |", "| c | - |"]
    with pytest.raises(ValueError, match="a row has 1 cells for 2 columns"):
        markdown_table(["recipe", "acc"], [["a"]])
    with pytest.raises(ValueError, match="one 'l' or 'r' per column"):
        markdown_table(["recipe", "acc"], [], align="l")


def test_find_benchmarks(tmp_path, monkeypatch):
    monkeypatch.delenv("MMBOOK_BENCHMARKS", raising=False)
    inner = tmp_path / "book" / "appendix"
    inner.mkdir(parents=True)
    write_benchmarks(tmp_path / "benchmarks", {"r1.jsonl": [row("a", 0.5)]})
    assert find_benchmarks(inner) == (tmp_path / "benchmarks").resolve()
    monkeypatch.setenv("MMBOOK_BENCHMARKS", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="set MMBOOK_BENCHMARKS"):
        find_benchmarks(inner)


def test_the_repository_index_describes_every_recorded_run():
    """The committed index and run files agree, and every highlighted row exists."""
    measurements = load_measurements(ROOT / "benchmarks")
    assert measurements.records
    for highlight in measurements.highlights:
        record = measurements.find(highlight["run"], highlight["recipe"])
        assert record.get("test_accuracy_tta") is not None
    for info in measurements.runs.values():
        assert {"code_version", "date", "device", "software", "command"} <= set(info)


def test_mean_std_and_within_spread():
    from mmbook.results import format_mean_std, mean_std, within_spread

    assert mean_std([0.70, 0.72, 0.74]) == (pytest.approx(0.72), pytest.approx(0.02))
    assert mean_std([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError, match="at least one value"):
        mean_std([])
    assert format_mean_std([0.70, 0.72, 0.74]) == "0.720 ± 0.020"
    assert format_mean_std([0.70, 0.72, 0.74], scale=100, digits=1) == "72.0 ± 2.0"
    # means 0.72 and 0.73, spreads 0.02 + 0.02: within; means 0.72 and 0.80: not
    assert within_spread([0.70, 0.72, 0.74], [0.71, 0.73, 0.75])
    assert not within_spread([0.70, 0.72, 0.74], [0.79, 0.80, 0.81])
    with pytest.raises(ValueError, match="at least two seeds"):
        within_spread([0.7], [0.8, 0.81])
