"""How a step of a forward pass is presented, whichever view draws it: an input image as the
picture it is (gray or colour, not heat-coloured channels), and the class scores under the class
labels. Only NumPy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..engine.graph import Step

PICTURE_CHANNELS = {("gray",): "gray", ("R", "G", "B"): "RGB"}  # an input's channel names -> what it is


class Picture:
    """How an input map is drawn as the picture it is: ``kind`` "gray" or "RGB", and ``top`` the
    value of white (1 or 255); or, when it cannot be (``top`` None), ``why``."""

    def __init__(self, kind: str, top: float | None, why: str = "") -> None:
        self.kind, self.top, self.why = kind, top, why

    @property
    def note(self) -> str:
        """What the views say under the drawing."""
        if self.top is None:
            return f"{self.kind} input {self.why}: drawn on the heat scale, not as the picture"
        return f"drawn as the picture: {self.kind} 0..{self.top:g}"

    def rgb(self, maps: np.ndarray) -> np.ndarray:
        """(C, H, W) values 0..top as (H, W, 3) uint8: round(255 v / top), a gray plane in all three."""
        assert self.top is not None  # only a picture that can be drawn is asked for its pixels
        scaled = np.clip(np.asarray(maps, dtype=np.float64) / self.top, 0.0, 1.0) * 255.0
        pixels = np.round(np.nan_to_num(scaled)).astype(np.uint8)  # (C, H, W)
        return np.repeat(pixels, 3, axis=0).transpose(1, 2, 0) if pixels.shape[0] == 1 \
            else pixels.transpose(1, 2, 0)  # (H, W, 3)


def input_picture(step: Step) -> Picture | None:
    """For the input step of an image read as gray or RGB, how to draw it as the picture: values
    from 0 to at most 1 have white at 1 (``--scale unit``), up to 255 at 255 (raw). One normalised
    below 0 or past 255 (``--mean``/``--std``, ``--preset imagenet``) has no white to draw it
    with: ``top`` None, with the reason. None for any other step (a layer's map, a tensor, a
    picture with its alpha kept)."""
    kind = PICTURE_CHANNELS.get(tuple(step.labels))
    output = np.asarray(step.output)
    if step.index != 0 or step.type != "input" or kind is None or output.ndim != 3 or output.size == 0:
        return None
    low, high = float(output.min()), float(output.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        return Picture(kind, None, "has values that are not finite")
    if low < 0:
        return Picture(kind, None, "is normalised (values below 0)")
    if high > 255:
        return Picture(kind, None, "has values above 255")
    return Picture(kind, 1.0 if high <= 1 else 255.0)


def with_class_labels(steps: Sequence[Step], labels: Sequence[str]) -> list[Step]:
    """``steps`` with the class ``labels`` on the vectors that hold one value per class: the last
    step and, back through what each read, the layers before it that keep its units (a softmax's
    logits, a dropout), up to and including the dense layer that made them. Steps that name their
    values already, and every other step, are as they were."""
    import dataclasses

    if not labels or not steps:
        return list(steps)
    by_name = {step.name: step for step in steps}
    classed: set[str] = set()
    step: Step | None = steps[-1]
    while step is not None and step.output.ndim == 1 and step.output.size == len(labels) and not step.labels:
        classed.add(step.name)
        if step.type == "dense" or not step.inputs:
            break
        step = by_name.get(step.inputs[0])
    return [dataclasses.replace(step, labels=tuple(labels)) if step.name in classed else step for step in steps]
