"""The recipe behind ``mmbook train --task scene-captioning``: scenes with several references, a captioner, its report.

The image encoder is pretrained and frozen (:mod:`mmbook.generation.encoder`), so every scene's region
features ``(16, C)`` are computed once. One batch, from the loader to the loss: the loader gathers ``B``
scenes, each with its region features ``(16, C)`` and its ``K`` references ``(K, T)``;
:class:`~mmbook.generation.model.Captioner` reads each scene's regions once, reads every reference's words
but the last and predicts every next word, ``(B * K, T-1, V)``; :func:`~mmbook.generation.model.caption_loss`
is their cross-entropy.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmbook.generation.decoding import check_decoding, generate
from mmbook.generation.model import build_captioner, caption_loss, next_word_accuracy
from mmbook.generation.references import bos_eos_tokens

#: Quick and full defaults of :func:`train_scene_captioning` (the CLI reads them).
CAPTIONING_DEFAULTS: dict[bool, dict[str, Any]] = {
    False: {"scenes": 2000, "test_scenes": 1000, "epochs": 10, "batch_size": 32, "lr": 3e-3},
    True: {"scenes": 300, "test_scenes": 150, "epochs": 2, "batch_size": 32, "lr": 3e-3},
}
#: References written per scene (training and test).
REFERENCES_PER_SCENE = 5
#: Where a decoder's region features come from: the frozen pretrained encoder, or the scene's ground truth
#: (:func:`~mmbook.generation.encoder.oracle_region_features`, recognition solved).
REGION_SOURCES = ("encoder", "oracle")
#: The longest caption a decoder may write, in words.
MAX_CAPTION_WORDS = 30


def encode_references(captions: Sequence[str], vocab) -> torch.Tensor:
    """``<bos> words <eos>`` token ids ``(N, T)``, right-padded with 0; a word outside ``vocab`` is an error."""
    rows = []
    for caption in captions:
        ids = vocab.encode(caption)
        if not ids or 1 in ids:  # 1 is <unk>
            raise ValueError(f"caption {caption!r} is empty or holds words outside the vocabulary")
        rows.append(ids)
    return bos_eos_tokens(rows)


def caption_data(split: str, count: int, seed: int = 0, quick: bool = False, per_scene: int = REFERENCES_PER_SCENE,
                 root: Path | str | None = None, download: bool = False, regions: str = "encoder",
                 encoder: str = "small", mirror: bool = False):
    """Scenes, their references, and the loader dict of scenes with their references and region features.

    Returns ``(scenes, references, tensors)``: the :class:`~mmbook.data.scenes.SceneSet`, ``N`` lists of
    ``per_scene`` reference strings, and ``{"features": (N, 16, C), "text": (N, per_scene, T)}``: a sample
    is a scene with all its references. With ``regions="encoder"`` the features are those of the frozen
    encoder :func:`~mmbook.generation.encoder.pretrain_backbone` ``(seed, quick, encoder=encoder)``, averaged with
    those of the mirrored scene where ``mirror`` (:func:`~mmbook.generation.encoder.region_features`); with ``"oracle"`` they are
    the scene's ground truth, :func:`~mmbook.generation.encoder.oracle_region_features` ``(C = 11)``. Built once
    per process for the same arguments (everything is deterministic), whether they are passed by position or
    by name.
    """
    from mmbook.generation.encoder import check_encoder

    if regions not in REGION_SOURCES:
        raise ValueError(f"unknown region features {regions!r}; expected one of {', '.join(REGION_SOURCES)}")
    check_encoder(encoder)
    if regions == "oracle" and (encoder != "small" or mirror):
        raise ValueError("encoder and mirror choose how an encoder's regions are read; the oracle's regions come from "
                         "the scenes' ground truth: give regions='encoder', or leave encoder and mirror out")
    return _caption_data(split, count, seed, bool(quick), per_scene, root, download, regions, encoder, bool(mirror))


# Keyed on every argument in one order: lru_cache alone keys positional and keyword calls apart, so the pages'
# positional calls and the recipe's keyword calls would each build the same scenes and features again.
@functools.lru_cache(maxsize=8)
def _scenes_and_references(split: str, count: int, seed: int, quick: bool, per_scene: int, root: Path | str | None,
                           download: bool):
    from mmbook.data.scenes import load_scenes
    from mmbook.generation.references import scene_references

    scenes = load_scenes(split, count, seed=seed, quick=quick, root=root, download=download)
    return scenes, scene_references(scenes, per_scene=per_scene, seed=seed + (7 if split == "test" else 0))


@functools.lru_cache(maxsize=8)
def _caption_data(split: str, count: int, seed: int, quick: bool, per_scene: int, root: Path | str | None,
                  download: bool, regions: str, encoder: str, mirror: bool):
    from mmbook.generation.encoder import oracle_region_features, pretrain_backbone, region_features
    from mmbook.generation.references import generation_vocabulary

    scenes, references = _scenes_and_references(split, count, seed, quick, per_scene, root, download)
    flat = encode_references([caption for captions in references for caption in captions], generation_vocabulary())
    if regions == "oracle":
        features = oracle_region_features(scenes.boxes, scenes.classes)
    else:
        features = region_features(pretrain_backbone(seed, quick, root, download, encoder)[0], scenes.images,
                                   mirror=mirror)
    tensors = {"features": features,
               "text": flat.reshape(len(scenes), per_scene, -1)}
    return scenes, references, tensors


@functools.lru_cache(maxsize=4)
def reference_ceiling(split: str, count: int, seed: int = 0, quick: bool = False, root: Path | str | None = None,
                      download: bool = False) -> dict[str, float]:
    """:func:`~mmbook.generation.metrics.leave_one_out` of :func:`caption_data`'s references: how well one reference
    scores against the others, the ceiling of the data. Computed once per process for the same arguments."""
    from mmbook.generation.metrics import leave_one_out

    # the references alone: no region features (and no encoder) are needed for them
    return leave_one_out(_scenes_and_references(split, count, seed, bool(quick), REFERENCES_PER_SCENE, root,
                                                download)[1])


def evaluate_captions(captions: Sequence[str], references: Sequence[Sequence[str]], scenes,
                      training_captions: Sequence[str] | None = None) -> dict[str, float]:
    """Every figure of a set of generated captions: the metrics against the references
    (:func:`~mmbook.generation.metrics.caption_metrics`), hallucination against the scenes
    (:func:`~mmbook.generation.hallucination.hallucination_report`), diversity (``distinct_1``,
    ``distinct_2``, ``unique_captions``) and, given the training captions, ``novel_share``."""
    from mmbook.generation.hallucination import hallucination_report
    from mmbook.generation.metrics import caption_metrics, distinct_ngrams, novel_share

    report = dict(caption_metrics(captions, references))
    report.update(hallucination_report(captions, scenes))
    report.update({"distinct_1": distinct_ngrams(captions, 1), "distinct_2": distinct_ngrams(captions, 2),
                   "unique_captions": len(set(captions)) / len(captions),
                   "mean_words": sum(len(c.split()) for c in captions) / len(captions)})
    if training_captions is not None:
        report["novel_share"] = novel_share(captions, training_captions)
    return report


def train_scene_captioning(
    kind: str = "attention",
    *,
    scenes: int | None = None,
    test_scenes: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
    quick: bool = False,
    decoding: str = "greedy",
    decoding_options: dict[str, Any] | None = None,
    weight_decay: float = 1e-4,
    root: Path | str | None = None,
    download: bool = False,
    model_options: dict[str, Any] | None = None,
    model: torch.nn.Module | None = None,
    train_index: Sequence[int] | torch.Tensor | None = None,
    track_scenes: int = 0,
    regions: str = "encoder",
    encoder: str = "small",
    mirror: bool = False,
) -> dict[str, Any]:
    """Train a captioner on scenes with :data:`REFERENCES_PER_SCENE` references each, and judge its captions.

    Args:
        kind: the captioner, one of :data:`~mmbook.generation.model.CAPTIONERS` (``"blind"`` never sees the image).
        scenes, test_scenes, epochs, batch_size, lr: ``None`` takes :data:`CAPTIONING_DEFAULTS` ``[quick]``.
        model: a captioner built elsewhere to train instead of ``kind`` (e.g. a
            :class:`~mmbook.generation.prefix.PrefixCaptioner` over a pretrained language model); it is
            trained in place.
        train_index: train on these of the ``scenes`` training scenes only (e.g. a biased subset,
            :func:`~mmbook.generation.hallucination.cooccurrence_split`); ``None`` trains on all of them.
        track_scenes: after every epoch, decode the first ``track_scenes`` test scenes greedily and record in
            ``history`` their ``free_cider_d``, ``free_bleu_4``, ``free_chair_i`` and ``free_object_recall`` beside
            the teacher-forced ``test_loss`` and ``test_accuracy`` of all test scenes: how the loss the decoder is
            trained on and the captions it writes move together (exposure bias). 0 tracks nothing.
        regions: ``"encoder"`` (the frozen pretrained encoder's regions) or ``"oracle"`` (the scenes' ground
            truth, :func:`~mmbook.generation.encoder.oracle_region_features`: recognition solved); a captioner
            built here reads as many channels as the regions have.
        encoder: with ``regions="encoder"``, which image encoder of
            :data:`~mmbook.generation.encoder.ENCODERS` is pretrained and read: ``"small"`` (the pages') or
            ``"large"`` (several minutes of pretraining on a CPU; it recognises more of the objects).
        mirror: with ``regions="encoder"``, average every region's features with the mirrored scene's
            (:func:`~mmbook.generation.encoder.region_features`), for training and test scenes alike.
        decoding: ``"greedy"``, ``"beam"`` or ``"sample"`` (:func:`~mmbook.generation.decoding.generate`),
            with ``decoding_options`` (e.g. ``{"width": 3}``).

    The image encoder is pretrained on CIFAR-10 and frozen (:func:`~mmbook.generation.encoder.pretrain_backbone`);
    the decoder trains through :func:`mmbook.training.fit` with teacher forcing; after training,
    :func:`mmbook.training.evaluate` gives the teacher-forced loss and next-word accuracy on the test references. The test captions are decoded from the test scenes
    (CIFAR-10 test images, never seen in training).

    Returns:
        :func:`evaluate_captions`' keys (``bleu_4``, ``cider_d``, ``chair_i``, ``chair_s``, ``object_recall``,
        ``novel_share``, ...), the references' own agreement (``reference_cider_d``, ``reference_bleu_4``:
        one reference against the others), ``train_scenes``, ``test_scenes``, ``epochs``, ``train_seconds``,
        ``decode_seconds``, ``track_seconds`` (decoding while tracking), ``final_train_loss``, ``test_loss`` and
        ``test_next_word_accuracy`` (teacher-forced), ``regions``, the encoder's
        ``pretrain_accuracy``, ``pretrain_seconds``, ``encoder`` and ``mirror`` (with ``regions="encoder"``), and ``captions``,
        ``references``, ``test_set``, ``model``, ``history``.
    """
    from mmbook.data import DeviceLoader
    from mmbook.generation.encoder import pretrain_backbone
    from mmbook.generation.references import generation_vocabulary
    from mmbook.runtime import pick_device, seed_everything
    from mmbook.training import evaluate, fit

    defaults = CAPTIONING_DEFAULTS[bool(quick)]
    scenes = defaults["scenes"] if scenes is None else scenes
    test_scenes = defaults["test_scenes"] if test_scenes is None else test_scenes
    epochs = defaults["epochs"] if epochs is None else epochs
    batch_size = defaults["batch_size"] if batch_size is None else batch_size
    lr = defaults["lr"] if lr is None else lr
    device = pick_device(device)
    vocab = generation_vocabulary()
    check_decoding(decoding, len(vocab), decoding_options)  # a bad setting fails now, not after training
    _, train_references, train_tensors = caption_data("train", scenes, seed, quick, root=root, download=download,
                                                      regions=regions, encoder=encoder, mirror=mirror)
    test_set, test_references, test_tensors = caption_data("test", test_scenes, seed, quick, root=root,
                                                           download=download, regions=regions, encoder=encoder,
                                                           mirror=mirror)
    if train_index is not None:
        index = torch.as_tensor(train_index, dtype=torch.long).reshape(-1)
        if index.numel() == 0 or int(index.min()) < 0 or int(index.max()) >= scenes:
            raise ValueError(f"train_index must hold indices of the {scenes} training scenes (0..{scenes - 1}), "
                             f"got {index.numel()} indices" + (f" from {int(index.min())} to {int(index.max())}"
                                                                if index.numel() else ""))
        train_tensors = {name: values[index] for name, values in train_tensors.items()}
        train_references = [train_references[i] for i in index.tolist()]
    if not 0 <= track_scenes <= len(test_set):
        raise ValueError(f"track_scenes must be between 0 and the {len(test_set)} test scenes, got {track_scenes}")
    seed_everything(seed)
    if model is not None and model_options:
        raise ValueError("give model_options to build a captioner of `kind`, or a built `model`, not both")
    name = kind if model is None else type(model).__name__
    if model is None:
        model = build_captioner(kind, len(vocab), **{"features": train_tensors["features"].shape[-1],
                                                     **(model_options or {})})
    train_loader = DeviceLoader(train_tensors, batch_size, shuffle=True, drop_last=True, device=device, seed=seed)
    test_loader = DeviceLoader(test_tensors, 500, device=device, rank=0, world_size=1)
    track_seconds = 0.0

    def free_running(model: torch.nn.Module, epoch: int) -> dict[str, float]:
        nonlocal track_seconds
        started = time.perf_counter()
        captions = generate(model, test_tensors["features"][:track_scenes], vocab, "greedy", max_len=MAX_CAPTION_WORDS)
        figures = evaluate_captions(captions, test_references[:track_scenes], test_set.subset(torch.arange(track_scenes)))
        model.train()
        track_seconds += time.perf_counter() - started
        return {f"free_{key}": figures[key] for key in ("cider_d", "bleu_4", "chair_i", "object_recall")}

    tracking = {"test_loader": test_loader, "after_epoch": free_running} if track_scenes else {}
    history = fit(model, train_loader, epochs=epochs, lr=lr, weight_decay=weight_decay, device=device,
                  loss_fn=caption_loss, accuracy_fn=next_word_accuracy, max_grad_norm=1.0, progress=progress,
                  description=f"scene-captioning ({name})", **tracking)
    train_seconds = history.train_seconds
    test_figures = evaluate(model, test_loader, device, loss_fn=caption_loss, accuracy_fn=next_word_accuracy)
    started = time.perf_counter()
    captions = generate(model, test_tensors["features"], vocab, decoding, max_len=MAX_CAPTION_WORDS,
                        **(decoding_options or {}))
    decode_seconds = time.perf_counter() - started
    training_captions = [caption for captions_of in train_references for caption in captions_of]
    report: dict[str, Any] = evaluate_captions(captions, test_references, test_set, training_captions)
    ceiling = reference_ceiling("test", test_scenes, seed, quick, root=root, download=download)
    if regions == "encoder":
        report.update(pretrain_backbone(seed, quick, root, download, encoder)[1])
        report.update({"encoder": encoder, "mirror": mirror})
    report.update({
        "reference_bleu_4": ceiling["bleu_4"], "reference_cider_d": ceiling["cider_d"], "regions": regions,
        "train_scenes": len(train_references), "test_scenes": len(test_set), "track_seconds": track_seconds,
        "epochs": epochs, "batch_size": batch_size,
        "train_seconds": train_seconds, "decode_seconds": decode_seconds,
        "final_train_loss": history.last["train_loss"] if len(history) else float("nan"),
        "test_loss": test_figures["loss"], "test_next_word_accuracy": test_figures["accuracy"],
        "captions": captions, "references": test_references, "test_set": test_set,
        "model": model, "history": history,
    })
    return report
