"""Box geometry, one definition for the rewards and the evaluation: a box's area, two boxes' intersection
and union, IoU, GIoU, and the LISA ``(x1,y1),(x2,y2)`` box in a text.

A box is ``(x1, y1, x2, y2)``, two opposite corners in either order: every function first puts it in
``(left, top, right, bottom)`` form (:func:`spanned`). Used by the detection and grounding rewards
(:mod:`gpgrl.rewards.vision`) and by the LISA benchmark's IoU (:mod:`gpgrl.eval.vision`). No imports
beyond the standard library.

>>> box_overlap((0, 0, 10, 10), (5, 0, 15, 10)), box_iou((0, 0, 10, 10), (5, 0, 15, 10))  # 50 / 150
((50, 150), 0.3333333333333333)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: ``(x1, y1, x2, y2)``: two opposite corners of an axis-aligned box.
Box = tuple[float, float, float, float]


def spanned(box: Sequence[float]) -> Box:
    """The box spanned by two opposite corners, as (left, top, right, bottom).

    >>> spanned((100, 0, 0, 50))
    (0, 0, 100, 50)
    """
    x1, y1, x2, y2 = box
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def area(box: Box) -> float:
    """The area of a spanned box."""
    return (box[2] - box[0]) * (box[3] - box[1])


def box_overlap(pred: Sequence[float] | None, gold: Sequence[float]) -> tuple[float, float]:
    """``(intersection, union)`` areas of a predicted and a gold box ``(x1, y1, x2, y2)`` (corners in any
    order); no prediction: ``(0, area of gold)``. Boxes that only touch share no area.

    >>> box_overlap((0, 0, 10, 10), (5, 0, 15, 10)), box_overlap(None, (0, 0, 4, 5))
    ((50, 150), (0.0, 20))
    >>> box_overlap((0, 0, 10, 10), (10, 0, 20, 10))
    (0, 200)
    """
    g = spanned(gold)
    gold_area = area(g)
    if pred is None:
        return 0.0, gold_area
    p = spanned(pred)
    w = min(p[2], g[2]) - max(p[0], g[0])
    h = min(p[3], g[3]) - max(p[1], g[1])
    inter = w * h if w > 0 and h > 0 else 0
    return inter, area(p) + gold_area - inter


def _iou(inter: float, union: float) -> float:
    """``inter / union`` in [0, 1]; 0 when the union has no area (the min only absorbs float rounding)."""
    return min(1.0, inter / union) if union > 0 else 0.0


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes ``(x1, y1, x2, y2)`` (corners in either order), in [0, 1].

    Boxes that only touch, or have no area, have IoU 0 (as in Visual-RFT's ``calculate_iou``).

    >>> box_iou((0, 0, 100, 100), (0, 0, 100, 80))  # 8000 / 10000
    0.8
    >>> box_iou((0, 0, 10, 10), (10, 0, 20, 10))
    0.0
    """
    inter, union = box_overlap(a, b)
    return _iou(inter, union) if inter > 0 else 0.0  # inter 0 also when w * h underflows


def generalized_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Generalized IoU (Rezatofighi et al. 2019, arXiv 1902.09630), in [-1, 1].

    GIoU = IoU - (C - U) / C, with U the union's area and C the area of the smallest box enclosing both.
    Corners may come in either order: as in the paper's algorithm, each box is first put in
    (min, min, max, max) form. IoU is 0 when the union has no area, and GIoU = IoU when C has none
    (Visual-RFT's ``compute_giou`` conventions).

    >>> generalized_iou((0, 0, 100, 100), (50, 0, 150, 100))  # IoU 5000/15000, C = U = 15000
    0.3333333333333333
    >>> generalized_iou((0, 0, 100, 100), (200, 0, 300, 100))  # 0 - (30000 - 20000) / 30000
    -0.3333333333333333
    """
    inter, union = box_overlap(a, b)
    iou = _iou(inter, union)
    a, b = spanned(a), spanned(b)
    enclosing = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    giou = iou - (enclosing - union) / enclosing if enclosing > 0 else iou
    return max(-1.0, min(1.0, giou))  # clamp: float rounding only


# LISA's box format: "(x1,y1),(x2,y2)" with non-negative integers (the fork's regex).
_GROUNDING_BOX = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*,\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")
#: Coordinates longer than this many digits are not read as a box (no float holds them usefully).
_MAX_COORD_DIGITS = 12


def first_grounding_box(text: str) -> Box | None:
    """The first ``(x1,y1),(x2,y2)`` box in a text, or None.

    >>> first_grounding_box("(10, 20),(30,40) and (1,2),(3,4)")
    (10, 20, 30, 40)
    >>> first_grounding_box("(10.5,20),(30,40)") is None  # integers only, as in the fork
    True
    """
    match = _GROUNDING_BOX.search(text)
    if match is None or any(len(g) > _MAX_COORD_DIGITS for g in match.groups()):
        return None
    return tuple(int(g) for g in match.groups())  # type: ignore[return-value]
