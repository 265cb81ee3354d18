"""The Personalizer service configuration and learning policy: validation and JSON shapes.

Durations are ISO 8601 (``PT10M``, ``P1D``, ``PT0H0M5S``); ``explorationPercentage`` is a
fraction in [0, 1] (Personalizer's own examples send 0.2 for 20 %).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from service.inputs import number
from service.personalizer.errors import BadRequest, personalizer_errors

DEFAULT_ARGUMENTS = "--cb_explore_adf --epsilon 0.2 --power_t 0 -l 0.001 --cb_type mtr -q ::"
LEARNING_MODES = ("Online", "Apprentice", "LoggingOnly")
AGGREGATIONS = ("earliest", "sum")
MIN_WAIT_S, MAX_WAIT_S = 5, 2 * 86_400
# VW options that would break serving or training here (files, daemons, input formats).
_FORBIDDEN_ARGS = re.compile(r"(^|\s)(-[idfcp]|--(data|initial_regressor|final_regressor|cache|cache_file|"
                             r"daemon|port|pid_file|json|dsjson|predictions|raw_predictions|readable_model|"
                             r"invert_hash|save_resume|output_model|audit|sendto))(\s|=|$)")
_DURATION = re.compile(r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?")
_CLOCK = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)")  # .NET TimeSpan: [d.]hh:mm:ss


def parse_duration(text: object, field: str) -> float:
    """Seconds of an ISO 8601 duration (days, hours, minutes, seconds) or a ``[d.]hh:mm:ss`` span."""
    if isinstance(text, str):
        m = _DURATION.fullmatch(text.strip())
        if m and text.strip() not in ("P", "PT") and any(m.groups()):
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return d * 86_400 + h * 3_600 + mi * 60 + s
        m = _CLOCK.fullmatch(text.strip())
        if m:
            d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            return d * 86_400 + h * 3_600 + mi * 60 + s
    raise BadRequest(f"{field} must be an ISO 8601 duration such as PT10M, got {text!r}", target=field)


def format_duration(seconds: float) -> str:
    total = round(seconds, 3)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    out = "P" + (f"{int(days)}D" if days else "")
    time = (f"{int(hours)}H" if hours else "") + (f"{int(minutes)}M" if minutes else "")
    if secs or not (days or hours or minutes):
        time += f"{secs:g}S"
    return out + ("T" + time if time else "")


def iso_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ServiceConfiguration:
    reward_wait_s: float = 600.0
    default_reward: float = 0.0
    reward_aggregation: str = "earliest"
    exploration: float = 0.2
    model_export_s: float = 300.0
    learning_mode: str = "Online"
    log_retention_days: int = 90
    last_edit: float = 0.0

    def to_json(self) -> dict:
        return {
            "rewardWaitTime": format_duration(self.reward_wait_s),
            "defaultReward": self.default_reward,
            "rewardAggregation": self.reward_aggregation,
            "explorationPercentage": self.exploration,
            "modelExportFrequency": format_duration(self.model_export_s),
            "logRetentionDays": self.log_retention_days,
            "learningMode": self.learning_mode,
            "lastConfigurationEditDate": iso_time(self.last_edit),
            "logMirrorEnabled": False,
            "isAutoOptimizationEnabled": False,
        }

    def stored(self) -> dict:
        return asdict(self)

    @classmethod
    def from_stored(cls, data: dict) -> ServiceConfiguration:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def updated(self, body: object, now: float) -> ServiceConfiguration:
        """This configuration with the fields a PUT body gives (validated); absent fields are kept."""
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object (the service configuration)")
        changes: dict = {"last_edit": now}
        if body.get("rewardWaitTime") is not None:
            wait = parse_duration(body["rewardWaitTime"], "rewardWaitTime")
            if not MIN_WAIT_S <= wait <= MAX_WAIT_S:
                raise BadRequest("rewardWaitTime must be between 5 seconds (PT5S) and 2 days (P2D)", target="rewardWaitTime")
            changes["reward_wait_s"] = wait
        if body.get("modelExportFrequency") is not None:
            every = parse_duration(body["modelExportFrequency"], "modelExportFrequency")
            if not 1 <= every <= MAX_WAIT_S:
                raise BadRequest("modelExportFrequency must be between PT1S and P2D", target="modelExportFrequency")
            changes["model_export_s"] = every
        if body.get("defaultReward") is not None:
            changes["default_reward"] = _number(body["defaultReward"], "defaultReward", -1.0, 1.0)
        if body.get("explorationPercentage") is not None:
            changes["exploration"] = _number(body["explorationPercentage"], "explorationPercentage", 0.0, 1.0)
        if body.get("rewardAggregation") is not None:
            agg = body["rewardAggregation"]
            if agg not in AGGREGATIONS:
                raise BadRequest(f"rewardAggregation must be one of {', '.join(AGGREGATIONS)}", target="rewardAggregation")
            changes["reward_aggregation"] = agg
        if body.get("learningMode") is not None:
            mode = body["learningMode"]
            if mode not in LEARNING_MODES:
                raise BadRequest(f"learningMode must be one of {', '.join(LEARNING_MODES)}", target="learningMode")
            changes["learning_mode"] = mode
        if body.get("logRetentionDays") is not None:
            days = body["logRetentionDays"]
            if isinstance(days, bool) or not isinstance(days, int) or not -1 <= days <= 3650:
                raise BadRequest("logRetentionDays must be an integer from -1 to 3650", target="logRetentionDays")
            changes["log_retention_days"] = days
        return replace(self, **changes)


def _number(value: object, field: str, lo: float, hi: float) -> float:
    with personalizer_errors():
        return number(value, field, lo, hi)


def check_policy(body: object) -> dict:
    """A PUT ``configurations/policy`` body: ``{"name", "arguments"}`` with usable VW arguments."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object {name, arguments}")
    name, arguments = body.get("name"), body.get("arguments")
    if not isinstance(name, str) or not 1 <= len(name) <= 256:
        raise BadRequest("policy name must be a string of 1-256 characters", target="name")
    if not isinstance(arguments, str) or not arguments.strip() or len(arguments) > 1024:
        raise BadRequest("policy arguments must be a non-empty string of VW arguments", target="arguments")
    if "--cb_explore_adf" not in arguments.split():
        raise BadRequest("policy arguments must include --cb_explore_adf", target="arguments")
    if _FORBIDDEN_ARGS.search(arguments):
        raise BadRequest("policy arguments may not name files, ports or input formats", target="arguments")
    return {"name": name, "arguments": " ".join(arguments.split())}
