"""The tasks of ``mmbook train --task NAME``: one entry each, with its defaults, its metric and its recipe.

The command line looks a task up here; :meth:`Task.resolve` puts the flags given over the defaults of
the mode (``task.full`` or ``task.quick``). A task's ``train(settings)`` loads its data, runs its recipe
and returns the :class:`~mmbook.recipes.Run` with a dict of facts about the run (data sizes, the choices
that were made) for the report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import torch

from mmbook.recipes.run import Run


@dataclass(frozen=True)
class Defaults:
    """A task's defaults in one mode (full or quick).

    Attributes:
        epochs: training epochs.
        batch_size: training batch size.
        lr: peak learning rate (``None``: the recipe's own, e.g. fastcnn's for the device).
        train_count, test_count: samples per split (scenes); ``None`` for the whole split.
    """

    epochs: int | None
    batch_size: int | None
    lr: float | None = 3e-3
    train_count: int | None = None
    test_count: int | None = None


@dataclass
class Settings:
    """What one run of a task is asked to do: the ``mmbook train`` flags; ``None`` means the task's default."""

    quick: bool = False
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: torch.device | str | None = None
    amp: bool | None = None
    progress: bool = True
    data: Path | None = None
    download: bool = False
    # Task-specific settings (Task.options lists the ones a task reads).
    modalities: str | None = None
    fusion: str = "concat"
    text_encoder: str = "rnn"
    caption_noise: float = 0.1
    label_smoothing: float = 0.0
    channels_last: bool = False
    compile: bool = False
    checkpoint: Path | None = None
    resume: bool = False
    scenes: int | None = None
    model: str | None = None  # cifar10: fastcnn (default) or lenet; scene-vqa: one of VQA_MODELS (default film)
    images: str = "shapes"
    compositional: bool = False  # scene-vqa on shapes: train on CoGenT-style condition A, test on A and B
    question: str = "lstm"  # scene-vqa: the question encoder, "lstm" or "bow" (mmbook.reasoning.QUESTION_ENCODERS)
    image_encoder: str = "scratch"  # scene-vqa on scenes: "scratch" or "pretrained" (mmbook.reasoning.IMAGE_ENCODERS)
    curriculum: int = 0  # scene-vqa: epochs of non-relational questions only before every question is asked
    recipe: str | None = None
    data_file: Path | None = None
    test_file: Path | None = None
    image_size: int | None = None
    image_column: str = "image"
    text_column: str = "text"
    label_column: str = "label"
    decoder: str = "attention"
    decoding: str = "greedy"
    beam_width: int = 3
    no_repeat_ngram: int = 0  # scene-captioning, greedy or beam: never repeat this many words in a row (0: off)
    pretrained_encoder: str = "small"  # scene-captioning: the frozen image encoder (mmbook.generation.encoder.ENCODERS)
    mirror_regions: bool = False  # scene-captioning: average each region's features with the mirrored scene's
    # The fusion's options as (name, value) pairs, e.g. (("normalize", True),); a tuple, so that it compares by value.
    fusion_options: tuple[tuple[str, Any], ...] = ()


# Settings every task reads.
COMMON_SETTINGS = frozenset({"quick", "epochs", "batch_size", "lr", "seed", "device", "amp", "progress", "data",
                             "download"})


@dataclass(frozen=True)
class Task:
    """One entry of :data:`TASKS`.

    Attributes:
        name: the ``--task`` value.
        summary: one line for ``--help``.
        metric: the key of :attr:`mmbook.recipes.Run.metrics` that the task is judged by.
        full, quick: the defaults in each mode.
        options: the task-specific :class:`Settings` it reads (beyond :data:`COMMON_SETTINGS`).
        train: ``train(settings) -> (run, facts)``.
    """

    name: str
    summary: str
    metric: str
    full: Defaults
    quick: Defaults
    options: frozenset[str]
    train: Callable[[Settings], tuple[Run, dict[str, Any]]]

    def resolve(self, settings: Settings) -> tuple[Defaults, dict[str, Any]]:
        """The mode's defaults, and ``epochs``, ``batch_size``, ``lr`` with the settings' values put in."""
        defaults = self.quick if settings.quick else self.full
        chosen = {name: getattr(defaults, name) if getattr(settings, name) is None else getattr(settings, name)
                  for name in ("epochs", "batch_size", "lr")}
        return defaults, chosen

    def check(self, settings: Settings) -> None:
        """Raise ``ValueError`` naming any setting that differs from its default and that this task does not read."""
        unused = [f.name for f in fields(settings)
                  if getattr(settings, f.name) != f.default and f.name not in COMMON_SETTINGS | self.options]
        if unused:
            users = sorted(task.name for task in TASKS.values() if unused[0] in task.options)
            flag = "--" + unused[0].replace("_", "-")
            raise ValueError(f"{flag} applies to --task {' or '.join(users) or 'none'}, not {self.name}")


