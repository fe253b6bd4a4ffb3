"""The course edition of the book: student notebooks, the student HTML book, grading, the course map.

- :mod:`mmbook.course.markup`  reads the exercise markup of a notebook (exercises, gated
  solutions, ``starter`` and ``checker`` cells)
- :mod:`mmbook.course.student` writes the student edition: ``python -m mmbook.course.student book _build/student``
- :mod:`mmbook.course.grade`   grades submitted student notebooks (``mmbook grade``)
- :mod:`mmbook.course.course_map` writes the generated table of the course-map page (``book/course_map.md``)
- :mod:`mmbook.course.authoring` adds starter and checker cells to exercises of the book's notebooks
- :mod:`mmbook.course.checks`  the chapters' exercise checkers, one module per chapter

The checker machinery (``check``, the generic checks and the ``CHECKERS`` table) lives in
:mod:`mmbook.exercises`.
"""
