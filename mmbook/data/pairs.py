"""Your own image–text data: (image, text, label) pairs, or (image, text) pairs, from files or tensors.

:func:`load_pairs` reads a training split (and optionally a test split) from

* a CSV file or a JSON Lines file (``.csv``, ``.jsonl``; or ``.json`` holding a list) with one
  row per text: an image path (relative to the file's folder, or absolute), the text, the label;
* a folder ``<folder>/<label>/<name>.png`` (or ``.jpg``) with the texts of each image in
  ``<name>.txt`` beside it, one text per line;
* a list of dicts with the same three keys, or a dict of tensors / lists
  ``{"image": (N, C, H, W) or (M, C, H, W) with "image_id", "text": N strings, "label": N labels}``.

Caption-only data (image and text, no label: e.g. for contrastive training and retrieval) is
read with ``label_column=None``: rows need no label column, a folder's images may lie anywhere
below it, and the splits hold no labels.

Each distinct image is decoded once, centre-cropped to a square and resized to
``image_size``, and kept in an image *table* ``(M, 3, S, S)`` uint8; every text refers to its
image through ``image_id``, so an image with ten questions is stored once. Decoded tables are
cached in :func:`mmbook.data.cache_dir` through :func:`mmbook.data.cache.cached` (written
atomically: an error or an interruption never leaves a half-written cache).

The result, :class:`ImageTextPairs`, holds the splits (``split.tensors()`` is the batch dict
that :class:`~mmbook.data.DeviceLoader` and :func:`mmbook.training.fit` take), the text
:class:`~mmbook.text.Vocabulary` and the :class:`~mmbook.text.LabelVocabulary` (both built
from the training split; no label vocabulary for caption-only data), and the training images'
per-channel ``mean`` and ``std``.

Every error about the data says where (split, file, row) and what to do. Errors raised while
reading or encoding one of ``load_pairs``' sources carry an attribute ``argument``, ``"train"``
or ``"test"``: which argument holds the bad data (the command line uses it to name its flag).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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
        image_ids: int64 ``(N,)``, the row of ``images`` that text ``i`` belongs to; the texts of one
            image share its id, so ``image_ids`` groups them (e.g. as positives in retrieval).
        texts: ``N`` strings.
        tokens: int64 ``(N, T)``, the texts' ids, right-padded with 0.
        labels: int64 ``(N,)``, ids of the :class:`~mmbook.text.LabelVocabulary`; ``None`` for
            caption-only data (``load_pairs(..., label_column=None)``).
        sources: where each image came from (a path, or ``"tensor[k]"``), ``M`` strings.
    """

    images: torch.Tensor
    image_ids: torch.Tensor
    texts: list[str]
    tokens: torch.Tensor
    labels: torch.Tensor | None
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.image_ids.shape[0])

    @property
    def num_images(self) -> int:
        """``M``, the number of distinct images."""
        return int(self.images.shape[0])

    @property
    def has_labels(self) -> bool:
        """Whether the texts have labels (``False`` for caption-only data)."""
        return self.labels is not None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The batch-dict form, for :class:`~mmbook.data.DeviceLoader` (which gathers each batch's images by id).

        Keys and shapes:

        * ``"image"``: uint8 ``(M, 3, S, S)``, the image table (each distinct image once);
        * ``"image_id"``: int64 ``(N,)``, the row of ``"image"`` of each text;
        * ``"text"``: int64 ``(N, T)``, the token ids, right-padded with 0;
        * ``"label"``: int64 ``(N,)``, the class of each text; only when the data has labels.
        """
        tensors = {"image": self.images, IMAGE_ID: self.image_ids, "text": self.tokens}
        if self.labels is not None:
            tensors["label"] = self.labels
        return tensors

    def sample_images(self) -> torch.Tensor:
        """One image per text, ``(N, 3, S, S)`` uint8 (a copy per text: for plots and small sets only)."""
        return self.images.index_select(0, self.image_ids)


@dataclass
class ImageTextPairs:
    """What :func:`load_pairs` returns.

    Attributes:
        train, test: the splits (``test`` is ``None`` if none was given or split off).
        vocab: the text vocabulary, built from the training texts.
        label_vocab: the classes, from the training labels; ``label_vocab.classes[k]`` names label
            ``k``. ``None`` for caption-only data.
        image_size: the side ``S`` of every image.
        mean, std: per-channel statistics of the training images in ``[0, 1]``, for
            ``DeviceLoader(..., mean=data.mean, std=data.std)``.
    """

    train: PairSplit
    test: PairSplit | None
    vocab: Vocabulary
    label_vocab: LabelVocabulary | None
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def has_labels(self) -> bool:
        """Whether the pairs have labels (``False`` for caption-only data)."""
        return self.label_vocab is not None

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(label_vocab)``.

        Raises:
            ValueError: for caption-only data, which has no classes.
        """
        return len(self._labels())

    @property
    def classes(self) -> list[str]:
        """The class names in label order (a ``ValueError`` for caption-only data)."""
        return list(self._labels().classes)

    def _labels(self) -> LabelVocabulary:
        if self.label_vocab is None:
            raise ValueError("these pairs have no labels (loaded with label_column=None), so no classes; "
                             "load them with the label column to train a classifier")
        return self.label_vocab


@dataclass
class _Rows:
    """A split as read, before encoding: images (paths or a tensor table), image ids, texts, raw labels."""

    images: list[Path] | torch.Tensor
    image_ids: list[int]
    texts: list[str]
    labels: list[Any] | None
    origin: str
    argument: str  # the load_pairs argument the rows came from: "train" or "test"


class MissingColumnError(KeyError):
    """A row or a dict of tensors lacks a column that :func:`load_pairs` reads.

    Attributes:
        origin: where, e.g. ``"train file pairs.csv, row 3"``.
        missing: the missing column names.
        present: the columns (keys) that are there.
    """

    def __init__(self, origin: str, missing: Sequence[str], present: Sequence[str]) -> None:
        self.origin, self.missing, self.present = origin, list(missing), sorted(str(name) for name in present)
        super().__init__(str(self))

    def describe(self) -> str:
        """What is missing, without a remedy: ``"train file p.csv, row 3: no ['label'] column; it has [...]"``."""
        return f"{self.origin}: no {self.missing} column; it has {self.present}"

    def __str__(self) -> str:
        remedy = ("Name the columns with load_pairs(..., image_column=, text_column=, label_column=); "
                  "for data without labels pass label_column=None")
        return f"{self.describe()}. {remedy}"


@contextmanager
def _blame(argument: str) -> Iterator[None]:
    """Mark an error raised inside with ``error.argument = argument`` (``"train"`` or ``"test"``)."""
    try:
        yield
    except Exception as error:
        if not hasattr(error, "argument"):
            error.argument = argument
        raise


@dataclass(frozen=True)
class _Columns:
    """The column names :func:`load_pairs` reads; ``label`` is ``None`` for caption-only data."""

    image: str = "image"
    text: str = "text"
    label: str | None = "label"

    @property
    def names(self) -> list[str]:
        """The columns every row needs."""
        return [self.image, self.text] + ([] if self.label is None else [self.label])


def load_pairs(
    train: PairSource,
    test: PairSource | None = None,
    *,
    image_size: int = 64,
    test_fraction: float = 0.0,
    seed: int = 0,
    image_column: str = "image",
    text_column: str = "text",
    label_column: str | None = "label",
    min_freq: int = 1,
    max_len: int | None = None,
    cache: bool = True,
    progress: bool = False,
) -> ImageTextPairs:
    """Load (image, text, label) pairs, or caption-only (image, text) pairs, from files or tensors.

    See the module docstring for the formats.

    Args:
        train: the training pairs: a ``.csv`` / ``.jsonl`` / ``.json`` file, a folder, a list of
            row dicts, or a dict of tensors.
        test: the test pairs, in any of the same forms; labels must be training classes.
        image_size: the side ``S`` that every image is centre-cropped and resized to.
        test_fraction: with no ``test``, hold out this share of the *images* (with all their
            texts) as the test split, chosen at random with ``seed``; 0 keeps everything for training.
        image_column, text_column, label_column: the column (key) names in files and row dicts.
            ``label_column=None`` reads caption-only data: no labels, no label vocabulary, and
            ``split.tensors()`` without ``"label"``.
        min_freq: words seen fewer times in the training texts become ``<unk>``.
        max_len: truncate texts to this many tokens (default: the longest).
        cache: keep decoded image tables in :func:`mmbook.data.cache_dir` (keyed by the files'
            paths, sizes and modification times, and ``image_size``).
        progress: show a progress bar while decoding.

    Returns:
        An :class:`ImageTextPairs`; each split's ``tensors()`` is ``{"image": uint8 (M, 3, S, S),
        "image_id": int64 (N,), "text": int64 (N, T)}`` plus ``"label": int64 (N,)`` for labelled data.

    Raises:
        FileNotFoundError: a data file or an image file does not exist.
        CorruptDataError: an image file cannot be decoded.
        MissingColumnError: (a ``KeyError``) a row lacks one of the columns.
        ValueError: an empty text or label, a test label that is not a training class, lengths
            that do not match, a file that cannot be parsed, or a bad ``image_size`` / ``test_fraction``.
        Errors about the data carry ``error.argument``, ``"train"`` or ``"test"``.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (the side of the square images), got {image_size!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    if test is not None and test_fraction:
        raise ValueError("give either a test split or test_fraction, not both")
    columns = _Columns(image_column, text_column, label_column)
    with _blame("train"):
        train_rows = _read(train, "train", columns)
        # Classes come from the whole training source, so a rare class that lands only in the test part is no error.
        label_vocab = None if train_rows.labels is None else LabelVocabulary.build(train_rows.labels)
    test_rows = None
    if test is not None:
        with _blame("test"):
            test_rows = _read(test, "test", columns)
    elif test_fraction:
        with _blame("train"):
            train_rows, test_rows = _split_by_image(train_rows, test_fraction, seed)
    vocab = Vocabulary.build(train_rows.texts, min_freq=min_freq)
    splits = []
    for rows in (train_rows, test_rows):
        if rows is None:
            splits.append(None)
            continue
        with _blame(rows.argument):
            splits.append(_encode(rows, vocab, label_vocab, image_size, cache, progress))
    train_split, test_split = splits
    if max_len is not None:
        train_split.tokens = train_split.tokens[:, :max_len]
        if test_split is not None:
            test_split.tokens = test_split.tokens[:, :max_len]
    mean, std = image_statistics(train_split.images)
    return ImageTextPairs(train_split, test_split, vocab, label_vocab, image_size, mean, std)


# ---------------------------------------------------------------------------
# Reading rows.
# ---------------------------------------------------------------------------


def _read(source: PairSource, split: str, columns: _Columns) -> _Rows:
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.exists():
            layout = "<folder>/<label>/<image>.png" if columns.label is not None else "<folder>/<image>.png"
            raise FileNotFoundError(f"the {split} data {path} does not exist; give a .csv or .jsonl file, or a folder "
                                    f"{layout} with the texts in <image>.txt")
        if path.is_dir():
            return _read_folder(path, split, columns.label is not None)
        origin = f"{split} file {path}"
        suffix = path.suffix.lower()
        try:
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
                                raise ValueError(f"{origin}, line {number} is not JSON: {error}") from error
            elif suffix == ".json":
                try:
                    records = json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{origin} is not JSON: {error}") from error
                if not isinstance(records, list):
                    raise ValueError(f"{origin} must hold a JSON list of objects with keys {columns.names}")
            else:
                raise ValueError(f"cannot read {path}: expected a .csv, .jsonl or .json file, or a folder")
        except UnicodeDecodeError as error:
            raise ValueError(f"{origin} is not UTF-8 text ({error.reason} at byte {error.start}); "
                             f"save it as UTF-8") from error
        except csv.Error as error:
            raise ValueError(f"{origin} is not a readable CSV file: {error}") from error
        return _from_records(records, path.parent, origin, columns, split)
    if isinstance(source, Mapping):
        return _from_tensors(source, split, columns)
    if isinstance(source, Sequence):
        return _from_records(list(source), Path.cwd(), f"{split} rows", columns, split)
    raise TypeError(f"the {split} data must be a path, a list of row dicts or a dict of tensors, "
                    f"got {type(source).__name__}")


def _is_empty(value: Any) -> bool:
    """A missing value: ``None``, or a string of only white space."""
    return value is None or (isinstance(value, str) and not value.strip())


def _from_records(records: list, base: Path, origin: str, columns: _Columns, split: str) -> _Rows:
    if not records:
        raise ValueError(f"the {origin} holds no rows; expected one row per text with the columns {columns.names}")
    paths: dict[Path, int] = {}
    image_ids, texts = [], []
    labels: list[Any] | None = None if columns.label is None else []
    for number, record in enumerate(records, start=1):
        where = f"{origin}, row {number}"
        if not isinstance(record, Mapping):
            raise ValueError(f"{where}: expected an object with keys {columns.names}, got {record!r}")
        missing = [column for column in columns.names if column not in record]
        if missing:
            raise MissingColumnError(where, missing, [key for key in record if key is not None])
        if _is_empty(record[columns.image]):
            raise ValueError(f"{where}: the image path is empty; give every row its image file")
        path = Path(str(record[columns.image]).strip()).expanduser()
        path = path if path.is_absolute() else base / path
        image_ids.append(paths.setdefault(path, len(paths)))
        texts.append(str(record[columns.text]) if record[columns.text] is not None else "")
        if labels is not None:
            label = record[columns.label]
            if _is_empty(label):
                raise ValueError(f"{where}: the label {label!r} is empty; give every row a label or drop the row")
            if not isinstance(label, (str, int, float)):
                raise ValueError(f"{where}: the label {label!r} is not a text or a number; give one label per row")
            labels.append(label)
    return _Rows(list(paths), image_ids, texts, labels, origin, split)


def _read_folder(folder: Path, split: str, labelled: bool) -> _Rows:
    origin = f"{split} folder {folder}"
    records = []
    if labelled:
        images = [(class_dir.name, image) for class_dir in sorted(p for p in folder.iterdir() if p.is_dir())
                  for image in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)]
    else:  # caption-only: every image below the folder, at any depth
        images = [(None, image) for image in sorted(p for p in folder.rglob("*")
                                                    if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())]
    for label, image in images:
        text_file = image.with_suffix(".txt")
        if not text_file.exists():
            raise FileNotFoundError(f"{origin}: image {image} has no text file {text_file.name} beside it "
                                    f"(one text per line)")
        lines = [line.strip() for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"{origin}: {text_file} holds no text; write one text per line")
        records.extend({"image": str(image), "text": line, **({} if label is None else {"label": label})}
                       for line in lines)
    if not records:
        layout = "<folder>/<label>/<image>.png" if labelled else "<folder>/<image>.png"
        raise ValueError(f"{origin} holds no images; expected {layout} with <image>.txt beside it")
    return _from_records(records, folder, origin, _Columns(label="label" if labelled else None), split)


def _from_tensors(source: Mapping[str, Any], split: str, columns: _Columns) -> _Rows:
    origin = f"{split} tensors"
    missing = [column for column in columns.names if column not in source]
    if missing:
        raise MissingColumnError(f"the {origin}", missing, list(source))
    images = torch.as_tensor(source[columns.image])
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"the {origin}' images must be (N, 3, H, W) (or (N, 1, H, W)), got {tuple(images.shape)}")
    texts = [str(text) for text in source[columns.text]]
    labels = None
    if columns.label is not None:
        labels = source[columns.label]
        labels = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
        for number, label in enumerate(labels, start=1):
            if _is_empty(label):
                raise ValueError(f"the {origin}, sample {number}: the label {label!r} is empty; give every sample a "
                                 f"label or drop it")
    if IMAGE_ID in source:
        image_ids = [int(i) for i in torch.as_tensor(source[IMAGE_ID]).tolist()]
        if image_ids and (min(image_ids) < 0 or max(image_ids) >= images.shape[0]):
            raise ValueError(f"the {origin}' image_id values must index the {images.shape[0]} images, "
                             f"got {min(image_ids)}..{max(image_ids)}")
    else:
        image_ids = list(range(images.shape[0]))
    sizes = {"image_id" if IMAGE_ID in source else columns.image: len(image_ids), columns.text: len(texts)}
    if labels is not None:
        sizes[columns.label] = len(labels)
    if len(set(sizes.values())) != 1:
        per = "one text" + (" and one label" if labels is not None else "")
        raise ValueError(f"the {origin} have mismatched lengths {sizes}: give {per} per "
                         f"{'image_id' if IMAGE_ID in source else 'image'}")
    return _Rows(images, image_ids, texts, labels, origin, split)


def _split_by_image(rows: _Rows, fraction: float, seed: int) -> tuple[_Rows, _Rows]:
    """Hold out ``fraction`` of the images with all their texts."""
    count = len(rows.images)
    held = max(1, int(round(count * fraction)))
    if held >= count:
        raise ValueError(f"the {rows.origin} holds {count} image(s): holding out a share of {fraction} for testing "
                         f"leaves none for training; give more images or a separate test split")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    test_images = set(order[:held])
    parts = []
    for keep in (lambda i: i not in test_images, lambda i: i in test_images):
        old_images = [i for i in range(count) if keep(i)]
        new_id = {old: new for new, old in enumerate(old_images)}
        samples = [k for k, i in enumerate(rows.image_ids) if keep(i)]
        images = (rows.images[old_images] if isinstance(rows.images, torch.Tensor)
                  else [rows.images[i] for i in old_images])
        labels = None if rows.labels is None else [rows.labels[k] for k in samples]
        parts.append(_Rows(images, [new_id[rows.image_ids[k]] for k in samples], [rows.texts[k] for k in samples],
                           labels, rows.origin, rows.argument))
    return parts[0], parts[1]


# ---------------------------------------------------------------------------
# Encoding: texts and labels to ids, images to a uint8 table.
# ---------------------------------------------------------------------------


def _encode(rows: _Rows, vocab: Vocabulary, label_vocab: LabelVocabulary | None, image_size: int, cache: bool,
            progress: bool) -> PairSplit:
    for number, text in enumerate(rows.texts, start=1):
        if not tokenize(text):
            raise ValueError(f"{rows.origin}, row {number}: the text {text!r} is empty (it has no words); "
                             f"drop the row or give it a text")
    labels = None
    if rows.labels is not None and label_vocab is not None:
        ids = []
        for number, label in enumerate(rows.labels, start=1):
            if label not in label_vocab:
                shown = ", ".join(label_vocab.classes[:20]) + (", ..." if len(label_vocab) > 20 else "")
                raise ValueError(f"{rows.origin}, row {number}: label {label!r} is not one of the training classes "
                                 f"({shown}); drop or relabel the samples of classes the model is not trained on")
            ids.append(label_vocab.encode(label))
        labels = torch.tensor(ids, dtype=torch.int64)
    tokens, _ = vocab.encode_batch(rows.texts)
    if isinstance(rows.images, torch.Tensor):
        images, sources = _resize_tensor(rows.images, image_size), [f"tensor[{k}]" for k in range(len(rows.images))]
    else:
        images = _decode_table(rows.images, image_size, cache, progress, rows.origin)
        sources = [str(p) for p in rows.images]
    return PairSplit(images, torch.tensor(rows.image_ids, dtype=torch.int64), list(rows.texts), tokens, labels,
                     sources)


def _decode_table(paths: list[Path], image_size: int, cache: bool, progress: bool, origin: str) -> torch.Tensor:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{origin}: {len(missing)} image file(s) do not exist, e.g. {missing[:3]}; image "
                                f"paths in a CSV or JSON Lines file are relative to that file's folder (in a list of "
                                f"rows, to the current directory)")
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
