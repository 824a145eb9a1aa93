"""Which colour proposals to classify when a frame has more than the classifier can afford.

Why: at 1080p the colour search proposes ~300 regions a frame and the classifier's crops are a
third of the sign stage. Cutting them by size (`proposals.max_proposals`, smallest first) drops
the large ones, real signs among them; cutting by paint share keeps the values but only 0.79 of
the labelled-sign proposals at 150 a frame. A logistic regression on cheap features of each
proposal (how much of its box and of its middle is red, blue or yellow paint, its size, shape
and place in the frame, and their pairwise products), fitted on which proposals lie on a
labelled sign in training photos (`vlm-node fit-ranker`), keeps 0.99 of them at 150 and 0.98 at
100 on held-out photos. The ranker only decides which proposals reach the classifier; the
classifier still decides what is a sign.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vlm_node.analysis.logistic import fit_logistic
from vlm_node.analysis.sign_candidates import (PAINT_COLOURS, paint_integrals, pixel_rects,
                                               rect_shares)
from vlm_node.geometry import Box, box_array
from vlm_node.paths import ASSETS

DEFAULT_RANKER = ASSETS / "models" / "sign_classifier" / "proposal_ranker.json"
FORMAT = "vlm_node proposal ranker 1"
BASE_FEATURES = tuple(f"{p}_{where}" for p in PAINT_COLOURS for where in ("box", "middle")) + (
    "log_side_px", "log_aspect", "centre_y", "centre_x_off")
MIDDLE = 0.6
"""The middle of a box: its central 60 % in each direction (a ring sign's face, a triangle's
field); the rest is where a rim's paint is."""


def features(boxes: Sequence[Box], masks: dict[str, np.ndarray], scale: float,
             integrals: list[np.ndarray] | None = None) -> np.ndarray:
    """N x len(BASE_FEATURES) features of proposal `boxes` in the search image (the frame
    scaled by `scale`, the size of `masks`; `integrals`: their `paint_integrals`, made here
    unless given): sizes in frame pixels, places as shares of the search image, so a ranker
    fitted at one frame size reads another."""
    b = box_array(boxes)
    h, w = masks["red"].shape[:2]
    xyxy = pixel_rects(b, w, h)
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    hw, hh = (xyxy[:, 2] - xyxy[:, 0]) * MIDDLE / 2, (xyxy[:, 3] - xyxy[:, 1]) * MIDDLE / 2
    middle = np.stack([np.floor(cx - hw), np.floor(cy - hh), np.ceil(cx + hw),
                       np.ceil(cy + hh)], 1).astype(int)
    middle[:, 2] = np.maximum(middle[:, 2], middle[:, 0] + 1)
    middle[:, 3] = np.maximum(middle[:, 3], middle[:, 1] + 1)
    cols = []
    for ii in integrals or paint_integrals(masks):
        cols += [rect_shares(ii, xyxy), rect_shares(ii, middle)]
    side = np.maximum(b[:, 2], b[:, 3]) / scale
    cols += [np.log(np.maximum(side, 1.0)),
             np.log(np.maximum(b[:, 2], 1.0) / np.maximum(b[:, 3], 1.0)),
             (b[:, 1] + b[:, 3] / 2) / h, np.abs((b[:, 0] + b[:, 2] / 2) / w - 0.5)]
    return np.stack(cols, 1)


def expanded(x: np.ndarray) -> np.ndarray:
    """The features and their pairwise products (a quadratic model that stays linear to fit):
    a red rim matters more on a small box than a large one, paint in the middle more on a blue
    sign than a red ring."""
    n = x.shape[1]
    products = [x[:, i] * x[:, j] for i in range(n) for j in range(i, n)]
    return np.concatenate([x, np.stack(products, 1)], 1) if len(x) else \
        np.zeros((0, n + n * (n + 1) // 2))


@dataclass(frozen=True)
class ProposalRanker:
    """Logistic regression over `expanded(features(...))`; higher = more likely a sign."""

    weights: np.ndarray
    bias: float
    training: dict[str, Any] = field(default_factory=dict)

    def scores(self, boxes: Sequence[Box], masks: dict[str, np.ndarray], scale: float,
               integrals: list[np.ndarray] | None = None) -> np.ndarray:
        """Scores of proposal `boxes` of a search image (see `features`)."""
        return self.scores_of(features(boxes, masks, scale, integrals))

    def scores_of(self, x: np.ndarray) -> np.ndarray:
        """Scores of rows of `features`."""
        return expanded(np.asarray(x, np.float64)) @ self.weights + self.bias

    def best(self, boxes: Sequence[Box], masks: dict[str, np.ndarray], scale: float,
             keep: int, integrals: list[np.ndarray] | None = None) -> list[Box]:
        """The `keep` highest-scoring `boxes`, in their given order (ties: the earlier)."""
        if len(boxes) <= keep:
            return list(boxes)
        order = np.argsort(-self.scores(boxes, masks, scale, integrals),
                           kind="stable")[:keep]
        return [boxes[i] for i in sorted(order.tolist())]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "features": list(BASE_FEATURES), "expanded": "pairwise",
                "weights": [float(v) for v in self.weights], "bias": float(self.bias),
                "training": self.training}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path = DEFAULT_RANKER) -> "ProposalRanker":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"proposal ranker {path}: cannot read: {exc}") from exc
        n = len(BASE_FEATURES)
        if data.get("format") != FORMAT or len(data.get("weights", ())) != n + n * (n + 1) // 2:
            raise ValueError(f"proposal ranker {path}: not a '{FORMAT}' file with "
                             f"{n + n * (n + 1) // 2} weights")
        return cls(np.asarray(data["weights"], np.float64), float(data["bias"]),
                   dict(data.get("training", {})))


def fit_ranker(x: np.ndarray, positive: np.ndarray, l2: float = 1.0, iterations: int = 2000,
               learning_rate: float = 0.2, training: dict[str, Any] | None = None
               ) -> ProposalRanker:
    """Fit on proposals' `features` (N x len(BASE_FEATURES)) and whether each lies on a
    labelled sign; deterministic (`fit_logistic`)."""
    weights, bias = fit_logistic(expanded(np.asarray(x, np.float64)), positive, l2,
                                 iterations, learning_rate)
    return ProposalRanker(weights, bias, dict(training or {}))
