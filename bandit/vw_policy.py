"""Vowpal Wabbit ``--cb_explore_adf`` as a contextual artwork policy: config, model, sampling.

``VWConfig`` says how a new model explores; a saved model carries its own arguments, so a
worker that loads a model explores as its trainer configured it. ``VWModel`` wraps a VW
workspace: ``pmf`` (predicted action distribution), ``learn`` (cost = -reward, with the logged
probability), and ``to_bytes`` / ``from_bytes`` for publishing. A workspace is not thread-safe,
so every call holds the model's lock (predict is ~20-60 µs, the lock is never contended long).

Exploration default: ``squarecb`` (Foster & Rakhlin 2020, VW's SquareCB). It explores in
proportion to how close an artwork's predicted reward is to the best one's, and less as data
accumulates (gamma grows like sqrt(t)): more clicks than epsilon-greedy's fixed uniform
share once the model has learned, and more exploration while it has not. Its propensities
can become small for clearly worse artworks, which makes IPS estimates of very different
policies noisier; ``VW_EXPLORATION=epsilon`` keeps a floor of epsilon/K instead.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import vowpalwabbit

try:  # VW's C++ binding, under the Python wrapper
    import pylibvw
except ImportError:  # pragma: no cover - every vowpalwabbit wheel ships it
    pylibvw = None

from bandit.errors import BanditError
from bandit.thompson import ThompsonDecision, decide_from_probabilities
from bandit.vw_audit import ActionAudit, audit

EXPLORATIONS: tuple[str, ...] = ("squarecb", "epsilon", "bag", "cover", "softmax")
INTERACTIONS: tuple[str, ...] = ("UA", "CA")
# Model bytes go through a file (VW's Python API saves and loads files); RAM-backed if possible.
_TMP_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class VWConfigError(BanditError):
    """A VW setting is malformed; the message names it."""


@dataclass(frozen=True)
class VWConfig:
    """How a new model learns and explores.

    exploration: one of ``EXPLORATIONS``; epsilon: uniform share (``epsilon``; also mixed into
    ``bag``/``cover``); gamma_scale: SquareCB's greediness scale (larger: exploits sooner);
    bag: policies of ``bag``/``cover``; lambda_: ``softmax`` inverse temperature; bits: hash size.
    min_learn_p: the learner's floor on a logged propensity (importance weight <= 1/min_learn_p):
    models learn in published batches from delayed rewards, and one click on an artwork explored
    at p = 0.01 (weight 100) flips the whole next batch to it; capping the weight at 5 trades a
    little bias on rarely explored artworks for stable learning (the logs keep the exact p).
    """

    exploration: str = "squarecb"
    epsilon: float = 0.05
    gamma_scale: float = 10.0
    bag: int = 5
    lambda_: float = 10.0
    bits: int = 18
    learning_rate: float = 0.1  # VW defaults to 0.5; batched, delayed updates are steadier with 0.1
    min_learn_p: float = 0.2

    def __post_init__(self) -> None:
        if self.exploration not in EXPLORATIONS:
            raise VWConfigError(f"exploration must be one of {', '.join(EXPLORATIONS)}, got {self.exploration!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise VWConfigError(f"epsilon must be in [0, 1], got {self.epsilon!r}")
        if not self.gamma_scale > 0:
            raise VWConfigError(f"gamma_scale must be > 0, got {self.gamma_scale!r}")
        if not 1 <= self.bag <= 64:
            raise VWConfigError(f"bag must be in [1, 64], got {self.bag!r}")
        if not self.lambda_ > 0:
            raise VWConfigError(f"lambda_ must be > 0, got {self.lambda_!r}")
        if not 10 <= self.bits <= 28:
            raise VWConfigError(f"bits must be in [10, 28], got {self.bits!r}")
        if not 0.0 < self.min_learn_p <= 1.0:
            raise VWConfigError(f"min_learn_p must be in (0, 1], got {self.min_learn_p!r}")
        if not self.learning_rate > 0:
            raise VWConfigError(f"learning_rate must be > 0, got {self.learning_rate!r}")

    def arguments(self) -> str:
        args = ["--cb_explore_adf", "--quiet", "-b", str(self.bits), "-l", repr(self.learning_rate)]
        args += [f"-q {q}" for q in INTERACTIONS]
        if self.exploration == "squarecb":
            args += ["--squarecb", "--gamma_scale", repr(self.gamma_scale)]
        elif self.exploration == "epsilon":
            args += ["--epsilon", repr(self.epsilon)]
        elif self.exploration == "bag":
            args += ["--bag", str(self.bag), "--epsilon", repr(self.epsilon)]
        elif self.exploration == "cover":
            args += ["--cover", str(self.bag), "--epsilon", repr(self.epsilon)]
        else:
            args += ["--softmax", "--lambda", repr(self.lambda_)]
        return " ".join(args)


class VWModel:
    """A VW contextual-bandit workspace (stateful: it learns); see the module doc."""

    def __init__(self, workspace: vowpalwabbit.Workspace):
        self._vw = workspace
        self._lock = threading.Lock()

    @classmethod
    def new(cls, config: VWConfig | None = None) -> VWModel:
        return cls(vowpalwabbit.Workspace((config or VWConfig()).arguments()))

    @classmethod
    def from_bytes(cls, data: bytes) -> VWModel:
        """A model saved by ``to_bytes`` (its exploration and features come with it)."""
        if not isinstance(data, bytes | bytearray) or not data:
            raise VWConfigError("data must be the non-empty bytes of a saved VW model")
        fd, path = tempfile.mkstemp(prefix="vw-model-", dir=_TMP_DIR)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return cls(vowpalwabbit.Workspace(f"--quiet -i {path}"))
        finally:
            os.unlink(path)

    def to_bytes(self) -> bytes:
        fd, path = tempfile.mkstemp(prefix="vw-model-", dir=_TMP_DIR)
        os.close(fd)
        try:
            with self._lock:
                self._vw.save(path)
            with open(path, "rb") as fh:
                return fh.read()
        finally:
            os.unlink(path)

    def pmf(self, lines: Sequence[str]) -> np.ndarray:
        """Action distribution for an unlabeled multiline example (shared line + actions)."""
        with self._lock:
            probs = self._vw.predict(list(lines))
        p = np.asarray(probs, dtype=float)
        total = p.sum()
        # VW's pmf is float32: renormalize so that the logged propensities sum to 1 exactly.
        return p / total if total > 0 else np.full(p.size, 1.0 / p.size)

    def learn(self, lines: Sequence[str]) -> None:
        """Learn one labeled multiline example (see ``ADFExample.lines(label)``)."""
        self.learn_text("\n".join(lines))

    def learn_text(self, text: str) -> None:
        """Learn one labeled multiline example given as its lines joined by newlines."""
        with self._lock:
            if pylibvw is None:
                self._vw.learn(text.split("\n"))
                return
            # Same parse and learn as Workspace.learn, minus its per-line Python Example wrappers
            # (3x faster: the trainer's budget is VW's own speed).
            examples = self._vw._parse(text)
            try:
                pylibvw.vw.learn_multi(self._vw, examples)
            finally:
                pylibvw.vw._finish_example_multi_ex(self._vw, examples)

    def audit(self, lines: Sequence[str]) -> tuple[ActionAudit, ...]:
        """Each candidate's score and named feature contributions (``bandit.vw_audit``)."""
        with self._lock:
            return audit(self._vw, lines)

    def scores(self, lines: Sequence[str]) -> np.ndarray:
        """VW's own score of each candidate (predicted reward: minus the cost it predicts), the
        number ``audit``'s contributions add up to."""
        with self._lock:
            examples = self._vw._parse("\n".join(lines))
            try:
                pylibvw.vw.predict_multi(self._vw, examples)
                return -np.array([e.get_partial_prediction() for e in examples[1:]], dtype=float)
            finally:
                pylibvw.vw._finish_example_multi_ex(self._vw, examples)

    @property
    def arguments(self) -> str:
        return self._vw.get_arguments()

    def close(self) -> None:
        with self._lock:
            self._vw.finish()


def uniform_pmf(k: int) -> np.ndarray:
    if k < 1:
        raise VWConfigError(f"k must be >= 1, got {k}")
    return np.full(k, 1.0 / k)


def sample_action(pmf: np.ndarray, rng: np.random.Generator) -> ThompsonDecision:
    """Draw an action index from ``pmf``; the propensity is the pmf's value for it."""
    return decide_from_probabilities(pmf, rng)


def learning_probability(propensity: float, min_learn_p: float) -> float:
    """The probability given to VW when learning: the logged one, floored (see ``VWConfig``)."""
    return max(float(propensity), float(min_learn_p))


def cost_of(reward: float) -> float:
    """VW minimizes cost: a click (reward 1) is cost -1, no click cost 0."""
    return -float(reward)
