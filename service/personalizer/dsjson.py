"""The Personalizer event log as VW ``dsjson`` (what ``vw --dsjson --cb_explore_adf`` reads).

``python -m service.personalizer.dsjson --redis URL --out FILE [--prefix P] [--include-open] [--cluster]``

One line per served decision: a single-slot event is one line; a multi-slot event one line per
slot (``EventId`` ``<event>/<slot>``, the slot's candidates only). Each line carries the label
(``_label_cost`` = minus the aggregated reward, or minus ``defaultReward`` when none came,
``_label_probability``, ``_label_Action`` 1-based, ``_labelIndex``), ``a`` (the ranking, 1-based
indices into ``_multi``) with ``p`` (its probabilities), the context under ``c`` with the
actions in ``c._multi`` (see ``service.personalizer.features``), ``Timestamp``, ``EventId``,
``VWState.m`` (the model version that ranked it); an event ranked with ``deferActivation``
and never activated has ``_skipLearn: true`` (VW skips it; ``replay`` leaves it out), and
``DeferredAction: true`` marks every deferred one. By default only events whose reward wait
has passed are written (their reward is final); ``--include-open`` adds the others.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

import orjson

from service.personalizer.configuration import iso_time
from service.personalizer.features import Action, action_json, context_json, slot_object
from service.personalizer.trainer import aggregate

_GRACE_MS = 1_000


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def dsjson_records(entries: Iterable, now_ms: int, rule: str, default: float, include_open: bool = False) -> list[dict]:
    """dsjson objects of the rank events in ``entries`` (raw stream entries, in log order)."""
    events: dict[str, dict] = {}
    for raw_id, fields in entries:
        kind, event_id = fields.get(b"type"), _text(fields.get(b"event", b""))
        if kind == b"rank":
            events[event_id] = {"ms": int(_text(raw_id).split("-")[0]), "record": orjson.loads(fields[b"record"]),
                                "rewards": [], "activated": False}
        elif kind == b"reward" and event_id in events:
            events[event_id]["rewards"].extend((s, float(v)) for s, v in orjson.loads(fields[b"value"]))
        elif kind == b"activate" and event_id in events:
            events[event_id]["activated"] = True
    out = []
    for event_id, ev in events.items():
        record = ev["record"]
        if not include_open and ev["ms"] + 1000 * float(record["wait"]) + _GRACE_MS > now_ms:
            continue
        actions = [Action(a["id"], tuple(a.get("features") or ())) for a in record["actions"]]
        header = {"Timestamp": iso_time(ev["ms"] / 1000), "Version": "1", "VWState": {"m": str(record.get("model", 0))}}
        if record.get("deferred"):
            header["DeferredAction"] = True
            if not ev["activated"]:
                header["_skipLearn"] = True
        if "slots" not in record:
            values = [v for _s, v in ev["rewards"]]
            reward = aggregate(values, rule) if values else default
            out.append(_line(header, event_id, record["context"], None, actions, record["a"], record["p"], reward))
            continue
        for n, slot in enumerate(record["slots"]):
            values = [v for s, v in ev["rewards"] if s == slot["id"] or (s is None and n == 0)]
            reward = aggregate(values, rule) if values else default
            cands = [actions[i] for i in slot["candidates"]]
            chosen = slot["chosen"]
            order = [chosen, *(i for i in range(len(cands)) if i != chosen)]
            extra = slot_object(slot["id"], slot.get("features") or ())
            out.append(_line(header, f"{event_id}/{slot['id']}", record["context"], extra, cands, order,
                             [slot["p"][i] for i in order], reward))
    return out


def _line(header: dict, event_id: str, context, extra, actions: list[Action], order: list[int], probs: list[float],
          reward: float) -> dict:
    chosen = order[0]
    return {
        "_label_cost": 0.0 - reward, "_label_probability": probs[0], "_label_Action": chosen + 1, "_labelIndex": chosen,
        **header, "EventId": event_id, "a": [i + 1 for i in order],
        "c": {**context_json(context, extra), "_multi": [action_json(a) for a in actions]},
        "p": probs,
    }


def main(argv: list[str] | None = None) -> int:
    import redis  # noqa: PLC0415 - only the command line needs a client

    from service.keys import Keys  # noqa: PLC0415
    from service.personalizer.store import PersonalizerStore  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="python -m service.personalizer.dsjson", description=__doc__.splitlines()[0])
    parser.add_argument("--redis", required=True, help="Redis URL of the service")
    parser.add_argument("--out", required=True, help="output file (dsjson: one JSON object per line)")
    parser.add_argument("--prefix", default="aw", help="the service's KEY_PREFIX (default aw)")
    parser.add_argument("--include-open", action="store_true", help="also events whose reward wait has not passed")
    parser.add_argument("--cluster", action="store_true", help="the URL names a node of a Redis Cluster")
    args = parser.parse_args(argv)
    try:
        if args.cluster:
            from redis.cluster import RedisCluster  # noqa: PLC0415

            client = RedisCluster.from_url(args.redis, socket_timeout=10)
        else:
            client = redis.Redis.from_url(args.redis, socket_timeout=10)
        store = PersonalizerStore(client, Keys(args.prefix), 1)
        config = store.snapshot().config
        now_s, now_us = store.client.time()
        entries, after = [], "0-0"
        while page := store.read_log(after, 10_000):
            entries += page
            after = _text(page[-1][0])
        records = dsjson_records(entries, now_s * 1000 + now_us // 1000, config.reward_aggregation,
                                 config.default_reward, args.include_open)
        with open(args.out, "wb") as fh:
            for rec in records:
                fh.write(orjson.dumps(rec) + b"\n")
    except (redis.RedisError, OSError, ValueError) as exc:
        print(f"dsjson export: {exc}", file=sys.stderr)
        return 1
    print(f"dsjson export: {len(records)} decisions written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