def _captioned(settings: Settings) -> tuple[Run, dict[str, Any]]:
    from mmbook.data import load_captioned_cifar10
    from mmbook.recipes.captioned import train_captioned
    from mmbook.recipes.two_stage import train_two_stage

    _, chosen = TASKS["cifar10-captions"].resolve(settings)
    modalities = settings.modalities or "image+text"
    if settings.fusion == "two_stage" and (modalities != "image+text" or settings.checkpoint is not None
                                           or settings.fusion_options):
        raise ValueError("--fusion two_stage needs --modalities image+text and does not support --checkpoint "
                         "or --fusion-option")
    fusion_options = _fusion_options(settings)
    data = load_captioned_cifar10(quick=settings.quick, noise=settings.caption_noise, seed=settings.seed,
                                  root=settings.data, download=settings.download, progress=settings.progress)
    common = dict(text_encoder=settings.text_encoder, seed=settings.seed, device=settings.device, amp=settings.amp,
                  progress=settings.progress, **chosen)
    if settings.fusion == "two_stage":
        run = train_two_stage(data.train.tensors(), data.test.tensors(), len(data.caption_vocab), **common)
    else:
        run = train_captioned(data.train.tensors(), data.test.tensors(), len(data.caption_vocab), modalities,
                              settings.fusion, fusion_options=fusion_options, label_smoothing=settings.label_smoothing,
                              channels_last=settings.channels_last, compile=settings.compile,
                              checkpoint_dir=settings.checkpoint, resume=settings.resume, **common)
    return run, {"modalities": modalities, "fusion": settings.fusion, "fusion_options": fusion_options,
                 "text_encoder": settings.text_encoder,
                 "caption_noise": settings.caption_noise, "train_images": len(data.train),
                 "test_images": len(data.test)}


# LeNet's own defaults for --task cifar10 --model lenet (the task's defaults are fastcnn's).
LENET_DEFAULTS = {False: Defaults(epochs=15, batch_size=256), True: Defaults(epochs=3, batch_size=256)}


def _cifar10(settings: Settings) -> tuple[Run, dict[str, Any]]:
    from mmbook.data import load_cifar10

    model = settings.model or "fastcnn"
    if settings.recipe is not None and model != "fastcnn":
        raise ValueError("--recipe applies to --model fastcnn only")
    if model not in ("fastcnn", "lenet"):
        raise ValueError(f"--task cifar10 --model must be fastcnn or lenet, got {model!r}")
    train_set, test_set = (load_cifar10(split, quick=settings.quick, root=settings.data, download=settings.download)
                           for split in ("train", "test"))
    train = {"image": train_set.images, "label": train_set.labels}
    test = {"image": test_set.images, "label": test_set.labels}
    facts = {"model": model, "train_images": len(train_set), "test_images": len(test_set)}
    if model == "fastcnn":
        from mmbook.fastcnn import FastCNNConfig
        from mmbook.recipes.fastcnn import train_fastcnn

        _, chosen = TASKS["cifar10"].resolve(settings)
        # The recipe for the device (wider and longer on CUDA), then any settings given.
        config = FastCNNConfig.for_device(settings.device, recipe=settings.recipe, amp=settings.amp,
                                          channels_last=True, compile=settings.compile, seed=settings.seed,
                                          **{k: v for k, v in chosen.items() if v is not None})
        run = train_fastcnn(train, test, config, device=settings.device, progress=settings.progress)
        return run, {**facts, "recipe": settings.recipe, "epochs": config.epochs, "batch_size": config.batch_size,
                     "lr": config.lr}
    from mmbook.cnn import ImageClassifier, LeNet
    from mmbook.data import DeviceLoader
    from mmbook.runtime import pick_device, seed_everything
    from mmbook.training import fit

    defaults = LENET_DEFAULTS[settings.quick]
    epochs, batch_size = settings.epochs or defaults.epochs, settings.batch_size or defaults.batch_size
    device = pick_device(settings.device)
    seed_everything(settings.seed)
    model = ImageClassifier(LeNet())
    history = fit(model, DeviceLoader(train, batch_size, shuffle=True, augment=True, crop_padding=0, device=device,
                                      seed=settings.seed, channels_last=True),
                  DeviceLoader(test, 1000, device=device, channels_last=True), epochs=epochs,
                  lr=settings.lr or defaults.lr, device=device, amp=settings.amp, channels_last=True,
                  compile=settings.compile, progress=settings.progress, description="lenet")
    return Run(model, history, {"test_accuracy": history.last["test_accuracy"]}), \
        {**facts, "epochs": epochs, "batch_size": batch_size}


