"""Linear probes: how much of a label a frozen feature carries, measured the standard way.

A multinomial logistic regression on standardised features (statistics from the training
rows only), L2-regularised, fitted to convergence with L-BFGS in float64 so the result does
not depend on a learning rate or an iteration budget. The encoder study reports it for every
arm (contrastive, classification, random), so it must be deterministic: full-batch L-BFGS
from a zero start has no randomness at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vln_clip.errors import DataError


@dataclass
class ProbeResult:
    accuracy: float  # on the test rows
    train_accuracy: float
    majority: float  # accuracy of always answering the most frequent training label
    classes: int
    correct: np.ndarray  # [N_test] bool, for paired comparisons between encoders


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 l2: float = 1e-3, max_iter: int = 500) -> ProbeResult:
    """Fit on (train_x, train_y) and score on (test_x, test_y); labels are ints 0..K-1."""
    if len(train_x) == 0 or len(test_x) == 0:
        raise DataError("linear probe: empty train or test set; generate a larger world")
    if train_x.shape[1] != test_x.shape[1]:
        raise DataError(f"linear probe: train features are {train_x.shape[1]}-d, test {test_x.shape[1]}-d")
    k = int(max(train_y.max(), test_y.max())) + 1
    xt = torch.from_numpy(np.asarray(train_x, np.float64))
    mean, std = xt.mean(0), xt.std(0).clamp_min(1e-6)
    xt = (xt - mean) / std
    xv = (torch.from_numpy(np.asarray(test_x, np.float64)) - mean) / std
    yt = torch.from_numpy(np.asarray(train_y, np.int64))
    w = torch.zeros(xt.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        pred_v = (xv @ w + b).argmax(1).numpy()
        pred_t = (xt @ w + b).argmax(1).numpy()
    counts = np.bincount(np.asarray(train_y, np.int64), minlength=k)
    correct = pred_v == np.asarray(test_y)
    return ProbeResult(float(correct.mean()), float((pred_t == np.asarray(train_y)).mean()),
                       float((np.asarray(test_y) == counts.argmax()).mean()), k, correct)
