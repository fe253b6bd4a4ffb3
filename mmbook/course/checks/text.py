"""Checkers for the exercises of ch04, text features (``ex-text-*``; the LSTM cell and attention checkers are in
:mod:`mmbook.text.checks`)."""

from __future__ import annotations

from collections.abc import Callable

from mmbook.exercises import _call, _fail, _tensor_close


def check_left_pad(function: Callable) -> None:
    """ex-text-left-padding: ``function(ids (N, T) right-padded, lengths (N,)) -> (N, T)`` left-padded ids."""
    import torch

    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 0, 0, 0, 0], [2, 3, 4, 5, 6]])
    lengths = torch.tensor([3, 1, 5])
    expected = torch.zeros_like(ids)
    for row, length in enumerate(lengths.tolist()):
        expected[row, ids.shape[1] - length:] = ids[row, :length]
    got = _call(function, "your left padding", ids.clone(), lengths.clone())
    _tensor_close(got, expected, "the left-padded ids", exact=True,
                  hint="each row's first `length` ids move, in order, to the end of a row of zeros", hints=[
        (ids.flip(1), "move the words, do not reverse them: the words keep their order"),
        (ids, "the padding should come first, then the words")])


def _cell_inputs(batch: int = 4, inputs: int = 5, hidden: int = 6, gates: int = 1, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, inputs, generator=generator)
    h = torch.randn(batch, hidden, generator=generator)
    weights = (torch.randn(gates * hidden, inputs, generator=generator) * 0.5,
               torch.randn(gates * hidden, hidden, generator=generator) * 0.5,
               torch.randn(gates * hidden, generator=generator), torch.randn(gates * hidden, generator=generator))
    return x, h, weights


def check_relu_rnn_cell(function: Callable) -> None:
    """ex-text-relu-rnn: ``function(x (B, I), h (B, H), weight_ih, weight_hh, bias_ih, bias_hh) -> (B, H)``."""
    import torch

    x, h, (w_ih, w_hh, b_ih, b_hh) = _cell_inputs()
    cell = torch.nn.RNNCell(5, 6, nonlinearity="relu")
    with torch.no_grad():
        for parameter, value in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), (w_ih, w_hh, b_ih, b_hh)):
            parameter.copy_(value)
        expected = cell(x, h)
    got = _call(function, "relu_rnn_cell", x, h, w_ih, w_hh, b_ih, b_hh)
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    _tensor_close(got, expected, "relu_rnn_cell's output",
                  hint="check the ReLU RNN step's formula and the weight layout (x @ W.T + b)", hints=[
        (torch.tanh(pre), "use max(0, .) (torch.relu), not tanh"),
        (torch.relu(x @ w_ih.T + b_ih + h @ w_hh.T), "add both biases, bias_ih and bias_hh")])


def check_paper_gru_cell(function: Callable) -> None:
    """ex-text-gru-cell: the GRU of Cho et al. (2014), reset gate *before* the recurrent product.

    ``function(x (B, I), h (B, H), weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,)) -> (B, H)``,
    gate order reset, update, new, as in ``torch.nn.GRU``.
    """
    import torch

    x, h, (w_ih, w_hh, b_ih, b_hh) = _cell_inputs(gates=3)
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=1)
    w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)
    b_hr, b_hz, b_hn = b_hh.chunk(3)
    r = torch.sigmoid(x_r + h @ w_hr.T + b_hr)
    z = torch.sigmoid(x_z + h @ w_hz.T + b_hz)
    paper_n = torch.tanh(x_n + (r * h) @ w_hn.T + b_hn)
    torch_n = torch.tanh(x_n + r * (h @ w_hn.T + b_hn))
    expected = (1 - z) * paper_n + z * h
    got = _call(function, "your GRU cell", x, h, w_ih, w_hh, b_ih, b_hh)
    _tensor_close(got, expected, "your GRU cell's output",
                  hint="check the gate order (reset, update, new), where the reset gate applies, and which state "
                       "the update gate keeps", hints=[
        ((1 - z) * torch_n + z * h, "that is PyTorch's form; apply the reset gate before the product: W_hn (r * h)"),
        (z * paper_n + (1 - z) * h, "the update gate z keeps the old state: h' = (1 - z) * n + z * h")])


def check_causal_mask(function: Callable) -> None:
    """ex-text-causal: ``function(T) -> (T, T)`` bool mask, True where attention is blocked (the future)."""
    import torch

    for steps in (4, 6, 1):
        expected = torch.triu(torch.ones(steps, steps, dtype=torch.bool), diagonal=1)
        got = _call(function, f"causal_mask({steps})", steps)
        if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
            _fail(f"causal_mask({steps}) should be a bool tensor (True = blocked), got {got.dtype}", None)
        _tensor_close(got, expected, f"causal_mask({steps})", exact=True,
                      hint="True marks the positions a token may not attend to: those later than itself", hints=[
            (~expected, "True marks the *blocked* positions for nn.MultiheadAttention: the future, above the diagonal"),
            (torch.triu(torch.ones(steps, steps, dtype=torch.bool)), "a token may attend to itself: the diagonal must not be blocked")])


def check_reverse_real_tokens(function: Callable) -> None:
    """ex-text-reverse: ``function(tokens (N, T) right-padded, lengths (N,)) -> (N, T)``, real tokens reversed."""
    import torch

    tokens = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0], [2, 3, 4, 5, 6]])
    lengths = torch.tensor([3, 2, 5])
    expected = torch.zeros_like(tokens)
    for row, length in enumerate(lengths.tolist()):
        expected[row, :length] = tokens[row, :length].flip(0)
    got = _call(function, "reverse_real_tokens", tokens.clone(), lengths.clone())
    _tensor_close(got, expected, "the reversed captions", exact=True,
                  hint="reverse the first `length` tokens of each row and leave the padding where it is", hints=[
        (tokens.flip(1), "reverse only the real tokens: the padding must stay at the end"),
        (tokens, "nothing was reversed")])
