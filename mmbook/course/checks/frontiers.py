"""Checkers for the exercises of ch12, frontiers (``ex-frontiers-*``)."""

from __future__ import annotations

from typing import Any

from mmbook.exercises import check_value


def check_occlusion_grid(answer: Any) -> None:
    """ex-frontiers-image-occlusion: positions per side of an 8x8 patch sliding with stride 4 over 32 pixels."""
    expected = len(range(0, 32 - 8 + 1, 4))
    check_value(answer, expected, tol=0.5, name="the occlusion map's side",
                hint="list the patch's start positions along one side: from 0, by the stride, while the patch still "
                     "fits inside the image",
                wrong={32 // 4: "the patch must fit inside the image: its last position is where its far edge meets "
                                "the image's edge",
                       (32 - 8) // 4: "count the first position (0) as well",
                       32 // 8: "the patch moves by the stride, not by its own size: positions overlap",
                       32 // 4 + 1: "the patch must fit inside the image: it cannot start where it would stick out"})