def _scenes(name: str, settings: Settings) -> tuple[Run, dict[str, Any]]:
    from mmbook.recipes.scenes import train_scene_task

    defaults, chosen = TASKS[name].resolve(settings)
    modalities = settings.modalities or ("image" if name == "scene-detection" else "image+text")
    train_count, test_count = defaults.train_count, defaults.test_count
    if settings.scenes is not None:
        train_count, test_count = settings.scenes, min(test_count, settings.scenes)
    run = train_scene_task(name, modalities, train_count=train_count, test_count=test_count, seed=settings.seed,
                           quick=settings.quick, root=settings.data, download=settings.download,
                           device=settings.device, amp=settings.amp, checkpoint_dir=settings.checkpoint,
                           resume=settings.resume, progress=settings.progress, **chosen)
    fusion = {"scene-grounding": "film", "scene-tagging": "cross-attention"}.get(name, "none")
    return run, {"modalities": modalities, "fusion": fusion if "+" in modalities else "none",
                 "train_images": train_count, "test_images": test_count}


_SCENE_OPTIONS = frozenset({"modalities", "checkpoint", "resume", "scenes"})


def _run_of_report(result: dict[str, Any]) -> Run:
    """The :class:`Run` of a retrieval recipe's report: its ``model``, its ``history``, and its numbers as metrics."""
    model, history = result.pop("model"), result.pop("history")
    return Run(model, history, {name: value for name, value in result.items() if isinstance(value, (int, float))})


def _retrieval(settings: Settings) -> tuple[Run, dict[str, Any]]:
    from mmbook.alignment import train_scene_retrieval

    defaults, chosen = TASKS["scene-retrieval"].resolve(settings)
    result = train_scene_retrieval(scenes=settings.scenes or defaults.train_count, seed=settings.seed,
                                   device=settings.device, progress=settings.progress, quick=settings.quick,
                                   root=settings.data, download=settings.download, **chosen)
    run = _run_of_report(result)
    return run, {"train_images": result["train_scenes"], "test_images": result["gallery"]}


def _retrieval_defaults(quick: bool) -> Defaults:
    from mmbook.alignment import RETRIEVAL_DEFAULTS

    values = RETRIEVAL_DEFAULTS[quick]
    return Defaults(epochs=values["epochs"], batch_size=values["batch_size"], lr=values["lr"],
                    train_count=values["scenes"], test_count=values["test_scenes"])


# --task pairs: the images are resized to this side (unless --image-size), and without --test-file this share
# of the images (with all their texts) is the test split.
PAIRS_IMAGE_SIZE = 64
PAIRS_TEST_FRACTION = 0.2
PAIRS_OPTIONS = frozenset({"data_file", "test_file", "image_size", "image_column", "text_column", "label_column",
                           "modalities", "fusion", "fusion_options", "text_encoder", "label_smoothing",
                           "channels_last", "compile", "checkpoint", "resume"})


