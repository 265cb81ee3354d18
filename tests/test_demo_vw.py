"""The README's `vw` learning demo (scripts/demo-vw) runs as documented, on a shorter window:
the served share of each device's preferred artwork rises from uniform to most of the traffic."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_vw_shows_a_vw_title_learning(redis_url):
    env = {**os.environ, "REDIS_URL": redis_url, "ATTRIBUTION_WINDOW_S": "8", "TRAINER_PUBLISH_S": "1", "DEMO_S": "30"}
    done = subprocess.run([str(ROOT / "scripts/demo-vw")], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    slices = [tuple(map(int, m)) for m in re.findall(r"tv +(\d+)%  phone +(\d+)%", done.stdout)]
    assert len(slices) == 3, done.stdout
    # first 10 s: uniform (no model before 8 s + 1 s grace + 1 s publish); last 10 s: learned
    assert all(share < 55 for share in slices[0]), done.stdout
    assert all(share >= 70 for share in slices[-1]), done.stdout
    # /explain names why: the nature artwork's largest contributions include the tv x artwork weights
    nature = re.search(r"^  nature +p=\S+ score [-+][\d.]+: (.*)$", done.stdout, re.M)
    assert nature and "C^device=tv*A^" in nature.group(1), done.stdout
    # it cleaned up after itself: no key of its prefix is left
    client = redis.Redis.from_url(redis_url)
    assert not any(k.startswith(b"demo-vw-") for k in client.scan_iter(count=1000))
