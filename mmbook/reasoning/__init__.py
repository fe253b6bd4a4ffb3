"""Reasoning: visual question answering in the manner of CLEVR and Sort-of-CLEVR.

Questions are generated together with small functional programs that answer them on a scene's ground
truth, for two image sources: the book's CIFAR-10 scenes (:mod:`mmbook.data.scenes`) and Sort-of-CLEVR's
coloured shapes (:mod:`mmbook.data.shapes`)::

    "what is left of the big truck"   [["scene"], ["filter", "class", "truck"], ["filter", "size", "big"],
                                        ["unique"], ["relate", "left"], ["unique"], ["query", "class"]]  -> "cat"

- :mod:`~mmbook.reasoning.programs`: scene objects, the program executor, question families, answer
  balancing, the fixed vocabularies and the question-only ("blind") baseline.
- :mod:`~mmbook.reasoning.models`: the VQA models, from question-only to FiLM and the relation network.
- :mod:`~mmbook.reasoning.recipe`: ``mmbook train --task scene-vqa``: data, training through
  :func:`mmbook.training.fit`, accuracy per question family.
- :mod:`~mmbook.reasoning.vit`: images as tokens: patch embedding, a vision transformer (ViT) and a
  single-stream transformer over patches and question words (ViLT in miniature).
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
from mmbook.reasoning.models import IMAGE_ENCODERS, VQA_MODELS, PretrainedRegions, build_vqa_model, vqa_accuracy, vqa_loss
from mmbook.reasoning.vit import PatchEmbedding, PatchQuestionTransformer, VisionTransformer
from mmbook.reasoning.recipe import IMAGE_SOURCES, VQA_DEFAULTS, accuracy_by_family, train_scene_vqa, vqa_data
from mmbook.reasoning.symbolic import (ShapeSceneParser, detect_scenes, detected_objects, parse_scenes, program_accuracy,
                                      program_answers, train_scene_parser)

__all__ = [
    "ATTRIBUTES", "COLOURS", "FAMILIES", "FUNCTIONS", "Family", "IMAGE_ENCODERS", "IMAGE_SOURCES", "PatchEmbedding",
    "PatchQuestionTransformer", "PretrainedRegions", "ProgramError", "QuestionSet", "SHAPES", "SceneObject", "ShapeSceneParser",
    "ShapeScenes", "VQA_DEFAULTS", "VQA_MODELS", "accuracy_by_family", "answer_vocabulary", "build_vqa_model",
    "detect_scenes", "detected_objects", "execute", "families_for", "generate_questions", "make_shape_scenes",
    "object_source", "parse_scenes",
    "program_accuracy", "program_answers", "question_prior_accuracy", "question_vocabulary", "scene_objects", "shape_objects",
    "train_scene_parser", "train_scene_vqa", "VisionTransformer", "vqa_accuracy", "vqa_data", "vqa_loss",
]
