"""The one exception base of ``bandit``: a malformed argument to an algorithm.

``argument`` names the offending argument when the raiser gives it. A ``ValueError``, so callers
validating input with ``except ValueError`` keep working.
"""

from __future__ import annotations


class BanditError(ValueError):
    """A malformed argument; the message (and ``argument`` when known) names it."""

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class BanditInputError(BanditError):
    """An argument to a bandit function is malformed; the message names the argument."""
