"""Recipes: what trains something end to end. Each builds a model, data loaders and an optimizer,
calls :func:`mmbook.training.fit` (the one training loop), and returns a :class:`Run`.

======================================  ==============================================================
recipe                                  trains
======================================  ==============================================================
:func:`train_captioned`                 the worked example's image+text classifier (any fusion)
:func:`train_image_text`                the same for your own image-text pairs (:func:`mmbook.data.load_pairs`)
:func:`train_two_stage`                 two-stage weighted fusion: unimodal models, estimator, fusion
:func:`fit_two_stage`                   the same, from unimodal models and loaders you built
:func:`train_fastcnn`                   the CNN chapter's fast small CNN on CIFAR-10
:func:`train_text_classifier`           a text encoder as a classifier (the text chapter)
:func:`train_scene_task`                the objectives chapter's detection, grounding and tagging
======================================  ==============================================================

:data:`TASKS` names the tasks of ``mmbook train --task ...`` with their defaults, so the
command line and the notebooks share one set of numbers.

Recipes sit above the building blocks (:mod:`mmbook.multimodal`, :mod:`mmbook.fusion`,
:mod:`mmbook.objectives`, :mod:`mmbook.data`); no building block imports a recipe.
"""

from mmbook.recipes.captioned import train_captioned, train_image_text
from mmbook.recipes.fastcnn import train_fastcnn
from mmbook.recipes.run import Run
from mmbook.recipes.scenes import train_scene_task
from mmbook.recipes.tasks import TASKS, Defaults, Settings, Task
from mmbook.recipes.text import train_text_classifier
from mmbook.recipes.two_stage import fit_two_stage, train_two_stage

__all__ = [
    "TASKS", "Defaults", "Run", "Settings", "Task", "fit_two_stage", "train_captioned", "train_fastcnn", "train_scene_task",
    "train_image_text", "train_text_classifier", "train_two_stage",
]
