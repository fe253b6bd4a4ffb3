"""The course-map page: its generated table is current, and the generator counts what the notebooks hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from course_fixtures import write_demo_book
from mmbook.course import course_map
from mmbook.course.markup import cell_source, concept_questions, exercises

ROOT = Path(__file__).resolve().parents[1]


def test_course_map_page_is_current():
    old, new = course_map.update(ROOT / "book" / "course_map.md", ROOT)
    assert old == new, "book/course_map.md is not current: run `python -m mmbook.course.course_map`"


def test_course_map_is_in_the_front_matter():
    entries = course_map.toc_entries(ROOT)
    assert entries[0] == "book/course_map", "the course map comes right after the preface"


def test_generator_lists_autograded_exercises(tmp_path):
    write_demo_book(tmp_path / "book")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/index\nchapters:\n  - file: book/ch90_demo/demo\n")
    (rows,) = course_map.summaries(tmp_path)
    assert (rows.doc, rows.title, rows.exercises, rows.autograded, rows.concept_questions) == (
        "ch90_demo/demo", "A demo chapter", 3, ["ex-demo-square", "ex-demo-answer"], 1)
    assert rows.minutes >= 3 * course_map.MINUTES_PER_EXERCISE and rows.minutes % 15 == 0
    page = tmp_path / "map.md"
    page.write_text(f"# Map\n\n{course_map.BEGIN}\nstale\n{course_map.END}\n\nAfter.\n")
    assert course_map.main(["--page", str(page), "--root", str(tmp_path), "--check"]) == 1
    assert course_map.main(["--page", str(page), "--root", str(tmp_path)]) == 0
    text = page.read_text()
    assert "`ex-demo-square`, `ex-demo-answer`" in text and "**2 (67%)**" in text and text.endswith("After.\n")
    assert course_map.main(["--page", str(page), "--root", str(tmp_path), "--check"]) == 0


def test_page_without_markers_is_an_error(tmp_path):
    page = tmp_path / "map.md"
    page.write_text("# Map\n")
    with pytest.raises(ValueError, match="has no generated block"):
        course_map.update(page, tmp_path)


def test_every_chapter_checks_understanding():
    """3 to 5 concept questions per chapter, each with a gated answer, in a section before the exercises."""
    per_chapter: dict[str, list[str]] = {}
    for path in sorted((ROOT / "book").glob("ch*/*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        questions = concept_questions(notebook)
        per_chapter.setdefault(path.parent.name, []).extend(q.label for q in questions)
        if not questions:
            continue
        sources = [cell_source(cell) for cell in notebook["cells"]]
        heading = next(i for i, text in enumerate(sources) if text.startswith("## Check your understanding"))
        first_exercise = min(e.cell for e in exercises(notebook))
        assert heading < questions[0].cell and questions[-1].cell < first_exercise, path.name
        for question in questions:
            assert any(re.match(rf"`{{3,}}\{{solution-start\}} {re.escape(question.label)}\s", text)
                       for text in sources), f"{path.name}: {question.label} has no gated answer"
    assert per_chapter, "no chapter notebooks found"
    counts = {chapter: len(labels) for chapter, labels in per_chapter.items()}
    assert all(3 <= count <= 5 for count in counts.values()), counts
    labels = [label for chapter in per_chapter.values() for label in chapter]
    assert len(labels) == len(set(labels)), "concept question labels must be unique in the book"
