"""Policy names -> factories: a spec on the command line is ``NAME`` or ``NAME:ARG`` (``table:PATH``).

Factories live with their policies (``replay.policies``, ``replay.vw_replay``) and are imported
only when their name is used, so VW loads only for ``vw`` and listing the names imports nothing.
To add a policy, write a factory ``(arg, options) -> Policy`` and ``register_policy`` it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from replay.policy_base import PolicyError, PolicyOptions

if TYPE_CHECKING:
    from replay.policy_base import Policy

PolicyFactory = Callable[[str | None, PolicyOptions], "Policy"]

# name -> "module:factory", or a factory registered at run time
POLICIES: dict[str, str | PolicyFactory] = {
    "uniform": "replay.policies:make_uniform",
    "logged": "replay.policies:make_logged",
    "ab": "replay.policies:make_ab",
    "table": "replay.policies:make_table",
    "thompson": "replay.policies:make_thompson",
    "vw": "replay.vw_replay:make_policy",
}


def register_policy(name: str, factory: PolicyFactory) -> None:
    """Make ``name`` (and ``name:ARG``) available to ``make_policy`` and the CLI."""
    if not name or ":" in name:
        raise PolicyError(f"policy name must be non-empty without ':', got {name!r}", name)
    POLICIES[name] = factory


def make_policy(spec: str, options: PolicyOptions | None = None) -> Policy:
    """Build a policy from ``NAME`` or ``NAME:ARG``."""
    name, _, arg = spec.partition(":")
    factory = POLICIES.get(name)
    if factory is None:
        raise PolicyError(f"unknown policy {name!r}; known: {', '.join(sorted(POLICIES))}", spec)
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
    return factory(arg or None, options or PolicyOptions())
