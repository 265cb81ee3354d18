"""Identifier rules shared by the HTTP boundary and the Redis key builder.

Profile, title and artwork ids: 1-128 characters of letters, digits, ``_ - . :`` (SPEC).
Event ids are ``<title>~<32 hex digits>``: 128 random bits make them unguessable, and carrying
the title lets a reward reach the title's keys (one Redis Cluster slot) in one atomic script.
"""

from __future__ import annotations

import re
import secrets

from service.errors import InvalidInput

ID_PATTERN = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
EVENT_PATTERN = re.compile(r"([A-Za-z0-9_.:\-]{1,128})~([0-9a-f]{32})")


def check_id(value: object, name: str) -> str:
    """Return ``value`` if it is a valid id, else raise InvalidInput naming ``name``."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise InvalidInput(f"{name} must be 1-128 characters of letters, digits, '_', '-', '.', ':'", field=name)
    return value


def new_event_id(title: str) -> str:
    return new_event_ids([title])[0]


def new_event_ids(titles: list[str]) -> list[str]:
    """Event ids for a batch: one call to the OS's random source for all of them."""
    tokens = secrets.token_hex(16 * len(titles))
    return [f"{t}~{tokens[32 * i:32 * i + 32]}" for i, t in enumerate(titles)]


def parse_event_id(value: object) -> tuple[str, str]:
    """(title, token) of an event id, or InvalidInput."""
    match = EVENT_PATTERN.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidInput("event_id must be an id returned by /artwork ('<title>~<32 hex digits>')", field="event_id")
    return match.group(1), match.group(2)
