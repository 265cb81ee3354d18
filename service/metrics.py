"""Telemetry hooks. The app calls these; ``NullMetrics`` records nothing.

``service.prometheus_metrics.PrometheusMetrics`` provides the same methods (the app's default).
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

    def observe_model_version(self, title: str, version: float) -> None:
        """Called by whatever loads a title's model (e.g. a new VW model version)."""

    def totals(self) -> dict:
        """Health counters for the dashboard: fallbacks, store errors, responses by status class."""
        return {"fallbacks": {}, "store_errors": {}, "responses": {}}

    def render(self) -> tuple[bytes, str]:
        return b"", "text/plain; version=0.0.4; charset=utf-8"
