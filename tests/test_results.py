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


def test_compare_decides_only_beyond_the_spread():
    from mmbook.results import compare, within_spread

    far = compare([0.80, 0.81, 0.79], [0.70, 0.71, 0.69], names=("fused", "image"))
    assert far.decided and far.rule == "spread" and far.better == "fused" and far.worse == "image"
    assert far.difference == pytest.approx(10.0) and far.spread == pytest.approx(2.0)
    assert far.sentence == "fused is above image by 10.0 points, more than the spread between seeds"
    assert str(far) == far.sentence and far.relation == "larger than"

    near = compare([0.70, 0.72, 0.74], [0.71, 0.73, 0.75], names=("A", "B"))
    assert not near.decided and near.better is None and near.relation == "within"
    assert near.sentence == ("A and B are within the spread between seeds (A is below B by 1.0 points): "
                             "these runs cannot tell them apart")
    # the same rule as within_spread, at its boundary too: a difference equal to the spread is decided
    for a, b in (([0.70, 0.72, 0.74], [0.71, 0.73, 0.75]), ([0.70, 0.72, 0.74], [0.74, 0.76, 0.78]),
                 ([0.5, 0.7], [0.1, 0.2])):
        assert compare(a, b).decided == (not within_spread(a, b))


def test_compare_lower_is_better_and_own_words():
    from mmbook.results import compare

    verdict = compare([16.0, 16.2, 15.8], [6.8, 6.9, 6.7], names=("stepwise", "joint"), higher_is_better=False,
                      scale=1, unit="s", words=("is slower than", "is faster than"))
    assert verdict.decided and verdict.better == "joint"
    assert verdict.sentence == "stepwise is slower than joint by 9.2 s, more than the spread between seeds"


def test_compare_paired_uses_the_t_interval():
    from mmbook.results import compare, t_975

    # differences 0.02, 0.03, 0.04: mean 3.0 points, std 1.0, half-width 4.303 / sqrt(3) = 2.48 points
    decided = compare([0.72, 0.73, 0.74], [0.70, 0.70, 0.70], paired=True)
    assert decided.rule == "paired" and decided.decided
    assert decided.spread == pytest.approx(100 * t_975(3) * 0.01 / 3 ** 0.5)
    # same means, but the differences swing in sign: the interval holds zero
    swinging = compare([0.75, 0.70, 0.76], [0.70, 0.70, 0.70], paired=True)
    assert not swinging.decided and "cannot tell them apart" in swinging.sentence
    # unpaired, the same values: a difference of 3.0 points against a sum of standard deviations of 1.0
    assert compare([0.72, 0.73, 0.74], [0.70, 0.70, 0.70]).decided
    with pytest.raises(ValueError, match="same number"):
        compare([0.7, 0.8], [0.7, 0.8, 0.9], paired=True)
    with pytest.raises(ValueError, match="same number"):
        compare(0.7, 0.8, paired=True)
    assert t_975(2) == pytest.approx(12.706) and t_975(3) == pytest.approx(4.303)
    assert t_975(1000) == pytest.approx(2.042)
    with pytest.raises(ValueError):
        t_975(1)


def test_compare_on_one_seed_cannot_tell():
    from mmbook.results import compare

    verdict = compare(0.394, 0.388, names=("with flips", "without"))
    assert verdict.rule == "one seed" and not verdict.decided and verdict.better is None and verdict.spread is None
    assert verdict.sentence == ("with flips is above without by 0.6 points on one seed, with no spread between "
                                "seeds to measure the difference against")
    assert compare([0.5], [0.5]).sentence.startswith("A and B are equal on one seed")
    # even a large one-seed gap is undecided without a spread
    assert not compare(0.9, 0.1).decided


def test_compare_does_not_print_a_difference_that_rounds_to_zero():
    from mmbook.results import compare

    verdict = compare([3.51, 3.52], [3.50, 3.52], names=("tfn", "concat"), scale=1, unit="s")
    assert "by 0.0" not in verdict.sentence
    assert verdict.sentence == ("tfn and concat are within the spread between seeds (tfn and concat differ by less than "
                                "0.05 s): these runs cannot tell them apart")


def test_compare_with_an_undefined_side_says_which_has_no_value():
    from mmbook.results import compare

    verdict = compare(0.7, float("nan"), names=("the baseline", "the decoder"), higher_is_better=False)
    assert verdict.rule == "undefined" and not verdict.decided and verdict.better is None
    assert verdict.sentence == "the baseline and the decoder cannot be compared: the decoder has no value (NaN) on this run"
    both = compare([float("nan"), 0.2], [float("nan")], names=("x", "y"))
    assert both.sentence.endswith("x and y have no value (NaN) on this run")


def test_compare_with_a_spread_measured_elsewhere():
    from mmbook.results import compare

    wide = compare(0.553, 0.478, names=("hidden 128", "hidden 8"), spread=0.022)
    assert wide.rule == "borrowed spread" and wide.decided and wide.better == "hidden 128"
    assert wide.spread == pytest.approx(4.4)
    assert wide.sentence == ("hidden 128 is above hidden 8 by 7.5 points on one seed each, more than twice the "
                             "standard deviation between seeds (2 × 2.2 points)")
    close = compare(0.509, 0.478, names=("hidden 32", "hidden 8"), spread=0.022)
    assert not close.decided and close.sentence.endswith("these runs cannot tell them apart")
    # one value against several: the single side takes the given spread, the other its own
    mixed = compare(0.60, [0.50, 0.52, 0.54], spread=0.02)
    assert mixed.rule == "spread" and mixed.spread == pytest.approx(4.0) and mixed.decided


def test_compare_accepts_tensors_and_rejects_empty_sides():
    import torch

    from mmbook.results import compare

    verdict = compare(torch.tensor([0.8, 0.82]), torch.tensor(0.5), spread=0.01)
    assert verdict.seeds == (2, 1) and verdict.decided
    with pytest.raises(ValueError, match="at least one value"):
        compare([], [0.5])


def test_tied_extremes_and_join_names():
    from mmbook.results import join_names, tied_extremes

    gains = {"airplane": 0.20, "automobile": 0.068, "bird": 0.15, "dog": 0.068, "ship": 0.30}
    assert tied_extremes(gains) == (["automobile", "dog"], ["ship"])
    assert tied_extremes({"a": 0.101, "b": 0.1, "c": 0.5}, tolerance=0.0015) == (["a", "b"], ["c"])
    assert tied_extremes({"a": 0.101, "b": 0.1, "c": 0.5}) == (["b"], ["c"])
    with pytest.raises(ValueError):
        tied_extremes({})
    assert join_names(["automobile", "dog"]) == "automobile and dog"
    assert join_names(["a", "b", "c"], "or") == "a, b or c"
    assert join_names(["a"]) == "a" and join_names([]) == ""
