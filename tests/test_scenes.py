"""Tests of the synthetic scene generator (mmbook.data.scenes), on random source images: no data files needed."""

from __future__ import annotations

import pytest
import torch

from mmbook.data import scenes
from mmbook.data.cifar10 import CIFAR10_CLASSES, ImageSet
from mmbook.objectives.tagging import bio_spans
from mmbook.data.scenes import CANVAS, MAX_OBJECTS, TAG_PAD, TAGS, load_scenes, make_scenes, scene_vocabulary


def _source(per_class: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(per_class)
    # Each class a distinct flat colour plus noise, so pasted objects can be located in the canvas.
    images = torch.randint(0, 256, (len(labels), 3, 32, 32), generator=generator, dtype=torch.uint8)
    return images, labels


@pytest.fixture(scope="module")
def scene_set():
    images, labels = _source()
    return make_scenes(300, images, labels, seed=3)


def test_shapes_and_counts(scene_set):
    n = len(scene_set)
    assert n == 300
    assert scene_set.images.shape == (n, 3, CANVAS, CANVAS) and scene_set.images.dtype == torch.uint8
    assert scene_set.boxes.shape == (n, MAX_OBJECTS, 4)
    assert scene_set.classes.shape == (n, MAX_OBJECTS)
    assert int(scene_set.counts.min()) >= 1 and int(scene_set.counts.max()) <= MAX_OBJECTS
    # 1..4 objects all occur.
    assert set(scene_set.counts.tolist()) == {1, 2, 3, 4}
    padded = torch.arange(MAX_OBJECTS)[None, :] >= scene_set.counts[:, None]
    assert bool((scene_set.classes[padded] == -1).all()) and bool((scene_set.classes[~padded] >= 0).all())
    assert bool((scene_set.target < scene_set.counts).all())


def test_boxes_inside_canvas_and_disjoint(scene_set):
    for boxes, count, classes in zip(scene_set.boxes, scene_set.counts, scene_set.classes):
        b = boxes[:count]
        assert bool((b[:, :2] >= 0).all()) and bool((b[:, 2:] <= CANVAS).all())
        sides = b[:, 2] - b[:, 0]
        assert bool((sides == b[:, 3] - b[:, 1]).all())
        assert bool((sides >= scenes.MIN_SIZE).all()) and bool((sides <= scenes.MAX_SIZE).all())
        for i in range(int(count)):
            for j in range(i + 1, int(count)):
                overlap_w = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0])
                overlap_h = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1])
                assert overlap_w <= 0 or overlap_h <= 0, "objects overlap"
        assert len(set(classes[:count].tolist())) == int(count), "classes in a scene must be distinct"


def test_objects_are_pasted_source_images():
    images, labels = _source(per_class=1)
    scene = make_scenes(1, images, labels, seed=0)
    box = scene.boxes[0, 0].long()
    side = int(box[2] - box[0])
    patch = scene.images[0, :, box[1]:box[3], box[0]:box[2]].float()
    label = int(scene.classes[0, 0])
    expected = torch.nn.functional.interpolate(images[labels == label].float(), size=(side, side), mode="bilinear",
                                               antialias=True, align_corners=False)[0]
    assert (patch - expected).abs().max() <= 1.0


def test_deterministic_and_seed_dependent():
    images, labels = _source()
    a = make_scenes(40, images, labels, seed=7)
    b = make_scenes(40, images, labels, seed=7)
    c = make_scenes(40, images, labels, seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.boxes, b.boxes)
    assert a.expressions == b.expressions and a.captions == b.captions
    assert not torch.equal(a.boxes, c.boxes)


def test_referring_expression_names_the_target(scene_set):
    names = list(CIFAR10_CLASSES)
    for i in range(len(scene_set)):
        words = scene_set.expressions[i].split()
        count = int(scene_set.counts[i])
        target = int(scene_set.target[i])
        classes = [names[c] for c in scene_set.classes[i, :count].tolist()]
        noun = words[1]
        if noun in names:
            assert noun == classes[target]
        elif noun in ("animal", "vehicle") and len(words) == 2:
            kinds = [scenes.KIND_OF[c] for c in classes]
            assert kinds.count(noun) == 1 and kinds[target] == noun
        elif len(words) == 3 and words[2] == "object":
            centres = (scene_set.boxes[i, :count, :2] + scene_set.boxes[i, :count, 2:]) / 2
            if noun == "leftmost":
                assert int(centres[:, 0].argmin()) == target
            if noun == "biggest":
                sides = scene_set.boxes[i, :count, 2] - scene_set.boxes[i, :count, 0]
                assert int(sides.argmax()) == target


