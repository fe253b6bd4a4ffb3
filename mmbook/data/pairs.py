"""Your own image–text data: (image, text, label) pairs from files or tensors, in the book's batch-dict form.

:func:`load_pairs` reads a training split (and optionally a test split) from

* a CSV file or a JSON Lines file (``.csv``, ``.jsonl``; or ``.json`` holding a list) with one
  row per text: an image path (relative to the file's folder, or absolute), the text, the label;
* a folder ``<folder>/<label>/<name>.png`` (or ``.jpg``) with the texts of each image in
  ``<name>.txt`` beside it, one text per line;
* a list of dicts with the same three keys, or a dict of tensors / lists
  ``{"image": (N, C, H, W) or (M, C, H, W) with "image_id", "text": N strings, "label": N labels}``.

Each distinct image is decoded once, centre-cropped to a square and resized to
``image_size``, and kept in an image *table* ``(M, 3, S, S)`` uint8; every text refers to its
image through ``image_id``, so an image with ten questions is stored once. Decoded tables are
cached in :func:`mmbook.data.cache_dir` through :func:`mmbook.data.cache.cached` (written
atomically: an error or an interruption never leaves a half-written cache).

The result, :class:`ImageTextPairs`, holds the splits (``split.tensors()`` is the batch dict
that :class:`~mmbook.data.DeviceLoader` and :func:`mmbook.training.fit` take), the text
:class:`~mmbook.text.Vocabulary` and the :class:`~mmbook.text.LabelVocabulary` (both built
from the training split), and the training images' per-channel ``mean`` and ``std``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from mmbook.data.cache import cached
from mmbook.data.cifar10 import CorruptDataError, cache_dir
from mmbook.data.loaders import IMAGE_ID, image_statistics
from mmbook.text.vocab import LabelVocabulary, Vocabulary, tokenize

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_FORMAT = "pairs-v1"

#: What :func:`load_pairs` reads: a path (CSV, JSON Lines, folder), a list of row dicts, or a dict of tensors.
PairSource = Union[str, Path, Sequence[Mapping[str, Any]], Mapping[str, Any]]


@dataclass
class PairSplit:
    """One split of image–text pairs: ``N`` texts over ``M`` images.

    Attributes:
        images: the image table, uint8 ``(M, 3, S, S)``.
        image_ids: int64 ``(N,)``, the row of ``images`` that text ``i`` belongs to.
        texts: ``N`` strings.
        tokens: int64 ``(N, T)``, the texts' ids, right-padded with 0.
        labels: int64 ``(N,)``, ids of the :class:`~mmbook.text.LabelVocabulary`.
        sources: where each image came from (a path, or ``"tensor[k]"``), ``M`` strings.
    """

    images: torch.Tensor
    image_ids: torch.Tensor
    texts: list[str]
    tokens: torch.Tensor
    labels: torch.Tensor
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_images(self) -> int:
        """``M``, the number of distinct images."""
        return int(self.images.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        """The batch-dict form: ``{"image": (M, 3, S, S) uint8, "image_id": (N,), "text": (N, T), "label": (N,)}``.

        :class:`~mmbook.data.DeviceLoader` gathers each batch's images from the table by ``image_id``.
        """
        return {"image": self.images, IMAGE_ID: self.image_ids, "text": self.tokens, "label": self.labels}

    def sample_images(self) -> torch.Tensor:
        """One image per text, ``(N, 3, S, S)`` uint8 (a copy per text: for plots and small sets only)."""
        return self.images.index_select(0, self.image_ids)


@dataclass
class ImageTextPairs:
    """What :func:`load_pairs` returns.

    Attributes:
        train, test: the splits (``test`` is ``None`` if none was given or split off).
        vocab: the text vocabulary, built from the training texts.
        label_vocab: the classes, from the training labels; ``label_vocab.classes[k]`` names label ``k``.
        image_size: the side ``S`` of every image.
        mean, std: per-channel statistics of the training images in ``[0, 1]``, for
            ``DeviceLoader(..., mean=data.mean, std=data.std)``.
    """

    train: PairSplit
    test: PairSplit | None
    vocab: Vocabulary
    label_vocab: LabelVocabulary
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(label_vocab)``."""
        return len(self.label_vocab)

    @property
    def classes(self) -> list[str]:
        """The class names in label order."""
        return list(self.label_vocab.classes)


