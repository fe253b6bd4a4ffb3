"""The ``mmbook`` command line: ``mmbook env``, ``mmbook data``, ``mmbook train``, ``mmbook grade``, ``mmbook bench``.

``mmbook train --task NAME`` looks the task up in :data:`mmbook.recipes.TASKS`, runs it, and
reports through one function (:func:`report`), which prints the result and writes the JSON.
A bad flag value, or a combination a task does not accept, prints one line,
``mmbook: error: ...``, and exits with status 2; so does any problem with the files that
``--task pairs`` is given (``--data-file``, ``--test-file``), which the message traces to its flag.
A missing or corrupt copy of the book's data (CIFAR-10) exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
EXIT_DATA = 1


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2, without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


class UsageError(Exception):
    """A bad command-line value: reported as one line, exit status 2."""


def _checked_number(convert, is_valid, kind: str, requirement: str):
    """An argparse ``type=`` that converts a flag value and checks it, with a one-line message."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not is_valid(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {value}")
        return value

    return parse


_positive_int = _checked_number(int, lambda v: v > 0, "a whole number", "a positive whole number")
_non_negative_int = _checked_number(int, lambda v: v >= 0, "a whole number", "zero or more")
_probability = _checked_number(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]", "in [0, 1]")
_positive_float = _checked_number(float, lambda v: v > 0, "a number", "positive")
_image_size = _checked_number(int, lambda v: v >= 32, "a whole number", "at least 32 (LeNet's smallest input)")


