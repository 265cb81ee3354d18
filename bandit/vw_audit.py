"""Why a VW model scores an artwork as it does: each feature's contribution, by name.

VW's ``--audit`` prints ``name:hash:value:weight`` for every feature of every example, but to
the process's stdout, from C++: a web worker cannot capture it without redirecting a shared
file descriptor. The same numbers come from the model itself: a ``cb_explore_adf`` model scores
each candidate by a linear function of that candidate's features (its ``A`` line, the shared
``U``/``C`` lines VW copies onto it, VW's constant, and the ``-q`` products), so each
feature's contribution is its value times its weight, looked up with VW's own hashing
(``hash_space`` / ``hash_feature`` of the workspace, VW's quadratic hash for the products).
The contributions sum to the score VW predicts for the candidate (``tests/test_vw_audit.py``
checks it against VW's own prediction), and their names are the audit's:
``U^aff.comedy*A^tag=comedic``.

VW predicts a *cost* (``bandit.vw_policy.cost_of``: -reward); scores and contributions here are
in reward units (negated), so a positive contribution pushes the artwork up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import vowpalwabbit

from bandit.errors import BanditError

FNV_PRIME = 16777619  # VW's quadratic feature hash: (FNV_PRIME * first) ^ second
CONSTANT_HASH = 11650396  # VW's constant (bias) feature, present on every example
CONSTANT_NAME = "Constant"  # as VW's audit names it
_QUADRATIC = re.compile(r"(?:--quadratic|-q)\s+(\S\S)")
_OTHER_INTERACTIONS = re.compile(r"--cubic|--interactions|--experimental_full_name_interactions|--noconstant")


class AuditError(BanditError):
    """A model or example cannot be audited; the message says why."""


@dataclass(frozen=True)
class Contribution:
    feature: str  # VW audit name: namespace^name, products joined by *
    value: float  # the feature's value in the example (products: the product of values)
    weight: float  # the model's weight, in reward units
    contribution: float  # value * weight


@dataclass(frozen=True)
class ActionAudit:
    """One candidate's score (predicted reward) and every feature's contribution to it,
    largest magnitude first."""

    score: float
    contributions: tuple[Contribution, ...]

    def top(self, n: int) -> tuple[Contribution, ...]:
        return self.contributions[:n]


def audit(workspace: vowpalwabbit.Workspace, lines: Sequence[str]) -> tuple[ActionAudit, ...]:
    """Audit a multiline ADF example (``bandit.vw_features.ADFExample.lines()``: one ``shared``
    line, then one line per candidate) against a workspace's current weights."""
    args = workspace.get_arguments()
    if _OTHER_INTERACTIONS.search(args):
        raise AuditError(f"only -q interactions and the constant feature are audited; model arguments: {args.strip()}")
    pairs = _QUADRATIC.findall(args)
    stride = workspace.get_stride()
    mask = workspace.num_weights() * stride - 1
    hashes: dict[str, int] = {}

    def features(line: str) -> dict[str, list[tuple[str, int, float]]]:
        """namespace letter -> [(audit name, strided index, value)] of one line."""
        out: dict[str, list[tuple[str, int, float]]] = {}
        for part in line.split("|")[1:]:
            tokens = part.split()
            if not tokens:
                continue
            ns = tokens[0]
            if ns not in hashes:
                hashes[ns] = workspace.hash_space(ns)
            found = out.setdefault(ns[0], [])
            for token in tokens[1:]:
                name, _, value = token.partition(":")
                index = (workspace.hash_feature(name, hashes[ns]) * stride) & mask
                found.append((f"{ns}^{name}", index, float(value) if value else 1.0))
        return out

    if not lines or not lines[0].startswith("shared"):
        raise AuditError("lines must be a shared line followed by one line per candidate")
    shared = features(lines[0])
    audits = []
    for line in lines[1:]:
        own = features(line)
        merged: dict[str, list[tuple[str, int, float]]] = {}
        for source in (shared, own):  # VW copies the shared namespaces onto each candidate
            for ns, fs in source.items():
                merged.setdefault(ns, []).extend(fs)
        terms = [f for fs in merged.values() for f in fs]
        terms.append((CONSTANT_NAME, (CONSTANT_HASH * stride) & mask, 1.0))
        for first, second in pairs:
            for n1, i1, v1 in merged.get(first, ()):
                for n2, i2, v2 in merged.get(second, ()):
                    terms.append((f"{n1}*{n2}", ((FNV_PRIME * i1) ^ i2) & mask, v1 * v2))
        rows = []
        for name, index, value in terms:
            weight = -workspace.get_weight(index // stride)  # cost weight -> reward weight
            rows.append(Contribution(name, value, weight, value * weight))
        rows.sort(key=lambda c: -abs(c.contribution))
        audits.append(ActionAudit(sum(c.contribution for c in rows), tuple(rows)))
    return tuple(audits)