@dataclass
class _Rows:
    """A split as read, before encoding: images (paths or a tensor table), image ids, texts, raw labels."""

    images: list[Path] | torch.Tensor
    image_ids: list[int]
    texts: list[str]
    labels: list[Any]
    origin: str


def load_pairs(
    train: PairSource,
    test: PairSource | None = None,
    *,
    image_size: int = 64,
    test_fraction: float = 0.0,
    seed: int = 0,
    image_column: str = "image",
    text_column: str = "text",
    label_column: str = "label",
    min_freq: int = 1,
    max_len: int | None = None,
    cache: bool = True,
    progress: bool = False,
) -> ImageTextPairs:
    """Load (image, text, label) pairs from files or tensors (see the module docstring for the formats).

    Args:
        train: the training pairs: a ``.csv`` / ``.jsonl`` / ``.json`` file, a folder, a list of
            row dicts, or a dict of tensors.
        test: the test pairs, in any of the same forms; labels must be training classes.
        image_size: the side ``S`` that every image is centre-cropped and resized to.
        test_fraction: with no ``test``, hold out this share of the *images* (with all their
            texts) as the test split, chosen at random with ``seed``; 0 keeps everything for training.
        image_column, text_column, label_column: the column (key) names in files and row dicts.
        min_freq: words seen fewer times in the training texts become ``<unk>``.
        max_len: truncate texts to this many tokens (default: the longest).
        cache: keep decoded image tables in :func:`mmbook.data.cache_dir` (keyed by the files'
            paths, sizes and modification times, and ``image_size``).
        progress: show a progress bar while decoding.

    Returns:
        An :class:`ImageTextPairs`.

    Raises:
        FileNotFoundError: a data file or an image file does not exist.
        CorruptDataError: an image file cannot be decoded.
        KeyError: a file lacks one of the three columns.
        ValueError: an empty text, a test label that is not a training class, lengths that do
            not match, or a bad ``image_size`` / ``test_fraction``.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (the side of the square images), got {image_size!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    if test is not None and test_fraction:
        raise ValueError("give either a test split or test_fraction, not both")
    columns = (image_column, text_column, label_column)
    train_rows = _read(train, "train", columns)
    test_rows = _read(test, "test", columns) if test is not None else None
    if test_fraction:
        # Classes come from the whole file, so a rare class that lands only in the test part is no error.
        label_vocab = LabelVocabulary.build(train_rows.labels)
        train_rows, test_rows = _split_by_image(train_rows, test_fraction, seed)
    else:
        label_vocab = LabelVocabulary.build(train_rows.labels)
    vocab = Vocabulary.build(train_rows.texts, min_freq=min_freq)
    train_split = _encode(train_rows, vocab, label_vocab, image_size, cache, progress)
    test_split = _encode(test_rows, vocab, label_vocab, image_size, cache, progress) if test_rows else None
    if max_len is not None:
        train_split.tokens = train_split.tokens[:, :max_len]
        if test_split is not None:
            test_split.tokens = test_split.tokens[:, :max_len]
    mean, std = image_statistics(train_split.images)
    return ImageTextPairs(train_split, test_split, vocab, label_vocab, image_size, mean, std)


# ---------------------------------------------------------------------------
# Reading rows.
# ---------------------------------------------------------------------------


def _read(source: PairSource, split: str, columns: tuple[str, str, str]) -> _Rows:
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"the {split} data {path} does not exist; give a .csv or .jsonl file, or a folder "
                                    f"<folder>/<label>/<image>.png with the texts in <image>.txt")
        if path.is_dir():
            return _read_folder(path, split)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as handle:
                records = list(csv.DictReader(handle))
        elif suffix in (".jsonl", ".ndjson"):
            records = []
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if line.strip():
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError as error:
                            raise ValueError(f"{path} line {number} is not JSON: {error}") from error
        elif suffix == ".json":
            records = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(records, list):
                raise ValueError(f"{path} must hold a JSON list of objects with keys {list(columns)}")
        else:
            raise ValueError(f"cannot read {path}: expected a .csv, .jsonl or .json file, or a folder")
        return _from_records(records, path.parent, f"{split} file {path}", columns)
    if isinstance(source, Mapping):
        return _from_tensors(source, split, columns)
    if isinstance(source, Sequence):
        return _from_records(list(source), Path.cwd(), f"{split} rows", columns)
    raise TypeError(f"the {split} data must be a path, a list of row dicts or a dict of tensors, "
                    f"got {type(source).__name__}")


def _from_records(records: list, base: Path, origin: str, columns: tuple[str, str, str]) -> _Rows:
    if not records:
        raise ValueError(f"the {origin} holds no rows")
    image_column, text_column, label_column = columns
    paths: dict[Path, int] = {}
    image_ids, texts, labels = [], [], []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, Mapping):
            raise ValueError(f"{origin}, row {number}: expected an object with keys {list(columns)}, got {record!r}")
        missing = [column for column in columns if column not in record]
        if missing:
            raise KeyError(f"{origin}, row {number}: no {missing} column; it has {sorted(record)}. Name the columns "
                           f"with load_pairs(..., image_column=, text_column=, label_column=)")
        path = Path(str(record[image_column])).expanduser()
        path = path if path.is_absolute() else base / path
        image_ids.append(paths.setdefault(path, len(paths)))
        texts.append(str(record[text_column]) if record[text_column] is not None else "")
        labels.append(record[label_column])
    return _Rows(list(paths), image_ids, texts, labels, origin)


def _read_folder(folder: Path, split: str) -> _Rows:
    origin = f"{split} folder {folder}"
    records = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for image in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES):
            text_file = image.with_suffix(".txt")
            if not text_file.exists():
                raise FileNotFoundError(f"{origin}: image {image} has no text file {text_file.name} beside it "
                                        f"(one text per line)")
            lines = [line.strip() for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            if not lines:
                raise ValueError(f"{origin}: {text_file} holds no text; write one text per line")
            records.extend({"image": str(image), "text": line, "label": class_dir.name} for line in lines)
    if not records:
        raise ValueError(f"{origin} holds no images; expected <folder>/<label>/<image>.png with <image>.txt beside it")
    return _from_records(records, folder, origin, ("image", "text", "label"))


def _from_tensors(source: Mapping[str, Any], split: str, columns: tuple[str, str, str]) -> _Rows:
    image_column, text_column, label_column = columns
    origin = f"{split} tensors"
    missing = [column for column in columns if column not in source]
    if missing:
        raise KeyError(f"the {origin} have no {missing} entry; expected keys {list(columns)} (and optionally "
                       f"{IMAGE_ID!r}), got {sorted(source)}")
    images = torch.as_tensor(source[image_column])
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"the {origin}' images must be (N, 3, H, W) (or (N, 1, H, W)), got {tuple(images.shape)}")
    texts = [str(text) for text in source[text_column]]
    labels = source[label_column]
    labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    if IMAGE_ID in source:
        image_ids = [int(i) for i in torch.as_tensor(source[IMAGE_ID]).tolist()]
        if image_ids and (min(image_ids) < 0 or max(image_ids) >= images.shape[0]):
            raise ValueError(f"the {origin}' image_id values must index the {images.shape[0]} images, "
                             f"got {min(image_ids)}..{max(image_ids)}")
    else:
        image_ids = list(range(images.shape[0]))
    sizes = {"image_id" if IMAGE_ID in source else image_column: len(image_ids), text_column: len(texts),
             label_column: len(labels)}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the {origin} have mismatched lengths {sizes}: give one text and one label per "
                         f"{'image_id' if IMAGE_ID in source else 'image'}")
    return _Rows(images, image_ids, texts, labels, origin)


def _split_by_image(rows: _Rows, fraction: float, seed: int) -> tuple[_Rows, _Rows]:
    """Hold out ``fraction`` of the images with all their texts."""
    count = len(rows.images)
    held = max(1, int(round(count * fraction)))
    if held >= count:
        raise ValueError(f"test_fraction {fraction} leaves no training images out of {count}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    test_images = set(order[:held])
    parts = []
    for keep in (lambda i: i not in test_images, lambda i: i in test_images):
        old_images = [i for i in range(count) if keep(i)]
        new_id = {old: new for new, old in enumerate(old_images)}
        samples = [k for k, i in enumerate(rows.image_ids) if keep(i)]
        images = (rows.images[old_images] if isinstance(rows.images, torch.Tensor)
                  else [rows.images[i] for i in old_images])
        parts.append(_Rows(images, [new_id[rows.image_ids[k]] for k in samples], [rows.texts[k] for k in samples],
                           [rows.labels[k] for k in samples], rows.origin))
    return parts[0], parts[1]


# ---------------------------------------------------------------------------
# Encoding: texts and labels to ids, images to a uint8 table.
# ---------------------------------------------------------------------------


def _encode(rows: _Rows, vocab: Vocabulary, label_vocab: LabelVocabulary, image_size: int, cache: bool,
            progress: bool) -> PairSplit:
    for number, text in enumerate(rows.texts, start=1):
        if not tokenize(text):
            raise ValueError(f"{rows.origin}, row {number}: the text {text!r} is empty (it has no words); "
                             f"drop the row or give it a text")
    ids = []
    for number, label in enumerate(rows.labels, start=1):
        if label not in label_vocab:
            shown = ", ".join(label_vocab.classes[:20]) + (", ..." if len(label_vocab) > 20 else "")
            raise ValueError(f"{rows.origin}, row {number}: label {label!r} is not one of the training classes "
                             f"({shown}); drop or relabel the samples of classes the model is not trained on")
        ids.append(label_vocab.encode(label))
    tokens, _ = vocab.encode_batch(rows.texts)
    if isinstance(rows.images, torch.Tensor):
        images, sources = _resize_tensor(rows.images, image_size), [f"tensor[{k}]" for k in range(len(rows.images))]
    else:
        images, sources = _decode_table(rows.images, image_size, cache, progress), [str(p) for p in rows.images]
    return PairSplit(images, torch.tensor(rows.image_ids, dtype=torch.int64), list(rows.texts), tokens,
                     torch.tensor(ids, dtype=torch.int64), sources)


def _decode_table(paths: list[Path], image_size: int, cache: bool, progress: bool) -> torch.Tensor:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image file(s) do not exist, e.g. {missing[:3]}; image paths in a "
                                f"CSV or JSON Lines file are relative to that file's folder (in a list of rows, to "
                                f"the current directory)")
    if not cache:
        return _decode_files(paths, image_size, progress)
    digest = hashlib.sha256(f"{_FORMAT}:{image_size}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}\0".encode())
    key = digest.hexdigest()[:16]

    def valid(value) -> bool:
        return (isinstance(value, torch.Tensor) and value.dtype == torch.uint8
                and tuple(value.shape) == (len(paths), 3, image_size, image_size))

    return cached(cache_dir() / f"pairs-{image_size}px-{key}.pt", key,
                  lambda: _decode_files(paths, image_size, progress), valid)


def _decode_files(paths: list[Path], image_size: int, progress: bool) -> torch.Tensor:
    """Decode, centre-crop to a square, resize: ``(M, 3, S, S)`` uint8. Raises before anything is cached."""
    from tqdm.auto import tqdm

    table = np.empty((len(paths), image_size, image_size, 3), dtype=np.uint8)
    for k, path in enumerate(tqdm(paths, desc="decoding images", disable=not progress, leave=False)):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                side = min(image.size)
                left, top = (image.width - side) // 2, (image.height - side) // 2
                image = image.crop((left, top, left + side, top + side))
                if side != image_size:
                    image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
                table[k] = np.asarray(image)
        except (OSError, ValueError, SyntaxError) as error:  # PIL's errors for a damaged or foreign file
            raise CorruptDataError(f"cannot decode image {path}: {error.__class__.__name__}: {error}. "
                                   f"Replace or remove the file (and the rows that use it).") from error
    return torch.from_numpy(table).permute(0, 3, 1, 2).contiguous()


def _resize_tensor(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Tensor images ``(M, C, H, W)`` (uint8, or float in [0, 1]) -> uint8 ``(M, 3, S, S)``, centre-cropped square."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.is_floating_point():
        if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
            raise ValueError("float images must hold values in [0, 1]; give uint8 images 0..255 otherwise "
                             "(load_pairs computes the normalisation from the training images)")
        images = (images * 255).round().clamp(0, 255).to(torch.uint8)
    elif images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 0..255 or float in [0, 1], got {images.dtype}")
    height, width = images.shape[2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    images = images[:, :, top : top + side, left : left + side]
    if side != image_size:
        images = F.interpolate(images.float(), size=(image_size, image_size), mode="bicubic", antialias=True,
                               align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()
