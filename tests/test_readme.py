"""The README's configuration table lists every environment variable the service reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import VARIABLES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_variable_is_documented(name):
    assert f"| `{name}` |" in README
