"""The recipe behind ``mmbook train --task scene-vqa``: images, questions from programs, a VQA model, its report.

One batch, from the loader to the loss: the loader gathers ``B`` scenes, each with its image
``(B, 3, 64, 64)``, its ``K`` questions ``(B, K, T)`` and their answer ids ``(B, K)`` (``label``); a model of
:mod:`mmbook.reasoning.models` reads each image once and answers its ``K`` questions, logits ``(B * K, A)``,
and :func:`~mmbook.reasoning.models.vqa_loss` is their cross-entropy with the answers.

Two image sources: ``"shapes"`` (Sort-of-CLEVR's coloured squares and circles, where seeing is easy and
the relations are the hard part) and ``"scenes"`` (the book's CIFAR-10 scenes, where seeing is hard).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from mmbook.reasoning.batches import PIXEL_MEAN, PIXEL_STD
from mmbook.reasoning.models import IMAGE_ENCODERS, VQA_MODELS, build_vqa_model, vqa_accuracy, vqa_loss
from mmbook.reasoning.programs import (FAMILIES, QuestionSet, answer_vocabulary, families_for, generate_questions,
                                       question_prior_accuracy, question_vocabulary, scene_objects, shape_objects)

IMAGE_SOURCES = ("shapes", "scenes")
#: Quick and full defaults of :func:`train_scene_vqa` per image source (the CLI reads them).
VQA_DEFAULTS: dict[str, dict[bool, dict[str, Any]]] = {
    "shapes": {False: {"scenes": 4000, "test_scenes": 1000, "per_scene": 10, "epochs": 8, "batch_size": 32,
                       "lr": 2e-3},
               True: {"scenes": 400, "test_scenes": 200, "per_scene": 10, "epochs": 2, "batch_size": 32,
                      "lr": 2e-3}},
    "scenes": {False: {"scenes": 4000, "test_scenes": 1000, "per_scene": 10, "epochs": 8, "batch_size": 32,
                       "lr": 2e-3},
               True: {"scenes": 400, "test_scenes": 200, "per_scene": 10, "epochs": 2, "batch_size": 32,
                      "lr": 2e-3}},
}
#: Seeds of the test scenes and questions are this far from the training seed, so the two never coincide.
TEST_SEED_OFFSET = 10_000


def _check_source(images: str) -> None:
    if images not in IMAGE_SOURCES:
        raise ValueError(f"unknown image source {images!r}; expected one of {', '.join(IMAGE_SOURCES)}")


def vqa_data(images: str, split: str, count: int, per_scene: int, seed: int = 0, quick: bool = False,
             families: Sequence[str] | None = None, root: Path | str | None = None,
             download: bool = False, condition: str | None = None
             ) -> tuple[QuestionSet, dict[str, torch.Tensor], torch.Tensor]:
    """Questions on ``count`` scenes of ``images`` and the loader dict, one row per scene.

    Returns ``(questions, tensors, slots)``: ``tensors = {"image": (S, 3, 64, 64) uint8, "question":
    (S, K, T), "label": (S, K)}`` with ``K = per_scene`` (a scene with fewer questions has empty slots:
    all-padding words, label -100), and ``slots`` ``(S, K)`` the index in ``questions`` of each slot's
    question (-1 for an empty slot). Train and test scenes differ (``shapes``: other seeds; ``scenes``:
    CIFAR-10's training and test images). ``condition`` (``shapes`` only): a compositional condition of
    :data:`mmbook.data.shapes.CONDITIONS`. Built once per process for the same data, however the arguments are
    spelled (by keyword or position; ``families`` as ``None`` or as every family; ``quick`` for the shapes, which
    it does not change), and shared: do not change the tensors in place.
    """
    _check_source(images)
    families = tuple(families) if families is not None else families_for(images)
    return _vqa_data(images, split, int(count), int(per_scene), int(seed), bool(quick) and images == "scenes",
                     families, None if root is None else str(root), bool(download), condition)


@functools.lru_cache(maxsize=8)
def _vqa_data(images: str, split: str, count: int, per_scene: int, seed: int, quick: bool,
              families: tuple[str, ...], root: str | None, download: bool, condition: str | None
              ) -> tuple[QuestionSet, dict[str, torch.Tensor], torch.Tensor]:
    """:func:`vqa_data` with its arguments normalised, so that one set of data has one cache entry."""
    if condition is not None and images != "shapes":
        raise ValueError(f"a compositional condition ({condition!r}) is defined for the shapes only, not {images!r}; "
                         "use images='shapes' or condition=None")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    offset = TEST_SEED_OFFSET if split == "test" else 0
    if images == "shapes":
        from mmbook.data.shapes import make_shape_scenes

        shapes = make_shape_scenes(count, seed=seed + offset, condition=condition)
        pixels, objects = shapes.images, shape_objects(shapes)
    else:
        from mmbook.data.scenes import load_scenes

        scenes = load_scenes(split, count, seed=seed, quick=quick, root=root, download=download)
        pixels, objects = scenes.images, scene_objects(scenes)
    questions = generate_questions(objects, families, per_scene, seed=seed + offset)
    words, _ = questions.tokens(question_vocabulary(images))
    answers = questions.answer_ids(answer_vocabulary(images))
    slots = torch.full((len(objects), per_scene), -1, dtype=torch.long)
    filled = torch.zeros(len(objects), dtype=torch.long)
    for q, scene in enumerate(questions.scene_index.tolist()):
        slots[scene, filled[scene]] = q
        filled[scene] += 1
    real = slots >= 0
    question_tokens = torch.zeros(len(objects), per_scene, words.shape[1], dtype=torch.long)
    question_tokens[real] = words[slots[real]]
    labels = torch.full((len(objects), per_scene), -100, dtype=torch.long)
    labels[real] = answers[slots[real]]
    return questions, {"image": pixels, "question": question_tokens, "label": labels}, slots


@torch.no_grad()
def answer_questions(model: torch.nn.Module, loader, slots: torch.Tensor, count: int) -> torch.Tensor:
    """The model's answer id for each of ``count`` questions ``(count,)``, from an unshuffled ``loader`` of
    scenes whose question slots are ``slots`` ``(S, K)`` (see :func:`vqa_data`)."""
    model.eval()
    predicted = torch.cat([model(batch).argmax(dim=1).cpu() for batch in loader]).reshape(slots.shape)
    answers = torch.full((count,), -1, dtype=torch.long)
    real = slots >= 0
    answers[slots[real]] = predicted[real]
    return answers


def accuracy_by_family(predicted: torch.Tensor, answers: torch.Tensor, questions: QuestionSet) -> dict[str, float]:
    """Accuracy per question family, on relational and non-relational questions, and ``"overall"``,
    of the predicted answer ids ``(Q,)`` against the true ones ``(Q,)``."""
    correct = (predicted == answers).tolist()
    groups: dict[str, list[bool]] = {}
    for family, right in zip(questions.family, correct):
        groups.setdefault(family, []).append(right)
        groups.setdefault("relational" if FAMILIES[family].relational else "non_relational", []).append(right)
    report = {name: sum(values) / len(values) for name, values in groups.items()}
    report["overall"] = sum(correct) / len(correct)
    return report


def train_scene_vqa(
    model: str = "relation",
    images: str = "shapes",
    *,
    seed: int = 0,
    quick: bool = False,
    scenes: int | None = None,
    test_scenes: int | None = None,
    per_scene: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float = 1e-4,
    width: int = 32,
    question: str = "lstm",
    image_encoder: str = "scratch",
    families: tuple[str, ...] | None = None,
    compositional: bool = False,
    curriculum: int = 0,
    device: torch.device | str | None = None,
    root: Path | str | None = None,
    download: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one VQA model on questions about ``images`` and report its accuracy per question family.

    Args:
        model: one of :data:`~mmbook.reasoning.models.VQA_MODELS`.
        images: ``"shapes"`` or ``"scenes"``.
        scenes, test_scenes, per_scene, epochs, batch_size, lr: ``None`` takes :data:`VQA_DEFAULTS`.
        width: channels of the CNN.
        question: the question encoder, ``"lstm"`` or ``"bow"`` (:data:`~mmbook.reasoning.models.QUESTION_ENCODERS`).
        image_encoder: ``"scratch"`` (the model's own CNN, trained with the answers) or ``"pretrained"`` (the
            Generation chapter's scene backbone pretrained on CIFAR-10 and frozen,
            :class:`~mmbook.reasoning.models.PretrainedRegions`; ``images="scenes"`` only, ``width`` then being
            its channels). The question-only model reads no image and ignores it.
        families: the question families asked (default every family of the source).
        curriculum: for the first ``curriculum`` epochs ask only the non-relational families (the same scenes,
            as many questions each), then every family: a curriculum (Bengio et al. 2009) in which a model first
            learns to find the object a question names, undisturbed by the questions it cannot yet answer
            (:class:`~mmbook.data.CurriculumLoader`). 0: every family from the start.
        compositional: train on condition ``"A"`` of :data:`mmbook.data.shapes.CONDITIONS` (CLEVR-CoGenT's
            split: only red, green and blue objects come as squares) and test on A and on B (only orange, grey
            and yellow do); ``shapes`` only.

    Returns:
        accuracy per family, ``relational``, ``non_relational`` and ``overall`` (test questions, on scenes
        never seen in training); ``prior`` (the question-only baseline by counting,
        :func:`~mmbook.reasoning.programs.question_prior_accuracy`, per family); ``train_seconds``,
        ``parameters``, the sizes, and ``model`` and ``history``. With ``compositional``, the accuracies are
        on condition A's test scenes, and ``compositional`` holds ``{"A": ..., "B": ...}`` (accuracy per
        family, relational, non-relational and overall on each condition's test scenes) and ``drop`` (A's
        overall accuracy minus B's).
    """
    from mmbook.data import CurriculumLoader, DeviceLoader
    from mmbook.runtime import pick_device, seed_everything
    from mmbook.training import fit

    _check_source(images)
    if model not in VQA_MODELS:
        raise ValueError(f"unknown VQA model {model!r}; expected one of {', '.join(VQA_MODELS)}")
    if families is not None:
        families = tuple(families)
        wrong = [f for f in families if f not in families_for(images)]
        if wrong:
            raise ValueError(f"families {wrong} are not asked about {images}; expected some of "
                             f"{', '.join(families_for(images))}")
    if image_encoder not in IMAGE_ENCODERS:
        raise ValueError(f"unknown image encoder {image_encoder!r}; expected one of {', '.join(IMAGE_ENCODERS)}")
    if image_encoder == "pretrained" and images != "scenes":
        raise ValueError(f"the pretrained image encoder was trained on CIFAR-10 objects and reads the CIFAR-10 scenes, "
                         f"not {images!r}; use images='scenes' or image_encoder='scratch'")
    asked = families if families is not None else families_for(images)
    easy = tuple(f for f in asked if not FAMILIES[f].relational)  # what a curriculum asks first
    if not isinstance(curriculum, int) or isinstance(curriculum, bool) or curriculum < 0:
        raise ValueError(f"curriculum must be a whole number of epochs >= 0, got {curriculum!r}")
    if curriculum and not 0 < len(easy) < len(asked):
        raise ValueError(f"a curriculum asks the non-relational families first and then every family, so it needs "
                         f"both kinds among the families asked ({', '.join(asked)}); use curriculum=0")
    if compositional and images != "shapes":
        raise ValueError(f"the compositional split is defined for the shapes only, not {images!r}; "
                         "use images='shapes' or compositional=False")
    train_condition = "A" if compositional else None
    settings = dict(VQA_DEFAULTS[images][bool(quick)])
    for key, value in {"scenes": scenes, "test_scenes": test_scenes, "per_scene": per_scene, "epochs": epochs,
                       "batch_size": batch_size, "lr": lr}.items():
        if value is not None:
            settings[key] = value
    if curriculum >= settings["epochs"]:
        raise ValueError(f"curriculum ({curriculum} epochs of non-relational questions) must be shorter than the run "
                         f"({settings['epochs']} epochs), or every epoch would skip the relational questions")
    device = pick_device(device)
    train_questions, train_tensors, _ = vqa_data(images, "train", settings["scenes"], settings["per_scene"], seed,
                                                 quick, families, root, download, train_condition)
    backbone, encoder_facts = None, {}
    if image_encoder == "pretrained" and model != "question":  # the question-only model reads no image
        from mmbook.generation.encoder import pretrain_backbone

        backbone, encoder_facts = pretrain_backbone(seed, quick, root, download)
    seed_everything(seed)  # the same initialisation whether or not an encoder was pretrained first
    network = build_vqa_model(model, len(question_vocabulary(images)), len(answer_vocabulary(images)), width, question,
                              backbone)
    statistics = {"mean": (PIXEL_MEAN,) * 3, "std": (PIXEL_STD,) * 3}
    train_loader = DeviceLoader(train_tensors, settings["batch_size"], shuffle=True, drop_last=True, device=device,
                                seed=seed, **statistics)
    if curriculum:
        _, easy_tensors, _ = vqa_data(images, "train", settings["scenes"], settings["per_scene"], seed, quick, easy,
                                      root, download, train_condition)
        train_loader = CurriculumLoader(DeviceLoader(easy_tensors, settings["batch_size"], shuffle=True, drop_last=True,
                                                     device=device, seed=seed, **statistics),
                                        train_loader, curriculum)
    started = time.perf_counter()
    history = fit(network, train_loader, epochs=settings["epochs"], lr=settings["lr"], weight_decay=weight_decay,
                  device=device, loss_fn=vqa_loss, accuracy_fn=vqa_accuracy, max_grad_norm=5.0, progress=progress,
                  description=f"scene-vqa ({model}, {images})")
    train_seconds = time.perf_counter() - started

    def test_report(condition: str | None) -> tuple[dict[str, float], QuestionSet]:
        questions, tensors, slots = vqa_data(images, "test", settings["test_scenes"], settings["per_scene"], seed,
                                             quick, families, root, download, condition)
        loader = DeviceLoader(tensors, 500, device=device, rank=0, world_size=1, **statistics)
        predicted = answer_questions(network, loader, slots, len(questions))
        return accuracy_by_family(predicted, questions.answer_ids(answer_vocabulary(images)), questions), questions

    accuracy, test_questions = test_report(train_condition)
    report: dict[str, Any] = dict(accuracy)
    if compositional:
        unseen, _ = test_report("B")
        report["compositional"] = {"A": accuracy, "B": unseen, "drop": accuracy["overall"] - unseen["overall"]}
    report.update({
        "prior": question_prior_accuracy(train_questions, test_questions),
        "model_name": model, "question_encoder": question, "image_encoder": image_encoder, **encoder_facts,
        "curriculum": curriculum,
        "images": images, "seed": seed, "train_seconds": train_seconds,
        "parameters": sum(p.numel() for p in network.parameters()),
        "train_questions": len(train_questions), "test_questions": len(test_questions), **settings,
        "model": network, "history": history,
    })
    return report
