"""A linear head of independent sigmoid detectors on frame embeddings, fitted in numpy (no torch): L2-regularised
logistic regression per label with balanced class weights, by scipy's L-BFGS, on standardised embeddings whose
scaling is then folded into the weights (the deployed head is one MatMul and one Add)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit


@dataclass
class LinearHead:
    """frame scores = sigmoid(embeddings @ weight + bias); weight (D, C), bias (C,)."""

    weight: np.ndarray
    bias: np.ndarray

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Sigmoid scores of (..., D) embeddings: (..., C)."""
        return expit(embeddings @ self.weight + self.bias).astype(np.float32)


def _balanced_weights(targets: np.ndarray) -> np.ndarray:
    """Per sample and label: positives and negatives of each label weigh half of the total each."""
    positives = targets.sum(axis=0).clip(1)
    negatives = (1 - targets).sum(axis=0).clip(1)
    n = len(targets)
    return np.where(targets > 0, n / (2 * positives), n / (2 * negatives))


def fit_head(embeddings: np.ndarray, targets: np.ndarray, l2: float = 0.1, iterations: int = 300) -> LinearHead:
    """Fit the head on (N, D) embeddings and (N, C) 0/1 frame targets."""
    mean, scale = embeddings.mean(axis=0), embeddings.std(axis=0) + 1e-6
    x = (embeddings - mean) / scale
    n, d = x.shape
    c = targets.shape[1]
    sample_weight = _balanced_weights(targets) / n

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * c].reshape(d, c), theta[d * c:]
        logits = x @ w + b
        value = -(sample_weight * (targets * log_expit(logits) + (1 - targets) * log_expit(-logits))).sum() + l2 / 2 * (w * w).sum()
        residual = sample_weight * (expit(logits) - targets)
        return value, np.concatenate([(x.T @ residual + l2 * w).ravel(), residual.sum(axis=0)])

    theta = minimize(loss, np.zeros(d * c + c), jac=True, method="L-BFGS-B", options={"maxiter": iterations}).x
    w, b = theta[: d * c].reshape(d, c), theta[d * c:]
    return LinearHead(w / scale[:, None], b - (mean / scale) @ w)
