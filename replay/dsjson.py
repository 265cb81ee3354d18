"""Reading VW ``dsjson`` decision logs (this service's Personalizer export, or logs kept from
Azure Personalizer) as replay's logged impressions.

One dsjson line becomes one row: ``event_id`` = ``EventId``; ``timestamp`` = ``Timestamp``;
``artwork`` = the chosen action's id (``_multi[_labelIndex]``'s ``_tag``, else its ``i.id``,
else ``action-<n>``); ``candidates`` = every action's id; ``propensity`` =
``_label_probability``; ``reward`` = ``-_label_cost`` (replay's schema wants [0, 1]: other rewards
are reported with their line); ``context`` = the context's features flattened to
``namespace.key`` names (strings and numbers as given; ``FromUrl``'s own features keep their key); ``profile`` and ``title`` =
``personalizer`` (dsjson has neither); ``policy`` = ``personalizer``. Lines with
``_skipLearn: true`` (a deferred decision that was never shown) are left out, as VW leaves them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from replay.logs import LogSchemaError, _open_text

POINT = "personalizer"
CONTEXT_KEY = "FromUrl"


def _action_id(action: object, n: int) -> str:
    if isinstance(action, dict):
        if isinstance(action.get("_tag"), str):
            return action["_tag"]
        ident = action.get("i")
        if isinstance(ident, dict) and isinstance(ident.get("id"), str):
            return ident["id"]
    return f"action-{n + 1}"


def _flatten(obj: object, prefix: str, out: dict) -> None:
    if isinstance(obj, list):
        for item in obj:
            _flatten(item, prefix, out)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(key, str) and not key.startswith("_"):
                if isinstance(value, dict | list):
                    _flatten(value, key, out)
                elif isinstance(value, str | int | float) and not isinstance(value, bool):
                    out[f"{prefix}.{key}" if prefix else key] = value
                elif value is True:
                    out[f"{prefix}.{key}" if prefix else key] = 1


def read_dsjson(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    rows, lines = [], []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"line {lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LogSchemaError(str(path), where, None, f"not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise LogSchemaError(str(path), where, None, "a dsjson line must be a JSON object")
            if rec.get("_skipLearn") is True:
                continue
            context = rec.get("c")
            multi = context.get("_multi") if isinstance(context, dict) else None
            if not isinstance(multi, list) or not multi:
                raise LogSchemaError(str(path), where, "c._multi", "a dsjson decision needs its actions in c._multi")
            for field in ("_label_cost", "_label_probability", "_labelIndex"):
                if field not in rec:
                    raise LogSchemaError(str(path), where, field, "missing (an unlabelled decision cannot be replayed)")
            index = rec["_labelIndex"]
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(multi):
                raise LogSchemaError(str(path), where, "_labelIndex", f"must index c._multi (0-{len(multi) - 1}), got {index!r}")
            cost = rec["_label_cost"]
            if isinstance(cost, bool) or not isinstance(cost, int | float):
                raise LogSchemaError(str(path), where, "_label_cost", f"must be a number, got {cost!r}")
            features: dict = {}
            # Personalizer's context container (``FromUrl``) is not a namespace of its own here.
            _flatten([v if k == CONTEXT_KEY else {k: v} for k, v in context.items() if k != "_multi"], "", features)
            ids = [_action_id(a, n) for n, a in enumerate(multi)]
            rows.append({
                "event_id": rec.get("EventId"), "timestamp": rec.get("Timestamp"), "profile": POINT, "title": POINT,
                "artwork": ids[index], "propensity": rec["_label_probability"], "reward": -cost + 0.0,
                "policy": POINT, "candidates": ids, "context": features,
            })
            lines.append(lineno)
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=["event_id"])
    line_arr = np.asarray(lines)
    return frame, lambda i: f"line {int(line_arr[i])}"
