"""The ``mmbook`` command line: ``mmbook env``, ``mmbook data``, ``mmbook train``, ``mmbook bench``.

A bad flag value prints one line, ``mmbook: error: ...``, and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
# cifar10-captions: the worked example. cifar10: the CNN chapter's image-only models. scene-*: the
# objectives chapter's detection, grounding and role-tagging objectives on synthetic scenes (mmbook.scenes).
TASKS = ("cifar10-captions", "cifar10", "scene-detection", "scene-grounding", "scene-tagging")
IMAGE_MODELS = ("fastcnn", "lenet")  # --task cifar10 (the CNN chapter)


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


def _modalities(text: str) -> str:
    from mmbook.multimodal import parse_modalities

    try:
        return "+".join(parse_modalities(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``mmbook`` command."""
    from mmbook.fusion import FUSIONS
    from mmbook.text import TEXT_ENCODER_KINDS

    parser = _Parser(prog="mmbook", description="Tools for the mmbook textbook on multimodal deep learning.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("env", help="print the versions, device and mode in use")

    data = commands.add_parser("data", help="locate, verify or download CIFAR-10")
    data.add_argument("--root", type=Path, help="data directory (default: $MMBOOK_DATA or ~/.cache/mmbook/data)")
    data.add_argument("--download", action="store_true", help="download the official files if no copy is found")
    data.add_argument("--verify", action="store_true", help="decode every image and report the counts")

    train = commands.add_parser("train", help="train a model and report its test accuracy")
    train.add_argument("--task", choices=TASKS, default="cifar10-captions")
    train.add_argument("--modalities", type=_modalities, default=None,
                       help="image, text or image+text (default image+text; scene-detection: image)")
    train.add_argument("--fusion", choices=sorted(FUSIONS), default="concat")
    train.add_argument("--text-encoder", choices=list(TEXT_ENCODER_KINDS), default="rnn")
    train.add_argument("--epochs", type=_non_negative_int, default=None, help="default: 10 (quick: 8); scene tasks: 10 for detection, 8 otherwise (quick: 4)")
    train.add_argument("--batch-size", type=_positive_int, default=None, help="default: 128 (quick: 64)")
    train.add_argument("--model", choices=IMAGE_MODELS, default="fastcnn", help="image model for --task cifar10")
    train.add_argument("--recipe", choices=("cpu", "gpu", "gpu-93"), default=None,
                       help="fastcnn settings (default: gpu on CUDA, else cpu); gpu-93 reaches 93%% in 36 s on an H200")
    train.add_argument("--lr", type=_positive_float, default=None,
                       help="peak learning rate (default: 3e-3; fastcnn: 0.4, on CUDA 1.5)")
    train.add_argument("--caption-noise", type=_probability, default=0.1)
    train.add_argument("--label-smoothing", type=_probability, default=0.0, help="cifar10-captions: label smoothing")
    train.add_argument("--scenes", type=_positive_int, default=None,
                       help="scene-* tasks: training scenes (default 8000, quick 600; test scenes: at most 1000, quick 200)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--quick", action="store_true", help="quick mode: small subset, few epochs")
    train.add_argument("--data", type=Path, help="data directory (default: $MMBOOK_DATA)")
    train.add_argument("--download", action="store_true", help="download CIFAR-10 if no copy is found")
    train.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (default: on for CUDA)")
    train.add_argument("--channels-last", action="store_true")
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--checkpoint", type=Path, help="directory for a checkpoint after every epoch")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint")
    train.add_argument("--json", type=Path, help="write the results as a JSON object to this path")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")

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
    try:
        args = build_parser().parse_args(argv)
        if args.command == "env":
            return _env()
        if args.command == "data":
            return _data(args)
        if args.command == "bench":
            return _bench(args)
        if args.recipe is not None and (args.task != "cifar10" or args.model != "fastcnn"):
            raise UsageError("--recipe applies to --task cifar10 --model fastcnn only")
        if args.task == "cifar10":
            return _train_cifar10(args)
        if args.task.startswith("scene-"):
            return _train_scenes(args)
        return _train(args)
    except UsageError as error:
        print(f"mmbook: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _env() -> int:
    from mmbook.data import data_root, locate_cifar10
    from mmbook.runtime import environment_report

    print(environment_report())
    found = locate_cifar10()
    print(f"data: {data_root()} ({'CIFAR-10 ' + found[0] + ' at ' + str(found[1]) if found else 'no CIFAR-10 copy found'})")
    return 0


def _data(args: argparse.Namespace) -> int:
    from mmbook.data import DataNotFoundError, CorruptDataError, data_root, load_cifar10, locate_cifar10

    root = args.root or data_root()
    if args.root is not None and not args.root.is_dir() and not args.download:
        raise UsageError(f"--root {args.root}: no such directory")
    found = locate_cifar10(root)
    if found is None and not args.download:
        print(f"mmbook: error: no CIFAR-10 copy under {root}; run `mmbook data --download` or set MMBOOK_DATA", file=sys.stderr)
        return 1
    if found is not None:
        print(f"CIFAR-10 ({found[0]}) at {found[1]}")
    if args.verify or found is None:
        try:
            for split in ("train", "test"):
                images = load_cifar10(split, root=root, download=args.download)
                counts = images.labels.bincount(minlength=len(images.classes)).tolist()
                print(f"{split}: {len(images)} images, per class {counts}")
        except (DataNotFoundError, CorruptDataError) as error:
            print(f"mmbook: error: {error}", file=sys.stderr)
            return 1
    return 0


def _device_from_flag(name: str):
    """The device that ``--device`` names (``auto`` picks CUDA, then MPS, then CPU)."""
    from mmbook.runtime import pick_device

    try:
        return pick_device(name)
    except ValueError as error:
        raise UsageError(f"--device: {error}") from None


def _check_data_and_resume_flags(args: argparse.Namespace) -> None:
    """Flag checks that every training task shares; a bad value raises :class:`UsageError`."""
    if args.data is not None and not args.data.is_dir() and not args.download:
        raise UsageError(f"--data {args.data}: no such directory (point it at a folder holding cifar10/ or use --download)")
    if args.resume and args.checkpoint is None:
        raise UsageError("--resume needs --checkpoint DIR")


def _train(args: argparse.Namespace) -> int:
    import torch

    from mmbook.data import DataNotFoundError, CorruptDataError, DeviceLoader, load_captioned_cifar10
    from mmbook.multimodal import captioned_cifar_model
    from mmbook.runtime import is_quick, seed_everything
    from mmbook.training import fit

    quick = args.quick or is_quick()
    if args.modalities is None:
        args.modalities = "image+text"
    epochs = args.epochs if args.epochs is not None else (8 if quick else 10)
    batch_size = args.batch_size or (64 if quick else 128)
    _check_data_and_resume_flags(args)
    if args.fusion == "cross_attention" and args.modalities != "image+text":
        raise UsageError(f"--fusion cross_attention needs --modalities image+text, got {args.modalities}")
    if args.fusion == "two_stage" and (args.modalities != "image+text" or args.checkpoint is not None):
        raise UsageError("--fusion two_stage needs --modalities image+text and does not support --checkpoint")
    device = _device_from_flag(args.device)

    seed_everything(args.seed)
    try:
        data = load_captioned_cifar10(quick=quick, noise=args.caption_noise, seed=args.seed, root=args.data,
                                      download=args.download, progress=not args.no_progress)
    except (DataNotFoundError, CorruptDataError) as error:
        print(f"mmbook: error: {error}", file=sys.stderr)
        return 1
    model = captioned_cifar_model(args.modalities, len(data.caption_vocab), fusion=args.fusion, text_encoder=args.text_encoder)
    train_loader = DeviceLoader(data.train.tensors(), batch_size, shuffle=True, device=device, seed=args.seed,
                                channels_last=args.channels_last)
    test_loader = DeviceLoader(data.test.tensors(), 1000, device=device, channels_last=args.channels_last)
    print(f"training {args.modalities} ({args.fusion}) on {len(data.train)} images, {epochs} epochs, device {device}")
    started = time.perf_counter()
    history, stage1_seconds = None, 0.0
    if args.fusion == "two_stage":
        model, history, stage1_seconds = _train_two_stage(args, data, device, batch_size, epochs)
    try:
        if history is None:
            history = fit(model, train_loader, test_loader, epochs=epochs, lr=args.lr or 3e-3, device=device, amp=args.amp,
                          label_smoothing=args.label_smoothing,
                          channels_last=args.channels_last, compile=args.compile, checkpoint_dir=args.checkpoint,
                          resume=args.resume, progress=not args.no_progress,
                          extra_state={"caption_vocab": data.caption_vocab.to_dict(), "modalities": args.modalities,
                                       "fusion": args.fusion, "text_encoder": args.text_encoder})
    except ValueError as error:  # e.g. an unreadable checkpoint
        print(f"mmbook: error: {error}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    result = {
        "task": args.task,
        "modalities": args.modalities,
        "fusion": args.fusion,
        "text_encoder": args.text_encoder,
        "epochs": epochs,
        "batch_size": batch_size,
        "quick": quick,
        "seed": args.seed,
        "device": str(device),
        "train_images": len(data.train),
        "test_images": len(data.test),
        "train_seconds": history.train_seconds + stage1_seconds,  # two_stage: both stages
        "wall_seconds": wall,
        "train_images_per_second": sum(r["images_per_second"] * r["train_seconds"] for r in history.records) / history.train_seconds
        if history.train_seconds > 0 else 0.0,
        "test_accuracy": history.last["test_accuracy"] if len(history) else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": history.records,
        "torch": torch.__version__,
    }
    accuracy = result["test_accuracy"]
    print(f"test accuracy {accuracy:.4f} | {history.train_seconds:.1f} s training | "
          f"{result['train_images_per_second']:.0f} images/s" if accuracy is not None else "no epochs run")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _load_cifar10_or_fail(args: argparse.Namespace, quick: bool):
    """Both CIFAR-10 splits, or ``None`` after printing a one-line error."""
    from mmbook.data import CorruptDataError, DataNotFoundError, load_cifar10

    if args.data is not None and not args.data.is_dir() and not args.download:
        raise UsageError(f"--data {args.data}: no such directory (point it at a folder holding cifar10/ or use --download)")
    try:
        return tuple(load_cifar10(split, quick=quick, root=args.data, download=args.download) for split in ("train", "test"))
    except (DataNotFoundError, CorruptDataError) as error:
        print(f"mmbook: error: {error}", file=sys.stderr)
        return None


def _train_cifar10(args: argparse.Namespace) -> int:
    """``mmbook train --task cifar10 --model fastcnn|lenet``: the CNN chapter's image-only models."""
    import torch

    from mmbook.runtime import is_quick, seed_everything

    quick = args.quick or is_quick()
    if args.checkpoint is not None or args.resume:
        raise UsageError("--checkpoint/--resume are for --task cifar10-captions; cifar10 runs take minutes")
    if args.modalities is not None or args.fusion != "concat" or args.text_encoder != "rnn" or args.label_smoothing:
        raise UsageError("--modalities/--fusion/--text-encoder/--label-smoothing apply to --task cifar10-captions, not cifar10")
    device = _device_from_flag(args.device)
    splits = _load_cifar10_or_fail(args, quick)
    if splits is None:
        return 1
    train_set, test_set = splits
    train = {"image": train_set.images, "label": train_set.labels}
    test = {"image": test_set.images, "label": test_set.labels}
    seed_everything(args.seed)
    started = time.perf_counter()
    if args.model == "fastcnn":
        from mmbook.cnn import count_parameters
        from mmbook.fastcnn import FastCNNConfig, train_fastcnn

        # The recipe for the device (wider and longer on CUDA), then any flags the user gave.
        flags = {"epochs": args.epochs or (2 if quick else None), "batch_size": args.batch_size, "lr": args.lr}
        config = FastCNNConfig.for_device(device, recipe=args.recipe, amp=args.amp, channels_last=True,
                                          compile=args.compile, seed=args.seed,
                                          **{k: v for k, v in flags.items() if v is not None})
        print(f"training fastcnn on {len(train_set)} images, {config.epochs} epochs, device {device}")
        outcome = train_fastcnn(train, test, config, device=device, progress=not args.no_progress)
        epochs, batch_size, seconds = config.epochs, config.batch_size, outcome.train_seconds
        accuracy, images_per_second = outcome.test_accuracy_tta, outcome.images_per_second
        extra = {"test_accuracy_no_tta": outcome.test_accuracy, "history": outcome.history}
        parameters = count_parameters(outcome.model)
    else:
        from mmbook.cnn import ImageClassifier, LeNet, count_parameters
        from mmbook.data import DeviceLoader
        from mmbook.training import fit

        epochs, batch_size = args.epochs or (3 if quick else 15), args.batch_size or 256
        train_loader = DeviceLoader(train, batch_size, shuffle=True, augment=True, crop_padding=0, device=device,
                                    seed=args.seed, channels_last=True)
        test_loader = DeviceLoader(test, 1000, device=device, channels_last=True)
        model = ImageClassifier(LeNet())
        print(f"training lenet on {len(train_set)} images, {epochs} epochs, device {device}")
        history = fit(model, train_loader, test_loader, epochs=epochs, lr=args.lr or 3e-3, optimizer="adamw",
                      device=device, amp=args.amp, channels_last=True, compile=args.compile,
                      progress=not args.no_progress, description="lenet")
        seconds = history.train_seconds
        accuracy = history.last["test_accuracy"] if len(history) else None
        images_per_second = len(train_set) * len(history) / seconds if seconds > 0 else 0.0
        extra = {"history": history.records}
        parameters = count_parameters(model)
    wall = time.perf_counter() - started
    result = {"task": args.task, "model": args.model, "epochs": epochs, "batch_size": batch_size, "quick": quick,
              "seed": args.seed, "device": str(device), "train_images": len(train_set), "test_images": len(test_set),
              "train_seconds": seconds, "wall_seconds": wall, "train_images_per_second": images_per_second,
              "test_accuracy": accuracy, "parameters": parameters, "torch": torch.__version__, **extra}
    print(f"test accuracy {accuracy:.4f} | {seconds:.1f} s training | {images_per_second:.0f} images/s"
          if accuracy is not None else "no epochs run")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def _bench(args: argparse.Namespace) -> int:
    """``mmbook bench loader``: one epoch of LeNet, the source's loop against mmbook's fast path."""
    from mmbook.bench import bench_loader
    from mmbook.runtime import environment_report, is_quick

    device = _device_from_flag(args.device)
    splits = _load_cifar10_or_fail(args, args.quick or is_quick())
    if splits is None:
        return 1
    train_set = splits[0]
    print(environment_report(device))
    print(f"one epoch of LeNet on {len(train_set)} CIFAR-10 training images, two ways (this takes a while)")
    result = bench_loader(train_set.images, train_set.labels, device=device, baseline_images=args.baseline_images,
                          fast_batch_size=args.batch_size, amp={"auto": None, "on": True, "off": False}[args.amp])
    print(result.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "device": result.device, "baseline_images": result.baseline_images,
            "baseline_seconds": result.baseline_seconds, "baseline_images_per_second": result.baseline_images_per_second,
            "fast_images": result.fast_images, "fast_seconds": result.fast_seconds,
            "fast_images_per_second": result.fast_images_per_second, "fast_batch_size": result.fast_batch_size,
            "fast_amp": result.fast_amp, "ratio": result.ratio,
            "ceiling_images_per_second": result.ceiling_images_per_second}, indent=2))
    return 0


