"""Logistic regression fitted by full-batch gradient descent: the one fitting routine of the
sign verifier and the proposal ranker.

Why not a library: the fits are small (tens of features, up to ~10^5 rows), must give the same
file from the same data on every machine (no random initialisation, no shuffling), and scikit-
learn is not a dependency of the node.
"""
from __future__ import annotations

import numpy as np


def fit_logistic(x: np.ndarray, positive: np.ndarray, l2: float, iterations: int,
                 learning_rate: float) -> tuple[np.ndarray, float]:
    """Weights and bias of a logistic regression on `x` (N x F, raw features) for the boolean
    `positive`, both classes weighted equally, L2 `l2` on the standardised weights. The
    standardisation is folded into the returned weights: score = x @ weights + bias."""
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        raise ValueError("a logistic fit needs positives and negatives")
    x = np.asarray(x, np.float64)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mu) / sd
    y = positive.astype(np.float64)
    weight = np.where(positive, 0.5 / y.mean(), 0.5 / (1.0 - y.mean()))
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        g = (p - y) * weight
        w -= learning_rate * (z.T @ g / len(y) + l2 * w / len(y))
        b -= learning_rate * float(g.mean())
    # (x - mu) / sd @ w + b == x @ (w / sd) + (b - mu / sd @ w)
    return w / sd, b - float((mu / sd) @ w)
