"""Tests for mmbook.text: the TextEncoder family, the memory task and the exercise checkers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmbook.cli import build_parser, main
from mmbook.multimodal import captioned_cifar_model
from mmbook.text import (
    RECURRENT_KINDS, TEXT_ENCODER_KINDS, MemoryTaskGenerator, PositionalEncoding, TextClassifier, TextEncoder,
    TokenEncoder, UNK_ID, check_attention, check_gru_cell, check_lstm_cell, check_rnn_cell, make_memory_task, predict_text, trim_padding,
)
from mmbook.recipes import train_text_classifier
from mmbook.text.memory import MEMORY_OPENINGS, TEST_OFFSET

VOCAB = 30


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is faster, and immune to a busy machine's thread contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tokens() -> torch.Tensor:
    """Three right-padded texts of lengths 4, 2 and 5: ``(3, 5)``."""
    return torch.tensor([[5, 6, 7, 8, 0], [3, 9, 0, 0, 0], [2, 4, 6, 8, 10]])


def _encoder(kind: str, **kwargs) -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(VOCAB, kind=kind, embed_dim=8, hidden_size=16, out_features=6, **kwargs).eval()


@pytest.mark.parametrize("kind", TEXT_ENCODER_KINDS)
def test_padding_invariance_all_kinds(kind):
    encoder = _encoder(kind)
    tokens = _tokens()
    with torch.no_grad():
        features = encoder(tokens)
        padded = encoder(torch.cat([tokens, torch.zeros(3, 11, dtype=torch.long)], dim=1))
        alone = encoder(tokens[1:2, :2])  # the second text without any padding
    assert features.shape == (3, 6)
    torch.testing.assert_close(padded, features, atol=1e-5, rtol=0)
    torch.testing.assert_close(alone, features[1:2], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", TEXT_ENCODER_KINDS)
def test_padding_invariance_in_training_mode_and_gradients(kind):
    encoder = _encoder(kind).train()
    tokens = _tokens()
    features = encoder(tokens)
    padded = encoder(torch.cat([tokens, torch.zeros(3, 4, dtype=torch.long)], dim=1))
    torch.testing.assert_close(padded, features, atol=1e-5, rtol=0)
    features.sum().backward()
    assert encoder.embedding.weight.grad is not None
    assert torch.all(encoder.embedding.weight.grad[0] == 0)  # <pad> never learns


@pytest.mark.parametrize("kind", sorted(RECURRENT_KINDS))
def test_bidirectional_recurrent(kind):
    encoder = _encoder(kind, bidirectional=True)
    encoder.proj = nn.Identity()
    tokens = _tokens()
    with torch.no_grad():
        features = encoder(tokens)
        padded = encoder(torch.cat([tokens, torch.zeros(3, 3, dtype=torch.long)], dim=1))
        # The backward direction's final state is its output at the first token of an unpadded text.
        outputs, _ = encoder.rnn(encoder.embedding(tokens[2:3]))
    assert features.shape == (3, 32)
    torch.testing.assert_close(padded, features, atol=1e-5, rtol=0)
    torch.testing.assert_close(features[2, 16:], outputs[0, 0, 16:], atol=1e-5, rtol=0)
    torch.testing.assert_close(features[2, :16], outputs[0, -1, :16], atol=1e-5, rtol=0)


def test_transformer_rejects_bidirectional():
    with pytest.raises(ValueError, match="bidirectional applies to the recurrent kinds"):
        TextEncoder(VOCAB, kind="transformer", bidirectional=True)


@pytest.mark.parametrize("kind", sorted(RECURRENT_KINDS))
def test_recurrent_matches_torch_nn_on_unpadded_text(kind):
    encoder = _encoder(kind)
    tokens = _tokens()[2:3]  # no padding
    with torch.no_grad():
        _, hidden = encoder.rnn(encoder.embedding(tokens))
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        expected = encoder.proj(hidden[-1])
        torch.testing.assert_close(encoder(tokens), expected, atol=1e-5, rtol=0)


def test_transformer_matches_torch_nn_layers():
    encoder = _encoder("transformer")
    tokens = _tokens()[2:3]
    with torch.no_grad():
        x = encoder.input_proj(encoder.embedding(tokens)) + encoder.positions.code[:5]
        for layer in encoder.transformer.layers:
            x = layer(x)
        expected = encoder.proj(encoder.norm(x).mean(dim=1))
        torch.testing.assert_close(encoder(tokens), expected, atol=1e-5, rtol=0)


def test_positional_encoding_formula():
    code = PositionalEncoding(6, max_len=10).code
    t, i = 7, 2
    assert abs(code[t, 2 * i].item() - torch.sin(torch.tensor(t / 10000 ** (2 * i / 6))).item()) < 1e-6
    assert abs(code[t, 2 * i + 1].item() - torch.cos(torch.tensor(t / 10000 ** (2 * i / 6))).item()) < 1e-6
    with pytest.raises(ValueError, match="longer than the 10 positions"):
        PositionalEncoding(6, max_len=10)(torch.zeros(1, 11, 6))


def test_attention_maps_ignore_padding():
    encoder = _encoder("transformer", num_layers=2, num_heads=2)
    maps = encoder.attention_maps(_tokens())
    assert maps.shape == (2, 3, 2, 5, 5)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 3, 2, 5))
    assert torch.all(maps[:, 1, :, :, 2:] == 0)  # text 1 has 2 real tokens
    with pytest.raises(ValueError, match="only for kind='transformer'"):
        _encoder("gru").attention_maps(_tokens())


def test_all_padding_text_gives_finite_features():
    for kind in TEXT_ENCODER_KINDS:
        features = _encoder(kind)(torch.zeros(2, 4, dtype=torch.long))
        assert torch.isfinite(features).all(), kind


@pytest.mark.parametrize("kind", TEXT_ENCODER_KINDS)
def test_bad_input_errors(kind):
    encoder = _encoder(kind)
    tokens = _tokens()
    with pytest.raises(TypeError, match="integer token ids"):
        encoder(tokens.float())
    with pytest.raises(ValueError, match=r"must lie in 0\.\.29"):
        encoder(torch.tensor([[3, VOCAB]]))
    with pytest.raises(ValueError, match="shape \\(B, T\\)"):
        encoder(tokens[0])
    with pytest.raises(ValueError, match="right-padded"):
        encoder(torch.tensor([[0, 4, 5]]))
    with pytest.raises(ValueError, match=r"lengths disagree .* text 1 has 2 tokens .* lengths\[1\] = 3"):
        encoder(tokens, lengths=torch.tensor([4, 3, 5]))
    with pytest.raises(ValueError, match=r"lengths must have shape \(B,\) = \(3,\)"):
        encoder(tokens, lengths=torch.tensor([4, 2]))
    with pytest.raises(TypeError, match="lengths must be an integer tensor"):
        encoder(tokens, lengths=torch.tensor([4.0, 2.0, 5.0]))
    # Correct lengths are accepted and change nothing.
    with torch.no_grad():
        torch.testing.assert_close(encoder(tokens, lengths=torch.tensor([4, 2, 5])), encoder(tokens))


def test_constructor_errors():
    with pytest.raises(ValueError, match="unknown text encoder kind 'cnn'.*transformer"):
        TextEncoder(VOCAB, kind="cnn")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TextEncoder(VOCAB, kind="transformer", hidden_size=10, num_heads=4)
    encoder = TextEncoder(VOCAB, kind="transformer", out_features=None, hidden_size=16)
    assert encoder.out_features == 16 and encoder(_tokens()).shape == (3, 16)


@pytest.mark.parametrize("kind", TEXT_ENCODER_KINDS)
def test_worked_example_model_accepts_every_kind(kind):
    torch.manual_seed(0)
    model = captioned_cifar_model("image+text", VOCAB, text_encoder=kind)
    batch = {"image": torch.randn(2, 3, 32, 32), "text": _tokens()[:2]}
    assert model(batch).shape == (2, 10)
    assert model.encoders["text"].kind == kind


def test_cli_accepts_every_kind_and_rejects_others(capsys):
    for kind in TEXT_ENCODER_KINDS:
        assert build_parser().parse_args(["train", "--text-encoder", kind]).text_encoder == kind
    assert main(["train", "--text-encoder", "cnn"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "transformer" in error


# ---------------------------------------------------------------- memory task

def test_memory_task_is_deterministic_and_order_free():
    generator = MemoryTaskGenerator(8, 30, seed=3)
    a = generator.make(20)
    b = MemoryTaskGenerator(8, 30, seed=3).make(20)
    assert a.texts == b.texts and torch.equal(a.labels, b.labels) and torch.equal(a.tokens, b.tokens)
    # Example i does not depend on how many are made or where the batch starts.
    assert generator.make(5, start=10).texts == a.texts[10:15]
    assert MemoryTaskGenerator(8, 30, seed=4).make(20).texts != a.texts


def test_memory_task_content():
    train, test, vocab = make_memory_task(200, 50, min_words=6, max_words=25, seed=0)
    assert train.tokens.shape[0] == 200 and test.tokens.shape[0] == 50
    assert int((train.tokens == UNK_ID).sum()) == 0  # the vocabulary covers every word
    assert 6 <= int(train.lengths.min()) and int(train.lengths.max()) <= 25
    assert torch.equal(train.lengths, (train.tokens != 0).sum(1))
    for text, label, key in zip(train.texts, train.labels.tolist(), train.key_positions.tolist()):
        words = text.split()
        assert words[key] == train.classes[label] and key <= 4
        # The class is named once, at the start: no later word is a class name.
        assert not set(words[key + 1:]) & set(train.classes)
    assert set(train.labels.tolist()) == set(range(10))
    assert len(MEMORY_OPENINGS) >= 3
    assert set(train.tensors()) == {"text", "label"}


def test_memory_task_test_split_is_disjoint_by_index():
    generator = MemoryTaskGenerator(6, 40, seed=0)
    train, test, _ = make_memory_task(30, 30, 6, 40, seed=0)
    assert test.texts == generator.make(30, start=TEST_OFFSET).texts
    assert train.texts == generator.make(30).texts


def test_memory_task_errors():
    with pytest.raises(ValueError, match="6 <= min_words <= max_words"):
        MemoryTaskGenerator(4, 10)
    with pytest.raises(ValueError, match="6 <= min_words <= max_words"):
        MemoryTaskGenerator(12, 10)
    with pytest.raises(ValueError, match="n must be positive"):
        MemoryTaskGenerator().make(0)


# ---------------------------------------------------------------- checkers

def _rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def _lstm_cell(x, state, w_ih, w_hh, b_ih, b_hh):
    h, c = state
    i, f, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    xr, xz, xn = (x @ w_ih.T + b_ih).chunk(3, dim=1)
    hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, dim=1)
    r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def _attention(q, k, v, key_padding_mask=None):
    scores = q @ k.transpose(1, 2) / q.shape[-1] ** 0.5
    if key_padding_mask is not None:
        scores = scores.masked_fill(key_padding_mask.unsqueeze(1), float("-inf"))
    weights = scores.softmax(-1)
    return weights @ v, weights


def test_checkers_accept_correct_implementations(capsys):
    check_rnn_cell(_rnn_cell)
    check_lstm_cell(_lstm_cell)
    check_gru_cell(_gru_cell)
    check_attention(_attention)
    assert capsys.readouterr().out.count("All checks passed") == 4


def test_checkers_reject_wrong_implementations():
    def lstm_swapped_gates(x, state, w_ih, w_hh, b_ih, b_hh):
        h, c = state
        f, i, g, o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=1)  # forget and input swapped
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c

    with pytest.raises(AssertionError, match="c_next differs from torch.nn by up to .*gate order"):
        check_lstm_cell(lstm_swapped_gates)
    with pytest.raises(AssertionError, match="should return a pair"):
        check_lstm_cell(lambda x, state, *w: state[0])
    with pytest.raises(AssertionError, match="should have shape"):
        check_rnn_cell(lambda x, h, *w: _rnn_cell(x, h, *w).T)
    with pytest.raises(AssertionError, match="your function raised"):
        check_gru_cell(lambda x, h, w_ih, w_hh, b_ih, b_hh: x @ w_hh)
    with pytest.raises(AssertionError, match="with padding mask: weights differs"):
        check_attention(lambda q, k, v, mask=None: _attention(q, k, v, None))
    with pytest.raises(AssertionError, match="no padding mask: weights differs"):
        check_attention(lambda q, k, v, mask=None: _attention(q * q.shape[-1] ** 0.5, k, v, mask))


# ---------------------------------------------------------------- training helper

def _tiny_run(kind: str):
    train, test, vocab = make_memory_task(64, 32, 6, 10, seed=0)
    torch.manual_seed(0)
    model = TextClassifier(TextEncoder(len(vocab), kind=kind, embed_dim=8, hidden_size=8, num_heads=2), 10)
    run = train_text_classifier(model, train.tokens, train.labels, epochs=2, batch_size=16, device="cpu",
                                progress=False)
    return model, run, train, test


@pytest.mark.parametrize("kind", ["gru", "transformer"])
def test_train_text_classifier_is_deterministic(kind):
    model_a, report_a, train, test = _tiny_run(kind)
    model_b, report_b, _, _ = _tiny_run(kind)
    losses = report_a.history.column("train_loss")
    assert losses == report_b.history.column("train_loss") and len(losses) == 2
    assert report_a.model is model_a
    assert report_a.metrics["train_tokens"] == 2 * int(train.lengths.sum())
    assert report_a.metrics["tokens_per_second"] > 0
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(a, b)
    predictions = predict_text(model_a, test.tokens, batch_size=10)
    assert predictions.shape == (32,) and predictions.dtype == torch.int64


def test_trim_padding_drops_only_columns_no_sequence_uses():
    tokens = torch.tensor([[4, 5, 0, 0, 0], [6, 0, 0, 0, 0]])
    assert torch.equal(trim_padding(tokens), tokens[:, :2])
    assert trim_padding(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 1)  # all padding keeps one column


def test_train_text_classifier_errors():
    model = TextClassifier(TextEncoder(VOCAB, kind="rnn"), 3)
    with pytest.raises(ValueError, match=r"expected tokens \(N, T\) and labels \(N,\)"):
        train_text_classifier(model, _tokens(), torch.zeros(2, dtype=torch.long), epochs=1, progress=False)
    with pytest.raises(ValueError, match="epochs and batch_size must be positive"):
        train_text_classifier(model, _tokens(), torch.zeros(3, dtype=torch.long), epochs=0, progress=False)


@pytest.mark.parametrize("build", [lambda: TextEncoder(VOCAB, kind="gru"), lambda: TokenEncoder(VOCAB, kind="gru")])
def test_token_values_are_checked_on_the_first_batch_only(build, monkeypatch):
    import mmbook.text.encoders as encoders

    encoder = build()
    with pytest.raises(ValueError, match=rf"token ids must lie in 0..{VOCAB - 1}"):
        encoder(torch.tensor([[1, VOCAB + 3, 0]]))  # ids from another vocabulary: caught at once
    with pytest.raises(ValueError, match="right-padded"):
        encoder(torch.tensor([[0, 4, 5]]))  # left padding: caught too, the first batch failed
    reads = []
    real_min = torch.Tensor.min
    monkeypatch.setattr(torch.Tensor, "min", lambda self, *a, **k: reads.append(1) or real_min(self, *a, **k))
    encoder(_tokens())  # the first good batch is checked in full...
    encoder(_tokens())  # ...the next ones only for type and shape, without reading values back
    assert len(reads) == 1
    with pytest.raises(TypeError, match="integer token ids"):
        encoder(_tokens().float())
    encoder.recheck_inputs()
    with pytest.raises(ValueError, match="token ids must lie"):
        encoder(torch.tensor([[1, VOCAB, 0]]))
