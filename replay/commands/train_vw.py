"""`python -m replay train-vw LOGS --out MODEL [--redis URL --title T]`: offline warm start.

Learns a VW ``cb_explore_adf`` model from logged impressions (each row once, in timestamp order,
cost = -reward with the logged propensity) and saves it. With ``--redis`` and ``--title`` it also
publishes the model for that title: the service's workers load it within a request or two and
the trainer continues from it, starting at the end of the title's log as it is at publish time
(the decisions already in the exported logs are not learned twice; decisions served between the
export and the publish are not learned at all, so publish soon after exporting).
"""

from __future__ import annotations

import argparse
import os
import time

from replay.cli import CliError
from replay.commands._common import add_logs_argument, add_sentinel_arguments, redis_client


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_logs_argument(parser)
    parser.add_argument("--out", required=True, help="where to save the model (VW binary model file)")
    parser.add_argument("--title", help="learn only this title's rows (required with --redis: the title to publish to)")
    parser.add_argument("--init", metavar="MODEL", help="continue training a saved model instead of a new one")
    parser.add_argument("--exploration", default=os.environ.get("VW_EXPLORATION", "squarecb"),
                        help="exploration of a new model: squarecb, epsilon, bag, cover or softmax "
                             "(bandit.vw_policy.EXPLORATIONS; default: $VW_EXPLORATION or squarecb)")
    parser.add_argument("--epsilon", type=float, default=float(os.environ.get("VW_EPSILON", 0.05)))
    parser.add_argument("--gamma-scale", type=float, default=float(os.environ.get("VW_GAMMA_SCALE", 10.0)))
    parser.add_argument("--min-learn-p", type=float, default=float(os.environ.get("VW_MIN_LEARN_P", 0.2)),
                        help="floor on logged propensities when learning (importance weight cap; default 0.2)")
    parser.add_argument("--redis", help="publish the model to this Redis (the service's REDIS_URL)")
    parser.add_argument("--prefix", default=os.environ.get("KEY_PREFIX", "aw"),
                        help="the service's KEY_PREFIX (default: $KEY_PREFIX or aw)")
    add_sentinel_arguments(parser)


def _decisions(frame, title: str | None):
    from bandit.vw_offline import LoggedDecision

    rows = frame.sort_values("timestamp", kind="stable")
    if title is not None:
        rows = rows[rows["title"] == title]
    # Without a candidates column, a title's candidates are every artwork logged for it.
    logged = rows.groupby("title")["artwork"].agg(lambda s: tuple(sorted(set(s)))).to_dict()
    cols = set(rows.columns)
    for r in rows.itertuples(index=False):
        cands = getattr(r, "candidates", None) if "candidates" in cols else None
        yield LoggedDecision(
            context=getattr(r, "context", None) if "context" in cols else None,
            segment=getattr(r, "segment", None) if "segment" in cols else None,
            candidates=tuple(cands) if cands else logged[r.title],
            artwork=r.artwork,
            propensity=float(r.propensity),
            reward=float(r.reward),
        )


def run(args: argparse.Namespace) -> int:
    from bandit.vw_offline import learn_logged
    from bandit.vw_policy import VWConfig, VWConfigError, VWModel
    from replay.logs import LogSchemaError, load_logs

    if args.redis and not args.title:
        raise CliError("--redis needs --title: the title whose model to replace")
    try:
        frame = load_logs(args.logs, args.format)
    except LogSchemaError as exc:
        raise CliError(str(exc)) from None
    if args.title is not None and not (frame["title"] == args.title).any():
        raise CliError(f"no rows of title {args.title!r} in {args.logs}")
    try:
        if args.init:
            with open(args.init, "rb") as fh:
                model = VWModel.from_bytes(fh.read())
        else:
            model = VWModel.new(VWConfig(args.exploration, epsilon=args.epsilon, gamma_scale=args.gamma_scale))
    except OSError as exc:
        raise CliError(f"--init {args.init}: {exc.strerror}") from None
    except (VWConfigError, RuntimeError) as exc:
        raise CliError(f"cannot create the model: {exc}") from None
    started = time.perf_counter()
    if not 0 < args.min_learn_p <= 1:
        raise CliError(f"--min-learn-p must be in (0, 1], got {args.min_learn_p}")
    report = learn_logged(model, _decisions(frame, args.title), args.min_learn_p)
    elapsed = time.perf_counter() - started
    if report.learned == 0:
        raise CliError(f"no row could be learned ({report.first_skip})")
    data = model.to_bytes()
    model.close()
    try:
        with open(args.out, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise CliError(f"--out {args.out}: {exc.strerror}") from None
    print(
        f"learned {report.learned} rows ({report.with_features} with full VW features), skipped {report.skipped}"
        f"{f' (first: {report.first_skip})' if report.first_skip else ''}; mean reward "
        f"{report.reward_sum / report.learned:.4f}; {report.learned / max(elapsed, 1e-9):,.0f} rows/s"
    )
    print(f"model: {args.out} ({len(data):,} bytes)")
    if args.redis:
        version, position = _publish(args, data, report.learned)
        print(f"published to title {args.title!r}: version {version}, trainer continues after log entry {position}")
    return 0


def _publish(args: argparse.Namespace, data: bytes, learned: int) -> tuple[int, str]:
    import redis  # noqa: PLC0415 - only this path talks to Redis

    from service.keys import Keys  # noqa: PLC0415
    from service.models import ModelStore  # noqa: PLC0415

    try:
        models = ModelStore(redis_client(args, args.redis), Keys(args.prefix))
        position = models.log_end(args.title)
        version = models.publish(args.title, data, position=position, learned=learned, digest=0,
                                 expected_version=None, source="warm-start")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except redis.RedisError as exc:
        raise CliError(f"cannot publish to {args.redis}: {exc}") from None
    return version, position