def _fusion_options(settings: Settings) -> dict[str, Any]:
    """``settings.fusion_options`` as a dict, checked against the fusion's options (a ``ValueError`` naming them)."""
    from mmbook.multimodal import check_fusion_options

    names = [name for name, _ in settings.fusion_options]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"--fusion-option {', '.join(twice)} given more than once; give each option once")
    try:
        return check_fusion_options(settings.fusion, dict(settings.fusion_options))
    except ValueError as error:
        raise ValueError(f"--fusion-option: {error}") from None


def _load_pairs_files(settings: Settings, labelled: bool = True):
    """``load_pairs`` on ``--data-file`` (and ``--test-file``) with the pairs flags.

    Any problem with the files is a ``ValueError`` whose message starts with the flag of the file at
    fault (and names the column flags, for a missing column), so the command line prints it as one line.
    """
    from mmbook.data.cifar10 import CorruptDataError
    from mmbook.data.pairs import MissingColumnError, load_pairs

    flags = {"train": "--data-file", "test": "--test-file"}
    try:
        return load_pairs(settings.data_file, settings.test_file,
                          image_size=settings.image_size or PAIRS_IMAGE_SIZE,
                          test_fraction=0.0 if settings.test_file is not None else PAIRS_TEST_FRACTION,
                          seed=settings.seed, image_column=settings.image_column, text_column=settings.text_column,
                          label_column=settings.label_column if labelled else None, progress=settings.progress)
    except MissingColumnError as error:
        raise ValueError(f"{flags[error.argument]}: {error.describe()}; name the columns with --image-column, "
                         f"--text-column and --label-column") from None
    except (OSError, ValueError, KeyError, TypeError, CorruptDataError) as error:
        if getattr(error, "argument", None) not in flags:
            raise
        raise ValueError(f"{flags[error.argument]}: {error}") from None


def _pairs(settings: Settings) -> tuple[Run, dict[str, Any]]:
    from mmbook.recipes.captioned import train_image_text

    if settings.data_file is None:
        raise ValueError("--task pairs needs --data-file: a .csv or .jsonl file of (image, text, label) rows, "
                         "or a folder <label>/<image>.png with the texts in <image>.txt")
    if settings.fusion == "two_stage":
        raise ValueError("--task pairs does not support --fusion two_stage")
    fusion_options = _fusion_options(settings)
    _, chosen = TASKS["pairs"].resolve(settings)
    modalities = settings.modalities or "image+text"
    data = _load_pairs_files(settings)
    run = train_image_text(data.train.tensors(), data.test.tensors(), len(data.vocab), modalities, settings.fusion,
                           num_classes=data.num_classes, mean=data.mean, std=data.std, fusion_options=fusion_options,
                           text_encoder=settings.text_encoder, label_smoothing=settings.label_smoothing,
                           channels_last=settings.channels_last, compile=settings.compile,
                           checkpoint_dir=settings.checkpoint, resume=settings.resume, seed=settings.seed,
                           device=settings.device, amp=settings.amp, progress=settings.progress, **chosen)
    return run, {"modalities": modalities, "fusion": settings.fusion, "fusion_options": fusion_options,
                 "text_encoder": settings.text_encoder, "data_file": str(settings.data_file),
                 "test_file": None if settings.test_file is None else str(settings.test_file),
                 "image_size": data.image_size, "classes": data.num_classes,
                 "train_images": data.train.num_images, "train_texts": len(data.train),
                 "test_images": data.test.num_images, "test_texts": len(data.test)}


PAIRS_RETRIEVAL_OPTIONS = frozenset({"data_file", "test_file", "image_size", "image_column", "text_column"})


def _pairs_retrieval(settings: Settings) -> tuple[Run, dict[str, Any]]:
    from mmbook.alignment import train_pairs_retrieval

    if settings.data_file is None:
        raise ValueError("--task pairs-retrieval needs --data-file: a .csv or .jsonl file of (image, text) rows, "
                         "or a folder of images with the texts of <image>.png in <image>.txt")
    _, chosen = TASKS["pairs-retrieval"].resolve(settings)
    data = _load_pairs_files(settings, labelled=False)
    result = train_pairs_retrieval(data, seed=settings.seed, device=settings.device, progress=settings.progress,
                                   quick=settings.quick, **chosen)
    run = _run_of_report(result)
    return run, {
        "data_file": str(settings.data_file), "test_file": None if settings.test_file is None else str(settings.test_file),
        "image_size": data.image_size, "train_images": result["train_images"], "train_texts": result["train_texts"],
        "test_images": result["test_images"], "test_texts": result["test_texts"]}


