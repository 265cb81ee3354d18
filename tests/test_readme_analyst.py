"""The README's analyst walkthrough runs verbatim, top to bottom, in a fresh copy of the repository.

The copy holds the files git would clone (tracked, plus new files not ignored) and reuses this
checkout's ``.venv`` (so ``scripts/setup`` finds it installed); commands run with a PATH without
the venv, as a new user would, through the console scripts. Afterwards git must see no new
untracked files: whatever the examples leave is ignored (``out/``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
START = "From a fresh clone, top to bottom"


def walkthrough() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index(START):], re.S)
    assert block, "the README's analyst walkthrough block is missing"
    return [line for line in block.group(1).splitlines() if line.strip()]


def fresh_copy(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout


@pytest.mark.slow
def test_readme_analyst_walkthrough_runs_verbatim_in_a_fresh_clone(tmp_path):
    clone = tmp_path / "clone"
    clone.mkdir()
    fresh_copy(clone)
    git(clone, "init", "-q")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "clone")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    lines = walkthrough()
    assert lines[0] == "scripts/setup" and any(line.startswith(".venv/bin/replay compare") for line in lines)
    for line in lines:
        done = subprocess.run(["bash", "-c", line], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, line
    for png in ("estimates.png", "ab.png", "demo.png", "regret.png"):
        assert (clone / "out" / png).read_bytes()[:4] == b"\x89PNG"
    untracked = git(clone, "status", "--porcelain", "--untracked-files=all")
    assert untracked == "", f"files the examples leave that .gitignore misses:\n{untracked}"
