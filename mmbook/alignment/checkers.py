"""Exercise checkers of the Alignment chapter: a reader's InfoNCE and recall@K against the package's."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from mmbook.alignment.losses import info_nce
from mmbook.alignment.retrieval import recall_at_k
from mmbook.exercises import reader_call


def _unit(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def check_info_nce(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Check a reader's ``fn(image_embeddings (B, d), text_embeddings (B, d), temperature) -> scalar``.

    Compares with :func:`info_nce` on several batches and temperatures; when a case fails, it
    names the usual mistakes (one direction only, temperature multiplied instead of divided,
    a sum instead of a mean, targets that are not the diagonal). Prints "All checks passed".
    """
    if not callable(fn):
        raise TypeError(f"check_info_nce expects a function, got {type(fn).__name__}")
    generator = torch.Generator().manual_seed(0)
    cases = []
    for batch, dim, temperature in ((4, 8, 0.07), (16, 32, 0.5), (1, 4, 1.0), (9, 16, 0.1)):
        image = _unit(generator, batch, dim)
        text = F.normalize(image + 0.8 * torch.randn(batch, dim, generator=generator), dim=-1)
        cases.append((f"B={batch}, d={dim}, temperature={temperature}", image, text, temperature))
    for name, image, text, temperature in cases:
        expected = info_nce(image, text, temperature)
        got = reader_call(fn, name, image.clone(), text.clone(), temperature)
        if not isinstance(got, torch.Tensor) or got.numel() != 1:
            raise AssertionError(f"{name}: expected a scalar tensor, got {type(got).__name__} "
                                 f"{tuple(got.shape) if isinstance(got, torch.Tensor) else ''}")
        got = got.reshape(())
        if torch.isclose(got.float(), expected, rtol=1e-4, atol=1e-5):
            continue
        logits = image @ text.T
        targets = torch.arange(len(image))
        hints = {
            "only the image -> text direction": F.cross_entropy(logits / temperature, targets),
            "only the text -> image direction": F.cross_entropy(logits.T / temperature, targets),
            "the temperature multiplies instead of divides": info_nce(image, text, 1.0 / temperature),
            "the temperature is missing": info_nce(image, text, 1.0),
            "a sum over the batch instead of a mean": info_nce(image, text, temperature) * len(image),
            "the two directions are added, not averaged": 2 * info_nce(image, text, temperature),
        }
        hint = next((h for h, value in hints.items() if torch.isclose(got.float(), value, rtol=1e-4, atol=1e-5)), None)
        # Say which way it is off, never the expected loss: the check is formative.
        direction = "not a number" if bool(got.isnan()) else "too small" if got.item() < expected.item() else "too large"
        message = f"{name}: your loss is {got.item():.5f}, which is {direction}"
        raise AssertionError(message + (f"\n  hint: your result matches {hint}" if hint else
                                        "\n  hint: logits = image @ text.T / temperature; the targets are the "
                                        "diagonal (arange(B)); average the cross-entropy of the rows and of the columns"))
    print(f"All checks passed ({len(cases)} batches against mmbook.alignment.info_nce).")


def check_recall_at_k(fn: Callable[[torch.Tensor, torch.Tensor, int], float]) -> None:
    """Check a reader's ``fn(similarity (Q, G), relevant (Q, G) bool, k) -> float``, the "any" definition.

    Cases: one correct item per query, several correct items, ties broken any way, K = G. When a
    case fails it names the usual mistakes (ascending sort, top K+1 or K-1, the "fraction"
    definition instead of "any"). Prints "All checks passed".
    """
    if not callable(fn):
        raise TypeError(f"check_recall_at_k expects a function, got {type(fn).__name__}")
    generator = torch.Generator().manual_seed(1)
    identity = torch.eye(6, dtype=torch.bool)
    several = torch.rand(8, 10, generator=generator) < 0.25
    several[torch.arange(8), torch.arange(8)] = True
    cases = [
        ("one correct item per query", torch.randn(6, 6, generator=generator), identity, 1),
        ("one correct item per query, K=3", torch.randn(6, 6, generator=generator), identity, 3),
        ("several correct items per query, K=2", torch.randn(8, 10, generator=generator), several, 2),
        ("several correct items per query, K=5", torch.randn(8, 10, generator=generator), several, 5),
        ("K equals the gallery size", torch.randn(5, 7, generator=generator), torch.eye(5, 7, dtype=torch.bool), 7),
    ]
    for name, similarity, relevant, k in cases:
        expected = recall_at_k(similarity, relevant, k, "any")
        # float() inside the call: a result that is not a number counts as the function's error
        got = reader_call(lambda *args: float(fn(*args)), name, similarity.clone(), relevant.clone(), k)
        if abs(got - expected) <= 1e-6:
            continue
        hints = {"the lowest scores were taken (sort in descending order)": recall_at_k(-similarity, relevant, k, "any"),
                 "the fraction of correct items found, not whether any was found": recall_at_k(similarity, relevant, k, "fraction")}
        if k + 1 <= similarity.shape[1]:
            hints["the top K+1 were used"] = recall_at_k(similarity, relevant, k + 1, "any")
        if k > 1:
            hints["the top K-1 were used"] = recall_at_k(similarity, relevant, k - 1, "any")
        hint = next((h for h, value in hints.items() if abs(got - value) <= 1e-6), None)
        direction = "not a number" if got != got else "too small" if got < expected else "too large"
        message = f"{name}: your recall@K is {got:.4f}, which is {direction}"
        raise AssertionError(message + (f"\n  hint: your result matches {hint}" if hint else
                                        "\n  hint: per query, take the K highest similarities and ask whether "
                                        "any of them is a correct item; average over queries"))
    print(f"All checks passed ({len(cases)} cases against mmbook.alignment.recall_at_k).")