def test_caption_tags(scene_set):
    vocab = scene_set.vocab
    for i in range(len(scene_set)):
        tags = [TAGS[t] for t in scene_set.caption_tags[i].tolist() if t != TAG_PAD]
        words = scene_set.captions[i].split()
        assert len(tags) == len(words) == int((scene_set.caption_tokens[i] != 0).sum())
        assert vocab.decode(scene_set.caption_tokens[i].tolist()) == scene_set.captions[i]
        spans = bio_spans(tags)
        count = int(scene_set.counts[i])
        present = {CIFAR10_CLASSES[c]: scene_set.boxes[i, j] for j, c in enumerate(scene_set.classes[i, :count].tolist())}
        entity_spans = [s for s in spans if s[0] in ("LEFT", "RIGHT", "ABSENT")]
        assert len(entity_spans) == 2
        for kind, start, end in entity_spans:
            name = words[end - 1]
            if kind == "ABSENT":
                assert name not in present
            else:
                box = present[name]
                centre_x = float(box[0] + box[2]) / 2
                assert (kind == "LEFT") == (centre_x < CANVAS / 2)
        assert sum(1 for s in spans if s[0] == "REL") == 1 and sum(1 for s in spans if s[0] == "LOC") == 1


def test_vocabulary_covers_all_text(scene_set):
    vocab = scene_vocabulary()
    assert len(vocab) == len(scene_set.vocab)
    assert int((scene_set.expression_tokens == 1).sum()) == 0  # no <unk>
    assert int((scene_set.caption_tokens == 1).sum()) == 0


def test_tensors_batch_dict(scene_set):
    tensors = scene_set.tensors()
    rows = torch.arange(len(scene_set))
    assert torch.equal(tensors["target_box"], scene_set.boxes[rows, scene_set.target])
    assert torch.equal(tensors["label"], scene_set.classes[rows, scene_set.target])
    assert len({int(t.shape[0]) for t in tensors.values()}) == 1
    sub = scene_set.subset(scene_set.counts >= 2)
    assert int(sub.counts.min()) >= 2 and len(sub.captions) == len(sub)


def test_min_objects_and_bad_arguments():
    images, labels = _source()
    many = make_scenes(30, images, labels, seed=0, min_objects=3)
    assert int(many.counts.min()) >= 3
    with pytest.raises(ValueError, match="num_scenes"):
        make_scenes(0, images, labels)
    with pytest.raises(ValueError, match="min_objects"):
        make_scenes(5, images, labels, min_objects=5)
    with pytest.raises(ValueError, match="uint8"):
        make_scenes(5, images.float(), labels)
    with pytest.raises(ValueError, match="lack classes"):
        make_scenes(5, images[labels < 5], labels[labels < 5])


def test_load_scenes_caches_safely(tmp_path, monkeypatch):
    images, labels = _source()
    calls = []

    def fake_load(split, **kwargs):
        calls.append(split)
        return ImageSet(images, labels, CIFAR10_CLASSES, "fake")

    monkeypatch.setattr(scenes, "load_cifar10", fake_load)
    monkeypatch.setenv("MMBOOK_CACHE", str(tmp_path))
    first = load_scenes("train", 20, seed=1)
    files = list(tmp_path.glob("scenes-train-20-*.pt"))
    assert len(files) == 1
    blob = torch.load(files[0], weights_only=True)  # plain tensors and strings only
    from mmbook.data.cache import CACHE_FORMAT

    assert blob["format"] == CACHE_FORMAT and blob["value"]["captions"] == first.captions
    again = load_scenes("train", 20, seed=1)
    assert torch.equal(first.images, again.images) and first.captions == again.captions
    test = load_scenes("test", 20, seed=1)
    assert not torch.equal(first.boxes, test.boxes)  # test scenes use another layout seed
    files[0].write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        rebuilt = load_scenes("train", 20, seed=1)
    assert torch.equal(rebuilt.images, first.images)
