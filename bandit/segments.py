"""The viewer segments every policy and log knows (no numpy/scipy: the service's catalog and the
CLIs' --help import this)."""

SEGMENTS: tuple[str, ...] = ("new", "low", "regular", "power")
