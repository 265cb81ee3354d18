"""The one exception base of ``replay``: every user-facing failure names what was wrong.

``argument`` is the offending input (a flag such as ``--window``, a file path, a policy spec or a
column) so the CLI's one error line (``replay.cli.main``) and callers can point at it. Subclasses
say which part of replay failed; all are ``ValueError`` so library callers that validate input
keep working.
"""

from __future__ import annotations


class ReplayError(ValueError):
    """A bad input or a failed replay command; ``argument`` names the offending input if known."""

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument
