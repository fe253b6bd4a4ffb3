import pytest
import torch

from mmbook.text import PAD_ID, UNK_ID, Vocabulary, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("A red car, isn't it?") == ["a", "red", "car", "isn't", "it"]
    with pytest.raises(TypeError):
        tokenize(3)


def test_build_orders_by_frequency_and_reserves_pad_and_unk():
    vocab = Vocabulary.build(["b a a", "c a b"])
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c"]
    assert vocab.encode("a zebra c") == [2, UNK_ID, 4]
    assert Vocabulary.build(["a a b"], min_freq=2).itos == ["<pad>", "<unk>", "a"]


def test_encode_batch_right_pads_and_reports_lengths():
    vocab = Vocabulary.build(["one two three", "one"])
    ids, lengths = vocab.encode_batch(["one two three", "one", ""])
    assert ids.shape == (3, 3) and ids.dtype == torch.int64
    assert lengths.tolist() == [3, 1, 0]
    assert ids[1, 1:].tolist() == [PAD_ID, PAD_ID]
    assert vocab.encode_batch(["one two three"], max_len=2)[0].shape == (1, 2)


def test_round_trip_through_a_dict():
    vocab = Vocabulary.build(["x y z"])
    again = Vocabulary.from_dict(vocab.to_dict())
    assert again.itos == vocab.itos and again.decode(vocab.encode("z x")) == "z x"
    with pytest.raises(ValueError, match="<pad>"):
        Vocabulary.from_dict({"itos": ["x", "y"]})
