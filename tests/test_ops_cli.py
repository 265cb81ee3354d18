"""``python -m service``: the ops commands change what ``/artwork`` serves."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.ops_cli import main

ROOT = Path(__file__).resolve().parent.parent
TITLE = "stranger-lights"


@pytest.fixture
def cli_env(monkeypatch, redis_url, key_prefix):
    """The command line reads the same variables as the web workers."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("KEY_PREFIX", key_prefix)


@pytest.fixture
def web(make_app, cli_env):
    """A web app on the same Redis and prefix (it seeds the demo catalog), re-reading the catalog every request."""
    return make_app(catalog_refresh_s=0).test_client()


def run(*argv: str, answer: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err, answers=io.StringIO(answer))
    return code, out.getvalue(), err.getvalue()


def served(web, title: str, n: int = 20) -> list[dict]:
    return [web.get(f"/artwork?profile=p{i}&title={title}").get_json() for i in range(n)]


def impressions(web, title: str) -> int:
    return web.get(f"/stats/{title}").get_json()["impressions"]


def test_pin_serves_that_artwork_and_set_policy_undoes_it(web):
    assert len({d["artwork"] for d in served(web, TITLE)}) > 1
    assert run("pin", TITLE, "str-3-ensemble")[0] == 0
    pinned = served(web, TITLE)
    assert {(d["artwork"], d["policy"], d["propensity"]) for d in pinned} == {("str-3-ensemble", "fixed", 1.0)}
    assert run("set-policy", TITLE, "thompson")[0] == 0
    after = served(web, TITLE, 40)
    assert {d["policy"] for d in after} == {"thompson"} and len({d["artwork"] for d in after}) > 1


def test_stats_prints_a_table_of_the_arm_counters(web):
    served(web, TITLE, 12)
    code, out, _ = run("stats", TITLE)
    rows = [line.split() for line in out.splitlines()[1:] if line.startswith(TITLE)]
    assert code == 0 and out.splitlines()[0].split()[:4] == ["title", "policy", "artwork", "impressions"]
    assert len(rows) == 4 and sum(int(r[3]) for r in rows) == 12
    code, out, _ = run("stats", "--json", TITLE)
    assert json.loads(out)["titles"][0]["impressions"] == 12


@pytest.mark.parametrize(
    ("argv", "answer", "forgotten"),
    [
        (("reset", TITLE), "y\n", True),
        (("reset", TITLE), "yes\n", True),
        (("reset", TITLE, "--yes"), "", True),
        (("reset", TITLE), "n\n", False),
        (("reset", TITLE), "", False),  # no answer (end of input) is a no
    ],
)
def test_reset_asks_for_confirmation(web, argv, answer, forgotten):
    served(web, TITLE, 5)
    code, out, err = run(*argv, answer=answer)
    assert (code == 0) is forgotten
    assert impressions(web, TITLE) == (0 if forgotten else 5)
    if "--yes" not in argv:
        assert "[y/N]" in err


def test_load_catalog_adds_titles_that_artwork_then_serves(web, tmp_path):
    path = tmp_path / "catalog.json"
    body = {"titles": [{"id": "new-show", "artworks": [{"id": "n1"}, {"id": "n2"}], "default": "n2", "policy": "fixed"}]}
    path.write_text(json.dumps(body))
    assert web.get("/artwork?profile=p&title=new-show").status_code == 404
    code, out, _ = run("load-catalog", str(path))
    assert code == 0 and "1 new" in out
    assert web.get("/artwork?profile=p&title=new-show").get_json()["artwork"] == "n2"


def _bad_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pin", TITLE, "nope"], "has no artwork 'nope'"),
        (["pin", "no-such-title", "a1"], "unknown title 'no-such-title'"),
        (["set-policy", TITLE, "greedy"], "unknown policy 'greedy'"),
        (["stats", "bad id!"], "unknown title"),
        (["load-catalog", "/no/such/file.json"], "cannot read catalog file"),
        (["load-catalog", "{tmp}/bad.json"], "not valid JSON"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_1(web, tmp_path, argv, message):
    _bad_file(tmp_path, "{not json")
    code, out, err = run(*[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


@pytest.mark.parametrize(
    ("argv", "env", "code", "message"),
    [
        (["stats"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, 1, "did not answer"),
        (["stats"], {"REDIS_TIMEOUT_MS": "soon"}, 1, "REDIS_TIMEOUT_MS"),
        (["frobnicate"], {}, 2, "invalid choice"),
        (["pin", TITLE], {}, 2, "required"),
    ],
)
def test_python_m_service_fails_without_a_traceback(argv, env, code, message):
    done = subprocess.run(
        [sys.executable, "-m", "service", *argv],
        cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == code
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1 and message in done.stderr


def test_reset_clears_everything_stats_shows_recent_shares_included(make_app, cli_env):
    web = make_app(catalog_refresh_s=0, stats_cache_s=0).test_client()
    served(web, TITLE, 30)
    before = web.get(f"/stats/{TITLE}").get_json()
    assert before["recent_decisions"] == 30 and before["impressions"] == 30
    assert sum(a["recent_share"] for a in before["artworks"]) == pytest.approx(1.0)
    assert sum(sum(h["counts"].values()) for t in web.get("/dashboard/data").get_json()["titles"] if t["title"] == TITLE for h in t["history"]) == 30
    assert run("reset", TITLE, "--yes")[0] == 0
    after = web.get(f"/stats/{TITLE}").get_json()
    assert after["impressions"] == 0 and after["recent_decisions"] == 0 and after["segments"] == {}
    assert all(a["recent_share"] is None and a["impressions"] == 0 for a in after["artworks"])
    history = next(t["history"] for t in web.get("/dashboard/data").get_json()["titles"] if t["title"] == TITLE)
    assert all(h["counts"] == {} for h in history)


def test_export_catalog_lets_replay_reproduce_the_secret_ab_split(web, tmp_path):
    """The exported file carries each title's secret salt: replay's ``ab:FILE`` assigns every
    profile the arm the service served it, which the public catalog (no salts) cannot."""
    from bandit.ab_assignment import assign
    from replay.policies import make_ab
    from replay.policy_base import PolicyOptions

    assert run("set-policy", TITLE, "ab")[0] == 0
    served_arms = {f"p{i}": d["artwork"] for i, d in enumerate(served(web, TITLE, 60))}
    path = tmp_path / "catalog.json"
    code, _, err = run("export-catalog", str(path))
    assert code == 0 and "salts" in err
    assert (path.stat().st_mode & 0o777) == 0o600
    exported = make_ab(str(path), PolicyOptions())
    public = tmp_path / "public.json"
    public.write_text(json.dumps({"titles": web.get("/catalog").get_json()["titles"]}))
    guessed = make_ab(str(public), PolicyOptions())
    title = next(t for t in web.get("/catalog").get_json()["titles"] if t["id"] == TITLE)
    arms = tuple(a["id"] for a in title["artworks"])

    def arms_by(policy):
        return {p: assign(policy._split(TITLE, arms), p).arm for p in served_arms}

    assert arms_by(exported) == served_arms
    assert arms_by(guessed) != served_arms


@pytest.mark.parametrize("argv", [["--help"], ["stats", "--help"]])
def test_ops_help_imports_no_pandas_or_scipy(argv):
    code = ("import sys\nfrom service.ops_cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'scipy', 'matplotlib'}), e.code,"
            " file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.stderr.strip().splitlines()[-1] == "[] 0", done.stderr
