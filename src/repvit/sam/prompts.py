"""Point and box prompts, read and checked the same way by the CLI, the predictor, the session and the app.

Coordinates are in pixels of the original image (as ``SamPredictor.predict`` takes them). A point is
``(x, y, label)`` with label 1 (foreground) or 0 (background); a box is ``(x0, y0, x1, y1)``, its top-left corner
first. Text takes either the CLI's form (``X,Y[,LABEL]`` for one point, ``X0,Y0,X1,Y1``) or the app's JSON
(``[[x, y, label], ...]``, ``[x0, y0, x1, y1]``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PromptError", "parse_points", "parse_box", "validate_prompts"]


class PromptError(ValueError):
    """A prompt the model cannot take (outside the image, an empty box, a bad label or unreadable text)."""


def _read(text: str, what: str) -> Any:
    """``text`` as JSON when it starts with ``[`` or is ``null``, else as comma-separated numbers (a list)."""
    s = text.strip()
    if s.startswith("[") or s == "null":
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            raise PromptError(f"{what}, got {text!r} ({e.msg}).") from None
    try:
        return [float(p) for p in s.replace(" ", "").split(",")]
    except ValueError:
        raise PromptError(f"{what}, got {text!r}.") from None


def _is_numbers(value: Any, sizes: tuple[int, ...]) -> bool:
    return isinstance(value, list) and len(value) in sizes and all(isinstance(v, int | float) for v in value)


def _point(p: Any) -> tuple[float, float, int]:
    if not _is_numbers(p, (2, 3)):
        raise PromptError(f"each point is X,Y or X,Y,LABEL ([x, y] or [x, y, label] in JSON; numbers), got {p!r}.")
    if len(p) == 3 and p[2] not in (0, 1):
        raise PromptError(f"a point is X,Y or X,Y,LABEL with LABEL 1 (foreground) or 0 (background), got label "
                          f"{p[2]!r} in {p!r}.")
    return float(p[0]), float(p[1]), int(p[2]) if len(p) == 3 else 1


def parse_points(text: str | None) -> list[tuple[float, float, int]]:
    """Point prompts from ``"X,Y"`` or ``"X,Y,LABEL"`` (one point, e.g. ``--point``) or the JSON list
    ``'[[x, y, label], ...]'`` (``[x, y]`` means foreground); ``""`` or None: no points.

    Raises:
        PromptError: text that is neither, or a label other than 0 / 1.
    """
    if text is None or not str(text).strip():
        return []
    text = str(text)
    if not text.strip().startswith("["):
        return [_point(_read(text, "a point is X,Y or X,Y,LABEL with LABEL 1 (foreground) or 0 (background)"))]
    raw = _read(text, "points must be JSON [[x, y, label], ...]")
    if not isinstance(raw, list):
        raise PromptError(f"points must be a JSON list [[x, y, label], ...], got {text!r}.")
    return [_point(p) for p in raw]


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """A box prompt from ``"X0,Y0,X1,Y1"`` or the JSON ``'[x0, y0, x1, y1]'``; ``""``, ``"null"`` or ``"[]"``: no
    box. The corners' order is checked by :func:`validate_prompts`.

    Raises:
        PromptError: anything but four numbers.
    """
    if text is None or not str(text).strip():
        return None
    raw = _read(str(text), "a box is X0,Y0,X1,Y1 or JSON [x0, y0, x1, y1] (four numbers) or empty")
    if raw is None or raw == []:
        return None
    if not _is_numbers(raw, (4,)):
        raise PromptError(f"a box is X0,Y0,X1,Y1 or JSON [x0, y0, x1, y1] (four numbers), got {text!r}.")
    return tuple(float(v) for v in raw)  # type: ignore[return-value]


def validate_prompts(points: Sequence[Sequence[float]] = (), box: Sequence[float] | None = None,
                     image_size: tuple[int, int] | None = None) -> None:
    """Refuse prompts SAM would silently turn into a meaningless mask.

    A point ``(x, y[, label])`` must lie on the image, ``0 <= x <= W`` and ``0 <= y <= H``; a box ``(x0, y0, x1, y1)``
    needs ``x0 < x1`` and ``y0 < y1`` and its corners within the same bounds.

    Args:
        points: the prompt points; a label, if present, must be 0 (background) or 1 (foreground).
        box: the prompt box, or ``None``.
        image_size: ``(H, W)`` of the image; ``None`` checks only the shapes and the box's corner order.

    Raises:
        PromptError: which prompt is wrong, the image size, and what is allowed.
    """
    h, w = (None, None) if image_size is None else (float(image_size[0]), float(image_size[1]))
    bounds = "" if w is None else f" (the image is {w:g} x {h:g} px: 0 <= x <= {w:g}, 0 <= y <= {h:g})"
    for i, p in enumerate(points):
        if len(p) not in (2, 3) or not all(np.isfinite(float(c)) for c in p[:2]):
            raise PromptError(f"point {i + 1} must be two finite numbers X,Y (and an optional label), got {tuple(p)}.")
        if len(p) == 3 and int(p[2]) not in (0, 1):
            raise PromptError(f"point {i + 1} has label {p[2]}; labels are 1 (foreground) or 0 (background).")
        x, y = float(p[0]), float(p[1])
        if w is not None and not (0 <= x <= w and 0 <= y <= h):
            raise PromptError(f"point {i + 1} ({x:g}, {y:g}) lies outside the image{bounds}.")
    if box is not None:
        if len(box) != 4 or not all(np.isfinite(float(c)) for c in box):
            raise PromptError(f"a box is four finite numbers X0,Y0,X1,Y1, got {tuple(box)}.")
        x0, y0, x1, y1 = (float(c) for c in box)
        if not (x0 < x1 and y0 < y1):
            raise PromptError(f"the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) needs X0 < X1 and Y0 < Y1 (its top-left "
                              "corner first, then its bottom-right).")
        if w is not None and not (0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h):
            raise PromptError(f"the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) reaches outside the image{bounds}.")
