"""The M2N2 digits world: evolve a 64-256-10 MLP from two experts on scikit-learn's 8×8 digits.

Abrantes, Lange & Tang (GECCO 2025), "evolution from pre-trained models":

* data: ``sklearn.datasets.load_digits`` (bundled with scikit-learn, 1797 images, no download),
  pixels scaled to [0, 1] (÷ 16); the first 80 % (1437) are the training set, the last 20 % (360)
  the test set, unshuffled;
* model: x → ReLU(x W1ᵀ + b1) W2ᵀ + b2 with W1 ∈ ℝ^{256×64}, W2 ∈ ℝ^{10×256}; the genome is the
  flat vector [W1, b1, W2, b2] (19 210 genes) with ``group_boundaries`` at each tensor;
* experts: each from its own seeded initialisation (PyTorch's default U(−1/√fan_in, 1/√fan_in)),
  trained with Adam (lr 0.003), 10 full-batch steps of cross-entropy on the training images of
  digits 0-4 (expert A) or 5-9 (expert B);
* fitness: per-example correctness on the training set (M2N2's score matrix row), reported
  figure: test accuracy of the best-on-train genome.

Budget counting: one call of :meth:`DigitsProblem.train_correct` (or :meth:`evaluate`) is one
forward pass of one genome over the whole training set and counts as **1 forward pass** in
``forward_passes``, as in the paper's budget; test-set passes are reporting, not search, and are
not counted.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from evomerge.drivers.base import derive_seed

SHAPES = (("fc1.weight", (256, 64)), ("fc1.bias", (256,)), ("fc2.weight", (10, 256)), ("fc2.bias", (10,)))
TRAIN_FRACTION = 0.8


@contextlib.contextmanager
def _one_thread():
    """Run torch ops on one intra-op thread, then restore the caller's setting.

    The matrices here are tiny (1437×64 by 64×256): extra threads only add synchronisation, and
    on a busy machine a 2-thread forward pass measured 20× slower (118 ms vs 5.7 ms)."""
    before = torch.get_num_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _boundaries() -> list[int]:
    out = [0]
    for _, shape in SHAPES:
        out.append(out[-1] + int(np.prod(shape)))
    return out


class DigitsSpace:
    """SearchSpace over the flat MLP weights; ``to_recipe`` returns the weight vector itself.

    The box is [−1, 1] per weight (far outside anything training or crossover produces; it only
    keeps random draws finite), x0 = 0 and σ0 = 0.01 (the paper's from-scratch N(0, 0.01²)).
    """

    def __init__(self):
        self.group_boundaries = _boundaries()
        self.dim = self.group_boundaries[-1]
        self.lower = np.full(self.dim, -1.0)
        self.upper = np.full(self.dim, 1.0)
        self.x0 = np.zeros(self.dim)
        self.sigma0 = 0.01
        self.names = [f"{name}[{i}]" for name, shape in SHAPES for i in range(int(np.prod(shape)))]

    def to_recipe(self, genome: np.ndarray) -> np.ndarray:
        return np.asarray(genome, dtype=np.float32).reshape(self.dim).copy()

    def from_recipe(self, recipe: Any) -> np.ndarray:
        return np.asarray(recipe, dtype=float).reshape(self.dim).copy()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "digits-mlp",
            "dim": self.dim,
            "tensors": [n for n, _ in SHAPES],
            "group_boundaries": self.group_boundaries,
        }


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): first 80 % / last 20 %, unshuffled, pixels ÷ 16."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    n = int(TRAIN_FRACTION * len(x))
    return x[:n], y[:n], x[n:], y[n:]


def _unflatten(v: torch.Tensor) -> list[torch.Tensor]:
    b = _boundaries()
    return [v[b[i] : b[i + 1]].view(shape) for i, (_, shape) in enumerate(SHAPES)]


def _logits(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2 = _unflatten(v)
    return torch.addmm(b2, torch.relu(torch.addmm(b1, x, w1.T)), w2.T)


def train_expert(x: np.ndarray, y: np.ndarray, seed: int, *, steps: int = 10, lr: float = 0.003) -> np.ndarray:
    """An MLP from a seeded default initialisation after ``steps`` full-batch Adam steps on (x, y)."""
    with _one_thread():
        return _train_expert(x, y, seed, steps=steps, lr=lr)


def _train_expert(x: np.ndarray, y: np.ndarray, seed: int, *, steps: int, lr: float) -> np.ndarray:
    g = torch.Generator().manual_seed(int(seed))
    params = []
    for _, shape in SHAPES:
        fan_in = 64 if shape[0] == 256 else 256  # the layer's input width
        bound = 1.0 / np.sqrt(fan_in)
        params.append((torch.rand(shape, generator=g) * 2 - 1) * bound)
    params = [p.requires_grad_() for p in params]
    opt = torch.optim.Adam(params, lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(steps):
        opt.zero_grad()
        w1, b1, w2, b2 = params
        logits = torch.addmm(b2, torch.relu(torch.addmm(b1, xt, w1.T)), w2.T)
        torch.nn.functional.cross_entropy(logits, yt).backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in params]).double().numpy()


class DigitsProblem:
    """Data, the two experts and a counted evaluator for one seed.

    ``experts``: array (2, D) — expert A (digits 0-4) and B (5-9); their initialisations are
    seeded with ``derive_seed(seed, 0)`` and ``derive_seed(seed, 1)`` (different inits, as two
    independently pre-trained models would be).
    """

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.space = DigitsSpace()
        self.x_train, self.y_train, self.x_test, self.y_test = load_split()
        self._xt = torch.from_numpy(self.x_train)
        self._xe = torch.from_numpy(self.x_test)
        self._yt = torch.from_numpy(self.y_train)
        self._ye = torch.from_numpy(self.y_test)
        low = self.y_train < 5
        self.experts = np.stack(
            [
                train_expert(self.x_train[low], self.y_train[low], derive_seed(self.seed, 0)),
                train_expert(self.x_train[~low], self.y_train[~low], derive_seed(self.seed, 1)),
            ]
        )
        self.forward_passes = 0

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    def _vec(self, genome: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(genome, dtype=np.float32).reshape(self.space.dim))

    @torch.no_grad()
    def train_correct(self, genome: np.ndarray) -> np.ndarray:
        """Boolean correctness per training example; counts one forward pass."""
        self.forward_passes += 1
        with _one_thread():
            return (_logits(self._vec(genome), self._xt).argmax(1) == self._yt).numpy()

    @torch.no_grad()
    def test_accuracy(self, genome: np.ndarray) -> float:
        """Accuracy on the 360 test images (not counted as a forward pass)."""
        with _one_thread():
            return float((_logits(self._vec(genome), self._xe).argmax(1) == self._ye).float().mean())

    def evaluate(self, genome: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(per-example train correctness (bool, n_train), train accuracy, test accuracy)."""
        correct = self.train_correct(genome)
        return correct, float(correct.mean()), self.test_accuracy(genome)

    @torch.no_grad()
    def accuracy_on_digits(self, genome: np.ndarray, digits: Any, split: str = "train") -> float:
        """Accuracy restricted to the given digit classes (e.g. an expert on its own half)."""
        x, y = (self._xt, self._yt) if split == "train" else (self._xe, self._ye)
        mask = torch.isin(y, torch.as_tensor(list(digits)))
        with _one_thread():
            pred = _logits(self._vec(genome), x[mask]).argmax(1)
        return float((pred == y[mask]).float().mean())
