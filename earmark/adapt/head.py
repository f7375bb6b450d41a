"""A linear head of independent sigmoid detectors on frame embeddings, fitted in numpy (no torch, no scipy):
L2-regularised logistic regression per label with balanced class weights, by Newton's method, on standardised
embeddings whose scaling is then folded into the weights (the deployed head is one MatMul and one Add)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x), written as (1 + tanh(x / 2)) / 2, which cannot overflow."""
    return 0.5 + 0.5 * np.tanh(0.5 * logits)


@dataclass
class LinearHead:
    """frame scores = sigmoid(embeddings @ weight + bias); weight (D, C), bias (C,)."""

    weight: np.ndarray
    bias: np.ndarray

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Sigmoid scores of (..., D) embeddings: (..., C)."""
        return sigmoid(embeddings @ self.weight + self.bias).astype(np.float32)


def _balanced_weights(targets: np.ndarray) -> np.ndarray:
    """Per sample and label: positives and negatives of each label weigh half of the total each."""
    positives = targets.sum(axis=0).clip(1)
    negatives = (1 - targets).sum(axis=0).clip(1)
    n = len(targets)
    return np.where(targets > 0, n / (2 * positives), n / (2 * negatives))


def _losses(x: np.ndarray, targets: np.ndarray, weights: np.ndarray, penalty: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Each label's objective: sum of w * (softplus(z) - y z), the weighted cross-entropy, plus sum of l2 / 2 * w^2."""
    logits = x @ theta
    return (weights * (np.logaddexp(0.0, logits) - targets * logits)).sum(axis=0) + 0.5 * (penalty[:, None] * theta**2).sum(axis=0)


def fit_head(embeddings: np.ndarray, targets: np.ndarray, l2: float = 0.1, iterations: int = 50, tolerance: float = 1e-8) -> LinearHead:
    """Fit the head on (N, D) embeddings and (N, C) 0/1 frame targets (Newton steps, halved until the loss falls)."""
    mean, scale = embeddings.mean(axis=0), embeddings.std(axis=0) + 1e-6
    n, d = embeddings.shape
    x = np.hstack([(embeddings - mean) / scale, np.ones((n, 1))])  # the last column carries the bias
    targets = targets.astype(np.float64)
    weights = _balanced_weights(targets) / n
    penalty = np.append(np.full(d, l2), 0.0)  # the bias is not shrunk
    theta = np.zeros((d + 1, targets.shape[1]))
    losses = _losses(x, targets, weights, penalty, theta)
    for _ in range(iterations):
        probs = sigmoid(x @ theta)
        gradient = x.T @ (weights * (probs - targets)) + penalty[:, None] * theta
        if np.abs(gradient).max() < tolerance:
            break
        curvature = weights * probs * (1 - probs)
        hessians = np.stack([(x * curvature[:, [label]]).T @ x for label in range(theta.shape[1])]) + np.diag(penalty)
        step = np.linalg.solve(hessians, gradient.T[..., None])[..., 0].T
        size = np.ones(theta.shape[1])
        for _ in range(30):  # per label: halve the step until the objective does not rise
            trial = theta - size * step
            trial_losses = _losses(x, targets, weights, penalty, trial)
            rose = trial_losses > losses
            if not rose.any():
                break
            size = np.where(rose, size / 2, size)
        theta, losses = np.where(rose, theta, trial), np.where(rose, losses, trial_losses)  # a label that found no descent stays
    w, b = theta[:d], theta[d]
    return LinearHead(w / scale[:, None], b - (mean / scale) @ w)