def _captioning(settings: Settings) -> tuple[Run, dict[str, Any]]:
    from mmbook.generation.recipe import train_scene_captioning

    defaults, chosen = TASKS["scene-captioning"].resolve(settings)
    options = {"width": settings.beam_width} if settings.decoding == "beam" else {}
    if settings.no_repeat_ngram:
        options["no_repeat_ngram"] = settings.no_repeat_ngram
    result = train_scene_captioning(settings.decoder, scenes=settings.scenes or defaults.train_count, seed=settings.seed,
                                    device=settings.device, progress=settings.progress, quick=settings.quick,
                                    root=settings.data, download=settings.download, decoding=settings.decoding,
                                    decoding_options=options, encoder=settings.pretrained_encoder,
                                    mirror=settings.mirror_regions, **chosen)
    for name in ("captions", "references", "test_set"):
        result.pop(name)
    run = _run_of_report(result)
    return run, {"decoder": settings.decoder, "decoding": settings.decoding,
                 "no_repeat_ngram": settings.no_repeat_ngram, "pretrained_encoder": settings.pretrained_encoder,
                 "mirror_regions": settings.mirror_regions,
                 "train_scenes": result["train_scenes"],
                 "test_scenes": result["test_scenes"]}


def _captioning_defaults(quick: bool) -> Defaults:
    from mmbook.generation.recipe import CAPTIONING_DEFAULTS

    values = CAPTIONING_DEFAULTS[quick]
    return Defaults(epochs=values["epochs"], batch_size=values["batch_size"], lr=values["lr"],
                    train_count=values["scenes"], test_count=values["test_scenes"])


# --task scene-vqa answers with this model unless --model names another.
VQA_DEFAULT_MODEL = "film"


def _vqa(settings: Settings) -> tuple[Run, dict[str, Any]]:
    from mmbook.reasoning import VQA_MODELS, train_scene_vqa

    model = settings.model or VQA_DEFAULT_MODEL
    if model not in VQA_MODELS:
        raise ValueError(f"--task scene-vqa --model must be one of {', '.join(VQA_MODELS)}, got {model!r}")
    defaults, chosen = _vqa_task(settings.images).resolve(settings)
    result = train_scene_vqa(model, settings.images, scenes=settings.scenes or defaults.train_count,
                             test_scenes=defaults.test_count, seed=settings.seed, quick=settings.quick,
                             device=settings.device, progress=settings.progress, root=settings.data,
                             download=settings.download, compositional=settings.compositional,
                             question=settings.question, image_encoder=settings.image_encoder,
                             curriculum=settings.curriculum, **chosen)
    prior = result.pop("prior")
    compositional = result.pop("compositional", None)
    run = _run_of_report(result)
    facts = {"model": model, "question_encoder": settings.question, "image_encoder": settings.image_encoder,
             "images": settings.images, "curriculum": settings.curriculum,
             "train_scenes": result["scenes"],
             "test_scenes": result["test_scenes"], "question_only_by_counting": prior}
    if compositional is not None:
        facts["compositional"] = compositional  # accuracies on condition A's and B's test scenes, and the drop
    return run, facts


def _vqa_defaults(images: str, quick: bool) -> Defaults:
    from mmbook.reasoning import VQA_DEFAULTS

    values = VQA_DEFAULTS[images][quick]
    return Defaults(epochs=values["epochs"], batch_size=values["batch_size"], lr=values["lr"],
                    train_count=values["scenes"], test_count=values["test_scenes"])


def _vqa_task(images: str) -> Task:
    """``scene-vqa``'s entry with the defaults of ``images`` (the shapes' are the table's)."""
    from dataclasses import replace

    from mmbook.reasoning.recipe import IMAGE_SOURCES

    if images not in IMAGE_SOURCES:
        raise ValueError(f"--images must be one of {', '.join(IMAGE_SOURCES)}, got {images!r}")
    return replace(TASKS["scene-vqa"], full=_vqa_defaults(images, False), quick=_vqa_defaults(images, True))


