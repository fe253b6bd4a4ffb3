"""Checkers for the text chapter's exercises.

Each checker runs the reader's function on a few random cases, compares it with
``torch.nn`` and either prints ``All checks passed`` or raises ``AssertionError``
with a message that says which case failed and how. Weights follow PyTorch's
layout, so a reader can test a cell written from scratch against ``nn.LSTM`` etc.

Gate order in the stacked weights (as in ``torch.nn``)::

    RNN   weight_ih (H, I)
    LSTM  weight_ih (4H, I): input, forget, cell candidate (g), output
    GRU   weight_ih (3H, I): reset, update, new
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

TOLERANCE = 1e-5
# (batch, input size, hidden size) of the cases each checker tries.
_CELL_CASES = ((1, 3, 4), (5, 7, 6), (8, 16, 32))


_CELL_HINT = "Check the formula, the gate order and the weight layout (x @ W.T + b)."


def _close(name: str, case: str, got, expected: torch.Tensor, hint: str = _CELL_HINT) -> None:
    """Assert ``got`` is a tensor shaped like ``expected`` and equal within TOLERANCE; the message says by how much
    it differs and gives ``hint``, never the expected values."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{case}: {name} should be a torch.Tensor, got {type(got).__name__}")
    if got.shape != expected.shape:
        raise AssertionError(f"{case}: {name} should have shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    diff = (got.detach().double() - expected.detach().double()).abs().max().item()
    if not diff <= TOLERANCE:
        raise AssertionError(f"{case}: {name} differs from torch.nn by up to {diff:.3g} (allowed {TOLERANCE:g}). {hint}")


def _call(fn: Callable, case: str, *args):
    try:
        return fn(*args)
    except Exception as error:  # the reader's bug, reported with the case it came from
        shapes = [tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__ for a in args]
        raise AssertionError(f"{case}: your function raised {type(error).__name__}: {error} "
                             f"(arguments had shapes {shapes})") from error


def _check_cell(fn: Callable, cell_type: type[nn.Module]) -> None:
    """Compare ``fn`` with ``cell_type`` (``nn.RNNCell``, ``nn.LSTMCell`` or ``nn.GRUCell``) on each of _CELL_CASES."""
    lstm = cell_type is nn.LSTMCell
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for batch, inputs, hidden in _CELL_CASES:
            torch.manual_seed(int(torch.randint(0, 10_000, (1,), generator=generator)))
            cell = cell_type(inputs, hidden)
            x, h, c = (torch.randn(batch, size, generator=generator) for size in (inputs, hidden, hidden))
            case = f"case batch={batch}, input={inputs}, hidden={hidden}"
            got = _call(fn, case, x, (h, c) if lstm else h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
            if not lstm:
                _close("h_next", case, got, cell(x, h))
                continue
            if not isinstance(got, tuple) or len(got) != 2:
                raise AssertionError(f"{case}: an LSTM cell should return a pair (h_next, c_next), "
                                     f"got {type(got).__name__}")
            h_ref, c_ref = cell(x, (h, c))
            if all(isinstance(t, torch.Tensor) and t.shape == c_ref.shape for t in got) and \
                    not torch.allclose(got[1].double(), c_ref.double(), atol=TOLERANCE) and \
                    torch.allclose(got[0].double(), c_ref.double(), atol=TOLERANCE) and \
                    torch.allclose(got[1].double(), h_ref.double(), atol=TOLERANCE):
                raise AssertionError(f"{case}: h_next and c_next are swapped: return the pair (h_next, c_next)")
            _close("c_next", case, got[1], c_ref)
            _close("h_next", case, got[0], h_ref)
    print(f"All checks passed: your {cell_type.__name__.removesuffix('Cell')} cell matches nn.{cell_type.__name__}.")


def check_rnn_cell(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``fn(x, h, weight_ih, weight_hh, bias_ih, bias_hh) -> h_next`` against ``nn.RNNCell`` (tanh).

    Shapes: ``x (B, I)``, ``h (B, H)``, ``weight_ih (H, I)``, ``weight_hh (H, H)``,
    biases ``(H,)``; returns ``(B, H)``.
    """
    _check_cell(fn, nn.RNNCell)


def check_lstm_cell(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Check ``fn(x, (h, c), weight_ih, weight_hh, bias_ih, bias_hh) -> (h_next, c_next)`` against ``nn.LSTMCell``.

    Shapes: ``x (B, I)``, ``h`` and ``c (B, H)``, ``weight_ih (4H, I)``, ``weight_hh (4H, H)``,
    biases ``(4H,)``; returns two ``(B, H)`` tensors. Gate order: input, forget, g, output.
    """
    _check_cell(fn, nn.LSTMCell)


def check_gru_cell(fn: Callable[..., torch.Tensor]) -> None:
    """Check ``fn(x, h, weight_ih, weight_hh, bias_ih, bias_hh) -> h_next`` against ``nn.GRUCell``.

    Shapes: ``x (B, I)``, ``h (B, H)``, ``weight_ih (3H, I)``, ``weight_hh (3H, H)``,
    biases ``(3H,)``; returns ``(B, H)``. Gate order: reset, update, new.
    """
    _check_cell(fn, nn.GRUCell)


def check_attention(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Check scaled dot-product attention ``fn(q, k, v, key_padding_mask=None) -> (output, weights)``.

    Shapes: ``q (B, Tq, d)``, ``k (B, Tk, d)``, ``v (B, Tk, dv)``, ``key_padding_mask (B, Tk)`` bool,
    True at padded keys (as in ``nn.MultiheadAttention``); returns ``output (B, Tq, dv)`` and
    ``weights (B, Tq, Tk)``, rows summing to 1 with 0 on padded keys.
    """
    generator = torch.Generator().manual_seed(1)
    for batch, tq, tk, d, dv in ((1, 1, 1, 2, 3), (3, 4, 6, 8, 5), (2, 7, 7, 16, 16)):
        q, k, v = (torch.randn(batch, t, size, generator=generator) for t, size in ((tq, d), (tk, d), (tk, dv)))
        lengths = torch.randint(1, tk + 1, (batch,), generator=generator)
        padding = torch.arange(tk).unsqueeze(0) >= lengths.unsqueeze(1)  # (B, Tk)
        for mask in (None, padding):
            case = f"case B={batch}, Tq={tq}, Tk={tk}, d={d}, dv={dv}, {'with' if mask is not None else 'no'} padding mask"
            got = _call(fn, case, q, k, v, mask)
            if not isinstance(got, tuple) or len(got) != 2:
                raise AssertionError(f"{case}: attention should return a pair (output, weights), got {type(got).__name__}")
            keep = None if mask is None else ~mask.unsqueeze(1)  # (B, 1, Tk), True = attend
            expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
            scores = q @ k.transpose(1, 2) / d ** 0.5
            masked = scores if mask is None else scores.masked_fill(mask.unsqueeze(1), float("-inf"))
            weights = masked.softmax(dim=-1)
            hint = ("Scale q @ k.T by 1 / sqrt(d), set the scores of padded keys (True in the mask) to -inf, "
                    "and take the softmax over the keys (the last dimension).")
            mistakes = [(masked * d ** 0.5, "the scores are not scaled: divide q @ k.T by sqrt(d) before the softmax"),
                        (masked / d ** 0.5, "divide q @ k.T by sqrt(d) once, not twice (or by d)"),
                        (masked.transpose(1, 2), "the scores are q @ k.T, one row per query: (B, Tq, Tk)")]
            if mask is not None:
                mistakes += [(scores, "the padding mask is ignored: set the scores of padded keys to -inf"),
                             (scores.masked_fill(~mask.unsqueeze(1), float("-inf")),
                              "True in key_padding_mask marks the *padded* keys: those get weight 0")]
            if isinstance(got[1], torch.Tensor) and got[1].shape == weights.shape:
                candidates = [(wrong.softmax(dim=-1), why) for wrong, why in mistakes if wrong.shape == weights.shape]
                candidates.append((masked.softmax(dim=1), "take the softmax over the keys (the last dimension): each "
                                                          "query's weights sum to 1"))
                hint = next((why for wrong, why in candidates
                             if torch.allclose(got[1].detach().float(), wrong, atol=TOLERANCE, equal_nan=True)), hint)
            _close("weights", case, got[1], weights, hint)
            _close("output", case, got[0], expected, "Weight the values with your weights: output = weights @ v.")
    print("All checks passed: your attention matches torch's scaled_dot_product_attention.")
