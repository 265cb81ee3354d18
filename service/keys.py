"""Every Redis key is built here.

A title's keys share the hash tag ``{t:<title>}`` and so one Redis Cluster slot: a decision or a
reward touches only that slot and can be one atomic script. Catalog keys share ``{catalog}``;
a profile's key has ``{p:<profile>}``. Ids are validated before they become part of a key, and
ids cannot contain braces, so no id can reach another title's or profile's keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from service.ids import check_id

_TOKEN = re.compile(r"[0-9a-f]{32}")
_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


@dataclass(frozen=True)
class Keys:
    prefix: str = "aw"

    def __post_init__(self) -> None:
        if _PREFIX.fullmatch(self.prefix) is None:
            raise ValueError(f"key prefix must be 1-64 characters of letters, digits, '_', '-', '.', got {self.prefix!r}")

    # catalog (one slot)
    @property
    def catalog(self) -> str:
        """Hash: title id -> title JSON."""
        return f"{self.prefix}:{{catalog}}:titles"

    @property
    def catalog_version(self) -> str:
        return f"{self.prefix}:{{catalog}}:version"

    @property
    def readiness_probe(self) -> str:
        """String written (and expiring) by ``/readyz`` to learn whether Redis accepts writes."""
        return f"{self.prefix}:{{catalog}}:ready-probe"

    @property
    def retired_titles(self) -> str:
        """Set of deleted titles whose logs are still exportable."""
        return f"{self.prefix}:{{catalog}}:retired"

    # per title (one slot per title)
    def _title(self, title: str) -> str:
        if not isinstance(title, str):  # InvalidInput, not the cache's TypeError on a list or dict
            check_id(title, "title")
        return _title_base(self.prefix, title)

    def arms(self, title: str) -> str:
        """Hash of counters: s|<artwork>, r|<artwork>, and per segment n|<seg>|<artwork>, s|<seg>|<artwork>..."""
        return f"{self._title(title)}:arms"

    def pending(self, title: str, token: str) -> str:
        """String of a decision awaiting its reward (``store.PENDING_LUA``); expires with the attribution window."""
        if _TOKEN.fullmatch(token) is None:
            raise ValueError("event token must be 32 hex digits")
        return f"{self._title(title)}:ev:{token}"

    def decision(self, title: str, token: str, bucket: int) -> tuple[str, str, str, str]:
        """arms, pending, log and traffic keys of one decision, in the decide script's order
        (the same strings as the single-key methods, built from one title lookup)."""
        if _TOKEN.fullmatch(token) is None:
            raise ValueError("event token must be 32 hex digits")
        base = self._title(title)
        return f"{base}:arms", f"{base}:ev:{token}", f"{base}:log", f"{base}:snap:{int(bucket)}"

    def log(self, title: str) -> str:
        """Stream of decision and reward records (capped)."""
        return f"{self._title(title)}:log"

    def traffic(self, title: str, bucket: int) -> str:
        """Hash: artwork -> impressions at the start of one minute (``store.SNAPSHOT_LUA``; expires).
        ("snap", not the "traffic" of the per-minute counts versions before kept: those expire unread.)"""
        return f"{self._title(title)}:snap:{int(bucket)}"

    def model(self, title: str) -> str:
        """Hash: the title's current VW model (version, bytes, stream position)."""
        return f"{self._title(title)}:model"

    def sticky(self, title: str, profile: str) -> str:
        """String "artwork|propensity|event_id" of a profile's first decision for a sticky title;
        expires with the title's sticky period. In the title's slot (written next to the decision)."""
        return f"{self._title(title)}:sticky:{check_id(profile, 'profile')}"

    # Personalizer-compatible surface: everything in the one slot ``{pz}`` (a rank is one script
    # over its event and the log; event ids are client-chosen, but the first braces of a key are
    # the prefix's ``{pz}``, so no id can move a key to another slot)
    @property
    def pz_config(self) -> str:
        """Hash: service and policy configuration JSON, and their version."""
        return f"{self.prefix}:{{pz}}:config"

    @property
    def pz_model(self) -> str:
        """Hash: the current model (version, bytes, trainer position, times)."""
        return f"{self.prefix}:{{pz}}:model"

    @property
    def pz_log(self) -> str:
        """Stream of rank, reward and activate records (capped)."""
        return f"{self.prefix}:{{pz}}:log"

    def pz_event(self, event_id: str) -> str:
        """Hash of an event inside its reward wait time (its answer, for client retries)."""
        return f"{self.prefix}:{{pz}}:ev:{event_id}"

    # per profile
    def profile(self, profile: str) -> str:
        return f"{self.prefix}:{{p:{check_id(profile, 'profile')}}}:profile"


@lru_cache(maxsize=65_536)
def _title_base(prefix: str, title: str) -> str:
    # Cached: the hot path builds several keys per title per request; ids are validated once.
    return f"{prefix}:{{t:{check_id(title, 'title')}}}"