def _train_scenes(args: argparse.Namespace) -> int:
    """``mmbook train --task scene-detection|scene-grounding|scene-tagging``: an objective on synthetic scenes."""
    from mmbook.data import AugmentedLoader, CorruptDataError, DataNotFoundError, DeviceLoader
    from mmbook.objectives.tasks import DEFAULT_EPOCHS, SCENE_COUNTS, build_scene_task, scene_metrics
    from mmbook.runtime import is_quick, seed_everything
    from mmbook.scenes import load_scenes, scene_vocabulary
    from mmbook.training import fit

    quick = args.quick or is_quick()
    modalities = args.modalities or ("image" if args.task == "scene-detection" else "image+text")
    epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS[args.task][quick]
    batch_size = args.batch_size or 64
    train_count, test_count = SCENE_COUNTS[args.task][quick]
    if args.scenes is not None:
        train_count, test_count = args.scenes, min(test_count, args.scenes)
    _check_data_and_resume_flags(args)
    if args.label_smoothing:
        raise UsageError("--label-smoothing applies to --task cifar10-captions only")
    device = _device_from_flag(args.device)
    seed_everything(args.seed)
    try:
        task = build_scene_task(args.task, modalities, len(scene_vocabulary()))
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        train = load_scenes("train", train_count, seed=args.seed, quick=quick, min_objects=task.min_objects,
                            root=args.data, download=args.download, progress=not args.no_progress)
        test = load_scenes("test", test_count, seed=args.seed, quick=quick, min_objects=task.min_objects,
                           root=args.data, download=args.download, progress=not args.no_progress)
    except (DataNotFoundError, CorruptDataError) as error:
        print(f"mmbook: error: {error}", file=sys.stderr)
        return 1
    train_loader = DeviceLoader(train.tensors(), batch_size, shuffle=True, device=device, seed=args.seed)
    if task.augment is not None:
        train_loader = AugmentedLoader(train_loader, task.augment)
    test_loader = DeviceLoader(test.tensors(), 500, device=device)
    print(f"training {args.task} ({modalities}) on {len(train)} scenes, {epochs} epochs, device {device}")
    started = time.perf_counter()
    try:
        history = fit(task.model, train_loader, test_loader, epochs=epochs, lr=args.lr or 3e-3, device=device, amp=args.amp,
                      checkpoint_dir=args.checkpoint, resume=args.resume, progress=not args.no_progress,
                      loss_fn=task.loss_fn, accuracy_fn=task.accuracy_fn,
                      extra_state={"task": args.task, "modalities": modalities})
    except ValueError as error:
        print(f"mmbook: error: {error}", file=sys.stderr)
        return 1
    wall = time.perf_counter() - started
    metrics = scene_metrics(task, test_loader)
    seconds = history.train_seconds
    result = {
        "task": args.task, "modalities": modalities, "fusion": "film" if args.task == "scene-grounding" else
        ("cross-attention" if args.task == "scene-tagging" and modalities == "image+text" else "none"),
        "epochs": epochs, "batch_size": batch_size, "quick": quick, "seed": args.seed, "device": str(device),
        "train_images": len(train), "test_images": len(test), "train_seconds": seconds, "wall_seconds": wall,
        "train_images_per_second": len(history) * len(train) / seconds if seconds > 0 else 0.0,
        "test_accuracy": history.last["test_accuracy"] if len(history) else None,
        "parameters": sum(p.numel() for p in task.model.parameters()), "history": history.records,
        "torch": torch_version(), **metrics,
    }
    print(" | ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f" | {seconds:.1f} s training")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


def torch_version() -> str:
    import torch

    return torch.__version__


def _train_two_stage(args: argparse.Namespace, data, device, batch_size: int, epochs: int):
    """``--fusion two_stage``: unimodal models, a reliability estimator on held-out training data, then the fused model."""
    import torch

    from mmbook.data import DeviceLoader
    from mmbook.fusion import fit_two_stage
    from mmbook.multimodal import captioned_cifar_model

    tensors = data.train.tensors()
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(args.seed))
    heldout = len(order) // 10
    fit_part = {k: v[order[heldout:]] for k, v in tensors.items()}
    held_part = {k: v[order[:heldout]] for k, v in tensors.items()}
    unimodal = {name: captioned_cifar_model(name, len(data.caption_vocab), text_encoder=args.text_encoder)
                for name in ("image", "text")}
    result = fit_two_stage(
        unimodal,
        DeviceLoader(fit_part, batch_size, shuffle=True, device=device, seed=args.seed),
        DeviceLoader(held_part, 1000, device=device),
        DeviceLoader(data.test.tensors(), 1000, device=device),
        epochs=epochs, lr=args.lr or 3e-3, device=device, amp=args.amp, progress=not args.no_progress,
    )
    stage1_seconds = sum(h.train_seconds for h in result.unimodal_histories.values())
    return result.model, result.history, stage1_seconds


if __name__ == "__main__":
    raise SystemExit(main())
