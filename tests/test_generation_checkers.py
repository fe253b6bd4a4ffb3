"""The Generation chapter's exercise checkers: right answers pass, usual mistakes fail with a hint, no answer leaks."""

from __future__ import annotations

import pytest
import torch

from mmbook.exercises import ExerciseError, check
from mmbook.generation.checkers import beam_step, chair, check_beam_step, check_chair


def test_chair_counts_each_captions_objects_as_a_set():
    assert chair([{"cat", "dog"}, {"ship"}], [{"cat"}, {"ship"}]) == (1 / 3, 1 / 2)
    with pytest.raises(ValueError, match="one set of each"):
        chair([{"cat"}], [])


def test_right_answers_pass(capsys):
    check_chair(chair)
    check_beam_step(beam_step)
    assert capsys.readouterr().out.count("All checks passed") == 2
    check("ex-gen-chair", chair)
    check("ex-gen-beam-step", beam_step)


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, p: (sum(len(a - b) for a, b in zip(m, p)) / sum(len(b) for b in p), chair(m, p)[1]), "objects in the scenes"),
    (lambda m, p: (chair(m, p)[1], chair(m, p)[1]), "that is CHAIR_s"),
    (lambda m, p: (chair(m, p)[0], 0.0), "share of captions"),
])
def test_chair_mistakes_are_named_without_the_answer(wrong, hint):
    with pytest.raises(AssertionError, match=hint) as failure:
        check_chair(wrong)
    assert "should be" not in str(failure.value)  # the message names the mistake, never the expected value


def _best_word_per_beam(scores, log_probs, width):
    total = scores[:, None] + log_probs
    best, words = total.max(dim=1)
    order = best.argsort(descending=True)[:width]
    return best[order], order, words[order]


def _without_scores(scores, log_probs, width):
    return beam_step(torch.zeros_like(scores), log_probs, width)


@pytest.mark.parametrize("wrong, hint", [(_best_word_per_beam, "one beam"),
                                         (_without_scores, "add each beam's score")])
def test_beam_step_mistakes_are_named_without_the_answer(wrong, hint):
    with pytest.raises(AssertionError, match=hint) as failure:
        check_beam_step(wrong)
    assert "expected scores" not in str(failure.value)
    with pytest.raises(ExerciseError):
        check("ex-gen-beam-step", wrong)
