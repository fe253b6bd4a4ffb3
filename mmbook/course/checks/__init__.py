"""The formative checkers of the book's exercises, one module per chapter.

Each checker takes what the exercise asks for (a function or values), computes the reference
with the book's own code where there is one, and raises ``ExerciseError`` saying what is wrong.

Where the pieces are:

- the machinery stays in :mod:`mmbook.exercises`: :func:`~mmbook.exercises.check`, which a
  notebook's checker cell imports (``from mmbook.exercises import check``), the generic checks
  (:func:`~mmbook.exercises.check_value`, ...), the helpers the chapters' checkers share, and the
  one table :data:`~mmbook.exercises.CHECKERS` (exercise label -> ``"module:function"``);
- the chapters' checkers are here, named after the book's chapter folders: :mod:`.intro`
  (ch01 and ch02: ``ex-intro-*``, ``ex-concepts-*``), :mod:`.cnn` (ch03), :mod:`.text` (ch04),
  :mod:`.fusion` (ch05), :mod:`.alignment` (ch06), :mod:`.objectives` (ch09), :mod:`.worked`
  (ch10 and ch11: ``ex-worked-*``, ``ex-own-*``), :mod:`.frontiers` (ch12) and :mod:`.appendix`
  (``ex-appendix-*``, ``ex-scaling-*``). Some chapters keep checkers in their own package too
  (:mod:`mmbook.cnn`, :mod:`mmbook.text.checks`, :mod:`mmbook.fusion.checks`,
  :mod:`mmbook.objectives.checks`, :mod:`mmbook.alignment.checkers`,
  :mod:`mmbook.generation.checkers`, :mod:`mmbook.reasoning.checkers`);
- the graded (hidden) checks are not in the package: they live in the repository's
  ``instructor/`` folder (``mmbook grade --checks instructor/graded_checks.py``).

These modules import the machinery from :mod:`mmbook.exercises`, never the other way round:
:data:`~mmbook.exercises.CHECKERS` names them as strings, which
:func:`~mmbook.exercises.checker_for` imports when a label is first checked.
"""
