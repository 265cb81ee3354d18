"""Telemetry hooks. The app calls these; ``NullMetrics`` records nothing.

A Prometheus implementation plugs in by providing the same methods.
"""

from __future__ import annotations


class NullMetrics:
    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        pass

    def observe_decisions(self, decisions) -> None:
        pass

    def observe_reward(self, title: str, outcome) -> None:
        pass

    def observe_fallback(self, title: str, reason: str) -> None:
        pass

    def observe_store_error(self, operation: str, exc: BaseException) -> None:
        pass

    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain; version=0.0.4; charset=utf-8"
