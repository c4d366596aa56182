"""Turning a network's output vector into ranked class predictions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import ops


@dataclass(frozen=True)
class Prediction:
    rank: int  # 1 is the most probable
    index: int  # position in the output vector
    label: str
    probability: float
    score: float  # the output value itself: a logit, or the probability when the network ends in softmax

    def record(self) -> dict[str, Any]:
        return {"rank": self.rank, "index": self.index, "label": self.label, "probability": self.probability,
                "score": self.score}


def top_k(output: np.ndarray, labels: Sequence[str], k: int, is_probability: bool) -> list[Prediction]:
    """The ``k`` most probable classes of a 1-D output, best first; ties keep the lower index first.

    Without a final softmax (``is_probability`` False) the output is taken as logits and turned
    into probabilities with a softmax, in float64.
    """
    scores = np.asarray(output, dtype=np.float64).reshape(-1)
    if is_probability:
        probabilities = scores
    else:
        with np.errstate(all="ignore"):
            probabilities = ops.softmax(scores)
    names = list(labels) or [str(i) for i in range(scores.size)]
    order = np.argsort(-np.nan_to_num(probabilities, nan=-1.0), kind="stable")[:k]
    return [Prediction(rank, int(i), names[i], float(probabilities[i]), float(scores[i]))
            for rank, i in enumerate(order, start=1)]
