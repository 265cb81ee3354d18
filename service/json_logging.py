"""Structured logs: one JSON object per line on stderr.

Every record has ``time``, ``level``, ``logger``, ``message`` and ``pid``; records logged while a request
is served also carry ``request_id`` (and the access line ``method``, ``path``, ``status``,
``duration_ms``, passed as ``extra``). A traceback is folded into the ``exception`` field, so a
record is always exactly one line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import orjson

from service.request_hooks import current_request_id

# Attributes a caller may pass with ``extra=`` that become fields of the JSON object.
EXTRA_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "remote_addr")


def _utc_time(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "time": _utc_time(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which gunicorn worker
        }
        if getattr(record, "request_id", None) is None:
            request_id = current_request_id()
            if request_id is not None:
                entry["request_id"] = request_id
        for name in EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:  # orjson: an access line per request is on the hot path
            return orjson.dumps(entry, default=str).decode()
        except TypeError:
            return json.dumps(entry, default=str, ensure_ascii=False)


class _ServiceHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (as ``logging.lastResort`` does), and
    marks the handler this module installed, so configuring again replaces it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str, fmt: str = "json") -> None:
    """Install one stderr handler on the root logger (JSON or plain text); idempotent."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(handler)
    handler = _ServiceHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
