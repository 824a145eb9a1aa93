"""A second look at what the sign classifier accepted: is this reading one of the real signs the
classifier gets right, or one of the things in street and crowd photos it takes for a sign?

Why: the classifier was trained on GTSRB crops against background crops, and it is sure of
itself (0.93-0.99) on shirt collars and V-necks ("yield"), flags and striped clothes ("priority
road", "keep right") and round letters of a watermark ("speed limit 100"): 92 readings on 60 of
141 WIDER crowd photos, 50 on the GTSDB development photos that no label explains. Its calibrated
probability cannot tell these from signs: it was calibrated on GTSRB tracks, which have none.
The pattern of the *other* classes' probabilities can: a real yield sign leaves little on the
remaining 43 outputs in a way a V-neck does not. So the verifier is a logistic regression on the
classifier's 44 centred log-probabilities, fitted on readings of the runtime itself on training
photos (`vlm-node fit-verifier`): readings that match a labelled sign of their class are
positives, everything else negatives. It only removes readings, never changes a class or value.

Centred log-probabilities (log p minus their mean over the 44 classes) equal the network's
logits divided by its temperature, less their mean: what the probabilities know, with the
softmax's per-crop normalisation taken out. Measured against the hidden layer (128 features,
which would need the ONNX graph changed) they separate as well on the held-out photos.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlm_node.analysis.gtsrb import CLASSIFIER_LABELS
from vlm_node.analysis.logistic import fit_logistic
from vlm_node.paths import ASSETS

DEFAULT_VERIFIER = ASSETS / "models" / "sign_classifier" / "sign_verifier.json"

FORMAT = "vlm_node sign verifier 1"

# Probabilities are float32 softmax outputs; the floor only guards log(0) (the smallest seen on
# the development photos is ~5e-10).
_FLOOR = 1e-30


def centred_log_probs(probs: np.ndarray) -> np.ndarray:
    """N x 44 calibrated probabilities -> N x 44 log-probabilities less their row mean (float64):
    the logits over the temperature, up to the softmax's per-row constant."""
    logp = np.log(np.maximum(np.asarray(probs, np.float64), _FLOOR))
    return logp - logp.mean(axis=1, keepdims=True)


@dataclass(frozen=True)
class SignVerifier:
    """Logistic regression over `centred_log_probs` (standardisation folded into `weights`)."""

    weights: np.ndarray  # one per CLASSIFIER_LABELS entry
    bias: float
    threshold: float  # a reading scoring below it is dropped
    classifier_sha256: str  # the fp32 classifier file whose probabilities it was fitted on
    training: dict[str, Any] = field(default_factory=dict)  # data, counts, settings

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """Probability-like score (0..1) that each row's reading is a real sign."""
        if len(probs) == 0:
            return np.zeros(0)
        z = centred_log_probs(probs) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))

    def accepts(self, probs: np.ndarray) -> np.ndarray:
        """Boolean per row: keep this reading."""
        return self.scores(probs) >= self.threshold

    def check_classifier(self, classifier_sha256: str, model: Path) -> None:
        """Raise ValueError unless this verifier was fitted on the classifier `model` (or on the
        fp32 source of an int8 copy, whose digest the caller passes)."""
        if classifier_sha256 != self.classifier_sha256:
            raise ValueError(
                f"the sign verifier was fitted on another classifier than {model} (sha256 "
                f"{self.classifier_sha256[:12]}..., this one {classifier_sha256[:12]}...): fit "
                "one for it with `vlm-node fit-verifier`, or set analysis.ocr.verifier: false")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "labels": list(CLASSIFIER_LABELS),
                "weights": [round(float(w), 8) for w in self.weights],
                "bias": round(float(self.bias), 8), "threshold": round(float(self.threshold), 8),
                "features": "centred log-probabilities of the classifier's 44 outputs",
                "classifier_sha256": self.classifier_sha256, "training": self.training}

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path = DEFAULT_VERIFIER) -> "SignVerifier":
        data = json.loads(Path(path).read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a sign verifier file ({FORMAT!r})")
        if tuple(data["labels"]) != CLASSIFIER_LABELS:
            raise ValueError(f"{path}: its labels do not match vlm_node.analysis.gtsrb")
        if len(data["weights"]) != len(CLASSIFIER_LABELS):
            raise ValueError(f"{path}: {len(data['weights'])} weights for "
                             f"{len(CLASSIFIER_LABELS)} classes")
        return cls(np.asarray(data["weights"], np.float64), float(data["bias"]),
                   float(data["threshold"]), str(data["classifier_sha256"]),
                   dict(data.get("training", {})))


def fit_verifier(probs: np.ndarray, positive: np.ndarray, classifier_sha256: str,
                 l2: float = 10.0, keep: float = 0.99, iterations: int = 3000,
                 learning_rate: float = 0.1, training: dict[str, Any] | None = None
                 ) -> SignVerifier:
    """Fit on readings' probabilities (N x 44) and whether each was a real sign of its class.

    Full-batch gradient descent (deterministic: the same file from the same readings), features
    standardised, both classes weighted equally (real signs outnumber false readings 3-4 to 1),
    L2 `l2` (10: chosen by 5-fold cross-validation by photo on the training photos; 1 overfit,
    100 separated less). The threshold keeps `keep` of the training positives: a real sign lost
    is a reading lost, so it is set on the signs, not on the false readings."""
    positive = np.asarray(positive, bool)
    if positive.all() or not positive.any():
        raise ValueError("fitting a verifier needs both real signs and false readings")
    weights, bias = fit_logistic(centred_log_probs(probs), positive, l2, iterations,
                                 learning_rate)
    unfitted = SignVerifier(weights, bias, 0.0, classifier_sha256)
    # scored as `accepts` scores them (all rows in one product): a subset's product can round
    # the last bit otherwise, and `keep` 1.0 then rejected the real reading it was set on
    pos_scores = unfitted.scores(np.asarray(probs))[positive]
    threshold = float(np.quantile(pos_scores, 1.0 - keep)) if keep < 1.0 else \
        float(pos_scores.min())
    return SignVerifier(weights, bias, threshold, classifier_sha256, dict(training or {}))