def _pairs_retrieval_defaults(quick: bool) -> Defaults:
    from mmbook.alignment import PAIRS_RETRIEVAL_DEFAULTS

    values = PAIRS_RETRIEVAL_DEFAULTS[quick]
    return Defaults(epochs=values["epochs"], batch_size=values["batch_size"], lr=values["lr"])


#: The tasks of ``mmbook train --task``, by name.
TASKS: dict[str, Task] = {task.name: task for task in (
    Task("cifar10-captions", "the worked example: CIFAR-10 images with generated captions (any fusion)",
         "test_accuracy", Defaults(epochs=10, batch_size=128), Defaults(epochs=8, batch_size=64),
         frozenset({"modalities", "fusion", "fusion_options", "text_encoder", "caption_noise", "label_smoothing",
                    "channels_last", "compile", "checkpoint", "resume"}), _captioned),
    Task("cifar10", "the CNN chapter's image-only models (fastcnn or LeNet)", "test_accuracy",
         Defaults(epochs=None, batch_size=None, lr=None), Defaults(epochs=2, batch_size=None, lr=None),
         frozenset({"model", "recipe", "compile"}), _cifar10),
    # The detector learns ten classes from small pasted objects, so it gets more scenes and epochs.
    Task("scene-detection", "the objectives chapter's detector on synthetic scenes", "map50",
         Defaults(epochs=10, batch_size=64, train_count=20_000, test_count=1000),
         Defaults(epochs=4, batch_size=64, train_count=600, test_count=200), _SCENE_OPTIONS,
         partial(_scenes, "scene-detection")),
    Task("scene-grounding", "the objectives chapter's referring-expression grounding", "accuracy_iou50",
         Defaults(epochs=8, batch_size=64, train_count=8000, test_count=1000),
         Defaults(epochs=4, batch_size=64, train_count=600, test_count=200), _SCENE_OPTIONS,
         partial(_scenes, "scene-grounding")),
    Task("scene-tagging", "the objectives chapter's grounded role tagging of captions", "entity_f1",
         Defaults(epochs=8, batch_size=64, train_count=8000, test_count=1000),
         Defaults(epochs=4, batch_size=64, train_count=600, test_count=200), _SCENE_OPTIONS,
         partial(_scenes, "scene-tagging")),
    Task("scene-retrieval", "the alignment chapter's contrastive image-caption model: retrieval and zero-shot",
         "recall_at_10_text_to_image", _retrieval_defaults(False), _retrieval_defaults(True), frozenset({"scenes"}),
         _retrieval),
    Task("scene-captioning", "the generation chapter's captioner (--decoder blind, global, attention or transformer): "
         "BLEU, CIDEr-D and hallucination (CHAIR)", "cider_d", _captioning_defaults(False), _captioning_defaults(True),
         frozenset({"scenes", "decoder", "decoding", "beam_width", "no_repeat_ngram", "pretrained_encoder",
                    "mirror_regions"}),
         _captioning),
    Task("scene-vqa", "the reasoning chapter's visual question answering (--model question, image, concat, attention, "
         "film, relation or vilt; --images shapes or scenes): accuracy per question family", "overall",
         _vqa_defaults("shapes", False), _vqa_defaults("shapes", True),
         frozenset({"scenes", "model", "images", "compositional", "question", "image_encoder", "curriculum"}), _vqa),
    Task("pairs", "your own image-text pairs (--data-file pairs.jsonl or .csv; any fusion)", "test_accuracy",
         Defaults(epochs=10, batch_size=64), Defaults(epochs=2, batch_size=64), PAIRS_OPTIONS, _pairs),
    Task("pairs-retrieval", "retrieval on your own caption-only pairs (--data-file pairs.jsonl or .csv, no labels): "
         "a contrastive two-tower model", "recall_at_10_text_to_image", _pairs_retrieval_defaults(False),
         _pairs_retrieval_defaults(True), PAIRS_RETRIEVAL_OPTIONS, _pairs_retrieval),
)}