def _fusion_option(text: str) -> tuple[str, object]:
    """``--fusion-option KEY=VALUE`` -> ``(KEY, VALUE)``, the value a bool (true/false), an int, a float or text."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key.isidentifier() or not raw:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. normalize=true or hidden=64, got {text!r}")
    if raw.lower() in ("true", "false"):
        return key, raw.lower() == "true"
    for convert in (int, float):
        try:
            return key, convert(raw)
        except ValueError:
            pass
    return key, raw


def _column(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a column name, got an empty one")
    return text


def _modalities(text: str) -> str:
    from mmbook.multimodal import parse_modalities

    try:
        return "+".join(parse_modalities(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mmbook`` command."""
    from mmbook.fastcnn import RECIPES
    from mmbook.fusion import FUSIONS
    from mmbook.generation.decoding import DECODERS
    from mmbook.generation.encoder import ENCODERS
    from mmbook.generation.model import CAPTIONERS
    from mmbook.reasoning.models import IMAGE_ENCODERS, QUESTION_ENCODERS, VQA_MODELS
    from mmbook.reasoning.recipe import IMAGE_SOURCES
    from mmbook.recipes import TASKS
    from mmbook.text import TEXT_ENCODER_KINDS

    parser = _Parser(prog="mmbook", description="Tools for the mmbook textbook on multimodal deep learning.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("env", help="print the versions, device, mode and data copy in use")

    data = commands.add_parser("data", help="locate, verify or download CIFAR-10")
    data.add_argument("--data", "--root", dest="data", type=Path,
                      help="data directory (default: $MMBOOK_DATA or ~/.cache/mmbook/data)")
    data.add_argument("--download", action="store_true", help="download the official files if no copy is found")
    data.add_argument("--verify", action="store_true", help="decode every image and report the counts")

    tasks = "; ".join(f"{task.name}: {task.summary}" for task in TASKS.values())
    train = commands.add_parser("train", help="train a model and report its test metrics",
                                description=f"Train one of the book's tasks. Tasks: {tasks}.")
    train.add_argument("--task", choices=list(TASKS), default="cifar10-captions",
                       help="what to train (default: cifar10-captions, the worked example)")
    train.add_argument("--modalities", type=_modalities, default=None,
                       help="image, text or image+text (default image+text; scene-detection: image)")
    train.add_argument("--fusion", choices=sorted([*FUSIONS, "two_stage"]), default="concat",
                       help="cifar10-captions, pairs: how the image and text features are combined (default concat)")
    train.add_argument("--text-encoder", choices=list(TEXT_ENCODER_KINDS), default="rnn",
                       help="cifar10-captions: the caption encoder (default rnn)")
    train.add_argument("--epochs", type=_positive_int, default=None, help="training epochs (default: the task's)")
    train.add_argument("--batch-size", type=_positive_int, default=None,
                       help="global training batch size, over all --nproc processes (default: the task's)")
    train.add_argument("--nproc", type=_positive_int, default=1,
                       help="processes to train on with torchrun + DDP (one per GPU; gloo on CPU); --batch-size stays global")
    train.add_argument("--model", choices=("fastcnn", "lenet", *VQA_MODELS), default=None,
                       help="cifar10: the image model, fastcnn (default) or lenet; scene-vqa: the VQA model (default "
                            "film)")
    train.add_argument("--images", choices=IMAGE_SOURCES, default="shapes",
                       help="scene-vqa: rendered shapes (Sort-of-CLEVR, default) or the CIFAR-10 scenes")
    train.add_argument("--compositional", action="store_true",
                       help="scene-vqa on shapes: train where only red, green and blue objects come as squares "
                            "(CLEVR-CoGenT's condition A) and test on A and on B (only orange, grey and yellow do)")
    train.add_argument("--question", choices=QUESTION_ENCODERS, default="lstm",
                       help="scene-vqa: how the question becomes a vector, an LSTM over its words (default) or a bag "
                            "of words (Sort-of-CLEVR's templates need no word order)")
    train.add_argument("--image-encoder", choices=IMAGE_ENCODERS, default="scratch",
                       help="scene-vqa on --images scenes: the model's own CNN trained from scratch (default), or the "
                            "Generation chapter's scene backbone pretrained on CIFAR-10 and frozen")
    train.add_argument("--curriculum", type=_non_negative_int, default=0, metavar="EPOCHS",
                       help="scene-vqa: ask only the non-relational questions for the first EPOCHS epochs, then every "
                            "question (default 0: every question from the start)")
    train.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                       help="cifar10 fastcnn: the settings (default: gpu on CUDA, else cpu; gpu-93 is wider and longer)")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="peak learning rate (default: 3e-3; fastcnn: 0.4, on CUDA 1.5)")
    train.add_argument("--caption-noise", type=_probability, default=0.1,
                       help="cifar10-captions: the share of captions drawn for a random class (default 0.1)")
    train.add_argument("--label-smoothing", type=_probability, default=0.0, help="cifar10-captions: label smoothing")
    train.add_argument("--scenes", type=_positive_int, default=None,
                       help="scene-* tasks: training scenes (test scenes: at most the task's default)")
    train.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps")
    train.add_argument("--seed", type=_non_negative_int, default=0, help="seeds the data, the weights and the batch order")
    train.add_argument("--quick", action="store_true", help="quick mode: small subset, few epochs")
    train.add_argument("--data", type=Path, help="data directory (default: $MMBOOK_DATA)")
    train.add_argument("--data-file", type=Path, default=None,
                       help="pairs: a .csv or .jsonl file of (image, text, label) rows, or a folder "
                            "<label>/<image>.png with <image>.txt; pairs-retrieval: the same without labels")
    train.add_argument("--test-file", type=Path, default=None,
                       help="pairs, pairs-retrieval: the test pairs, in the same form (default: a fifth of "
                            "--data-file's images)")
    train.add_argument("--image-size", type=_image_size, default=None,
                       help="pairs, pairs-retrieval: the side every image is cropped and resized to (default 64; "
                            "pairs-retrieval: a multiple of 8)")
    train.add_argument("--image-column", type=_column, default="image",
                       help="pairs, pairs-retrieval: the column of the image paths (default image)")
    train.add_argument("--text-column", type=_column, default="text", help="pairs, pairs-retrieval: the column of the texts (default text)")
    train.add_argument("--label-column", type=_column, default="label",
                       help="pairs: the column of the labels (default label)")
    train.add_argument("--fusion-option", "--fusion-options", dest="fusion_options", type=_fusion_option,
                       action="append", metavar="KEY=VALUE",
                       help="cifar10-captions, pairs: an option of the fusion, e.g. normalize=false for --fusion gmu, or hidden=64 "
                            "(repeatable; values are read as true/false, whole numbers or numbers)")
    train.add_argument("--decoder", choices=CAPTIONERS, default="attention",
                       help="scene-captioning: the captioner (default attention; blind never sees the image)")
    train.add_argument("--decoding", choices=DECODERS, default="greedy",
                       help="scene-captioning: how captions are decoded (default greedy)")
    train.add_argument("--beam-width", type=_positive_int, default=3,
                       help="scene-captioning with --decoding beam: the beam width (default 3)")
    train.add_argument("--no-repeat-ngram", type=_non_negative_int, default=0, metavar="N",
                       help="scene-captioning with --decoding greedy or beam: never repeat N words in a row "
                            "(default 0: no blocking)")
    train.add_argument("--pretrained-encoder", choices=tuple(ENCODERS), default="small",
                       help="scene-captioning: the frozen image encoder pretrained on CIFAR-10, small (default, the "
                            "pages') or large (about six times the cost per image; it recognises more of the objects)")
    train.add_argument("--mirror-regions", action="store_true",
                       help="scene-captioning: average each region's features with those of the mirrored scene "
                            "(test-time flip augmentation, on training and test scenes)")
    train.add_argument("--download", action="store_true", help="download CIFAR-10 if no copy is found")
    train.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (default: on for CUDA)")
    train.add_argument("--channels-last", action="store_true",
                       help="cifar10-captions: channels-last memory format (faster convolutions on GPUs)")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--checkpoint", type=Path, help="directory for a checkpoint after every epoch")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint")
    train.add_argument("--json", type=Path, help="write the results as a JSON object to this path")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

    from mmbook.course import grade as course_grade

    grade = commands.add_parser("grade", help="grade submitted student notebooks (runs their code: use a container)",
                                description=course_grade.__doc__.splitlines()[0],
                                epilog=f"WARNING: {course_grade.WARNING}")
    course_grade.add_arguments(grade)

    bench = commands.add_parser("bench", help="benchmarks: `mmbook bench loader`")
    bench.add_argument("what", choices=("loader",), help="loader: the source's DataLoader loop against the fast path")
    bench.add_argument("--baseline-images", type=_positive_int, default=None,
                       help="stop the slow baseline after this many images (default: one whole epoch)")
    bench.add_argument("--batch-size", type=_positive_int, default=512, help="batch size of the fast path")
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    bench.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                       help="mixed precision in the fast path: auto (on for CUDA and for CPUs with native bf16), "
                            "on (bf16 on a CPU), off")
    bench.add_argument("--quick", action="store_true", help="quick mode: 5,000 training images")
    bench.add_argument("--data", type=Path, help="data directory (default: $MMBOOK_DATA)")
    bench.add_argument("--download", action="store_true", help="download CIFAR-10 if no copy is found")
    bench.add_argument("--json", type=Path, help="write the results as a JSON object to this path")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mmbook`` console script; returns the exit status."""
    from mmbook.data import CorruptDataError, DataNotFoundError

    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "data", None) is not None and not args.data.is_dir() and not args.download:
            raise UsageError(f"--data {args.data}: no such directory (point it at a folder holding cifar10/ "
                             f"or use --download)")
        if args.command != "train":
            from mmbook.course import grade as course_grade  # already imported by build_parser

            return {"env": _env, "data": _data, "bench": _bench, "grade": course_grade.run}[args.command](args)
        from mmbook import distributed

        if args.nproc > 1 and not distributed.under_torchrun():
            return distributed.launch_torchrun(args.nproc, sys.argv[1:] if argv is None else list(argv))
        # Under torchrun: join the group (nccl for CUDA, gloo for the CPU), quiet ranks > 0; else nothing.
        with distributed.from_env(device=None if args.device == "auto" else args.device):
            return _train(args)
    except (UsageError, DataNotFoundError, CorruptDataError) as error:
        print(f"mmbook: error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, UsageError) else EXIT_DATA
    except KeyboardInterrupt:
        return 130


def _env(args: argparse.Namespace) -> int:
    from mmbook.data import data_root, locate_cifar10
    from mmbook.runtime import environment_report

    print(environment_report())
    found = locate_cifar10()
    if found:
        print(f"data: {data_root()} (CIFAR-10 {found[0]} at {found[1]})")
    else:
        print(f"data: no CIFAR-10 copy under {data_root()}; point MMBOOK_DATA at a folder holding cifar10/ (the "
              f"Makefile does this for ../shared/data beside the repository) or run `mmbook data --download`")
    return 0


def _data(args: argparse.Namespace) -> int:
    from mmbook.data import DataNotFoundError, data_root, load_cifar10, locate_cifar10

    root = args.data or data_root()
    found = locate_cifar10(root)
    if found is None and not args.download:
        raise DataNotFoundError(f"no CIFAR-10 copy under {root}; run `mmbook data --download` or set MMBOOK_DATA")
    if found is not None:
        print(f"CIFAR-10 ({found[0]}) at {found[1]}")
    if args.verify or found is None:
        for split in ("train", "test"):
            images = load_cifar10(split, root=root, download=args.download)
            counts = images.labels.bincount(minlength=len(images.classes)).tolist()
            print(f"{split}: {len(images)} images, per class {counts}")
    return 0


def _device_from_flag(name: str):
    """The device that ``--device`` names (``auto`` picks CUDA, then MPS, then CPU)."""
    from mmbook.runtime import pick_device

    try:
        return pick_device(name)
    except ValueError as error:
        raise UsageError(f"--device: {error}") from None


def _settings(args: argparse.Namespace):
    """The :class:`mmbook.recipes.Settings` that the ``train`` flags ask for."""
    from dataclasses import fields

    from mmbook.recipes import Settings
    from mmbook.runtime import is_quick

    if args.resume and args.checkpoint is None:
        raise UsageError("--resume needs --checkpoint DIR")
    same_name = {f.name: getattr(args, f.name) for f in fields(Settings) if f.name not in ("quick", "device", "progress")}
    same_name["fusion_options"] = tuple(args.fusion_options or ())
    return Settings(quick=args.quick or is_quick(), device=_device_from_flag(args.device), progress=not args.no_progress,
                    **same_name)


def _train(args: argparse.Namespace) -> int:
    """``mmbook train --task NAME``: look the task up, run it, report."""
    from mmbook.recipes import TASKS

    task = TASKS[args.task]
    settings = _settings(args)
    try:
        task.check(settings)
        print(f"training {task.name} ({'quick' if settings.quick else 'full'} mode) on {settings.device}")
        started = time.perf_counter()
        run, facts = task.train(settings)
    except ValueError as error:  # a builder's or a checkpoint's complaint about the settings
        raise UsageError(str(error)) from None
    return report(task, settings, run, facts, time.perf_counter() - started, args.json)


def report(task, settings, run, facts: dict, wall_seconds: float, json_path: Path | None) -> int:
    """Print a run's headline figures and write its JSON (if ``json_path``); the one place results are written."""
    import torch

    from mmbook import distributed

    _, chosen = task.resolve(settings)
    history = run.history
    result = {
        "task": task.name, "quick": settings.quick, "seed": settings.seed, "device": str(settings.device),
        **chosen, **facts,
        "train_seconds": run.seconds, "wall_seconds": wall_seconds,
        "train_images_per_second": history.samples_per_second,
        "parameters": run.parameters, "torch": torch.__version__, "history": history.records,
        "processes": distributed.world_size(),
        **({"test_accuracy": history.last["test_accuracy"]} if len(history) and "test_accuracy" in history.last else {}),
        **run.metrics,
    }
    figures = " | ".join(f"{name} {value:.4f}" for name, value in run.metrics.items()
                         if isinstance(value, float) and name != "train_seconds")
    print(f"{figures} | {run.seconds:.1f} s training | {history.samples_per_second:.0f} samples/s")
    if json_path is not None and distributed.is_main_process():
        _write_json(json_path, result)
    return 0


def _write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))


def _bench(args: argparse.Namespace) -> int:
    """``mmbook bench loader``: one epoch of LeNet, the source's loop against mmbook's fast path."""
    from dataclasses import asdict

    from mmbook.bench import bench_loader
    from mmbook.data import load_cifar10
    from mmbook.runtime import environment_report, is_quick

    device = _device_from_flag(args.device)
    train_set = load_cifar10("train", quick=args.quick or is_quick(), root=args.data, download=args.download)
    print(environment_report(device))
    print(f"one epoch of LeNet on {len(train_set)} CIFAR-10 training images, two ways (this takes a while)")
    result = bench_loader(train_set.images, train_set.labels, device=device, baseline_images=args.baseline_images,
                          fast_batch_size=args.batch_size, amp={"auto": None, "on": True, "off": False}[args.amp])
    print(result.table())
    if args.json is not None:
        _write_json(args.json, {**asdict(result), "baseline_images_per_second": result.baseline_images_per_second,
                                "fast_images_per_second": result.fast_images_per_second, "ratio": result.ratio})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
