"""Reasoning: visual question answering in the manner of CLEVR and Sort-of-CLEVR.

Questions are generated together with small functional programs that answer them on a scene's ground
truth, for two image sources: the book's CIFAR-10 scenes (:mod:`mmbook.data.scenes`) and Sort-of-CLEVR's
coloured shapes (:mod:`mmbook.data.shapes`)::

    "what is left of the big truck"   [["scene"], ["filter", "class", "truck"], ["filter", "size", "big"],
                                        ["unique"], ["relate", "left"], ["unique"], ["query", "class"]]  -> "cat"

- :mod:`~mmbook.reasoning.programs`: scene objects, the program executor, question families, answer
  balancing, the fixed vocabularies and the question-only ("blind") baseline.
"""

from mmbook.data.shapes import COLOURS, SHAPES, ShapeScenes, make_shape_scenes
from mmbook.reasoning.programs import (
    ATTRIBUTES,
    FAMILIES,
    FUNCTIONS,
    Family,
    ProgramError,
    QuestionSet,
    SceneObject,
    answer_vocabulary,
    execute,
    families_for,
    generate_questions,
    object_source,
    question_prior_accuracy,
    question_vocabulary,
    scene_objects,
    shape_objects,
)

__all__ = [
    "ATTRIBUTES", "COLOURS", "FAMILIES", "FUNCTIONS", "Family", "ProgramError", "QuestionSet", "SHAPES", "SceneObject",
    "ShapeScenes", "answer_vocabulary", "execute", "families_for", "generate_questions", "make_shape_scenes",
    "object_source", "question_prior_accuracy", "question_vocabulary", "scene_objects", "shape_objects",
]
