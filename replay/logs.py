"""Logged impressions I/O: format detection, reading, validation, encoding and writing.

JSON Lines, CSV (optionally .gz) and Parquet, chosen by file name (``detect_format``); VW dsjson
(the Personalizer export, ``.dsjson``) is read, not written.

The schema is the one in SPEC.md ("Logged impressions"). Nothing is dropped or guessed: the first
row that breaks the schema raises ``LogSchemaError`` naming its line/row number and column (and
how many other rows break the same column).

``load_logs`` returns a pandas DataFrame with normalized dtypes (``timestamp`` as float epoch
seconds, ``candidates`` as tuples, ``context`` as dicts). ``encode_logs`` turns that table into
``LogArrays``: integer codes and numpy arrays in timestamp order, which is what estimators and
policies consume.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from replay.errors import ReplayError

REQUIRED = ("event_id", "timestamp", "profile", "title", "artwork", "propensity", "reward")
OPTIONAL = ("policy", "candidates", "context", "segment")
COLUMNS = REQUIRED + OPTIONAL
# The column ``load_logs(keep_event_id=False)`` puts in place of event_id: its hash (uint64).
EVENT_KEY = "_event_key"
_ID_COLUMNS = ("event_id", "profile", "title", "artwork")
FORMATS = ("jsonl", "csv", "parquet", "dsjson")
WRITE_FORMATS = ("jsonl", "csv", "parquet")
UNKNOWN_SEGMENT = "(none)"
UNNAMED_POLICY = "(unnamed)"  # the logging policy of rows without one


class LogSchemaError(ReplayError):
    """A log cannot be read, written or breaks the schema. ``row`` is a human label such as
    "line 12" or "row 3"; ``argument`` is the file."""

    def __init__(self, source: str, row: str | None, column: str | None, message: str):
        self.source, self.row, self.column, self.message = source, row, column, message
        where = ", ".join(p for p in (row, f"column '{column}'" if column else None) if p)
        super().__init__(f"{source}: {where}: {message}" if where else f"{source}: {message}", argument=source)


def detect_format(path: str | Path) -> str:
    suffixes = [s.lower() for s in Path(path).suffixes]
    name = "".join(suffixes[-2:]) if suffixes[-1:] == [".gz"] else "".join(suffixes[-1:])
    for fmt, exts in (("dsjson", (".dsjson", ".dsjson.gz")), ("jsonl", (".jsonl", ".ndjson", ".json", ".jsonl.gz")), ("csv", (".csv", ".csv.gz")),
                      ("parquet", (".parquet", ".pq"))):
        if name in exts:
            return fmt
    raise LogSchemaError(str(path), None, None, "cannot tell the format from the file name: use .jsonl, .csv or .parquet "
                         "(.jsonl.gz and .csv.gz are read and written compressed)")


def load_logs(path: str | Path, fmt: str | None = None, *, keep_event_id: bool = True) -> pd.DataFrame:
    """Read and validate a log file; ``fmt`` is one of FORMATS (default: from the file name).

    ``keep_event_id=False`` (what ``encode_logs`` callers use: LogArrays has no event ids) puts
    their hashes (``EVENT_KEY``, uint64) in place of the ids; from Parquet the ids are then hashed
    from the Arrow column, never made Python strings (nor validated).
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise LogSchemaError(str(path), None, None, f"format must be one of {FORMATS}, got {fmt!r}")
    if not path.is_file():
        raise LogSchemaError(str(path), None, None, "no such file")
    ids_checked = False
    if fmt == "jsonl":
        frame, labels = _read_jsonl(path)
    elif fmt == "dsjson":  # VW decision logs (the Personalizer export)
        from replay.dsjson import read_dsjson

        frame, labels = read_dsjson(path)
    elif fmt == "csv":
        frame, labels = _read_csv(path)
    else:
        frame, labels, ids_checked = _read_parquet(path, keep_event_id)
    keys = frame.pop(EVENT_KEY) if EVENT_KEY in frame.columns else None
    frame = validate_logs(frame, source=str(path), row_label=labels, event_id_skipped=ids_checked)
    if keep_event_id:
        return frame
    if keys is None and "event_id" in frame.columns:
        from replay.draws import event_key

        keys = event_key(frame["event_id"].astype(str).to_numpy(dtype=object))
    out = frame.drop(columns="event_id") if "event_id" in frame.columns else frame
    if keys is not None:
        out[EVENT_KEY] = np.asarray(keys, dtype=np.uint64)
    return out


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    records, lines = [], []
    opener = _open_text(path)
    with opener as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LogSchemaError(str(path), f"line {lineno}", None, f"not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise LogSchemaError(str(path), f"line {lineno}", None, "a record must be a JSON object")
            records.append(rec)
            lines.append(lineno)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=list(REQUIRED))
    line_arr = np.asarray(lines)
    return frame, lambda i: f"line {int(line_arr[i])}"


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _read_csv(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    try:
        # Everything as text: numbers and JSON cells are parsed by the validator, which can then
        # name the offending row instead of letting pandas guess a dtype.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[], skipinitialspace=False)
    except pd.errors.ParserError as exc:
        raise LogSchemaError(str(path), None, None, f"malformed CSV ({exc})") from None
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=list(REQUIRED))
    frame = frame.replace("", None)
    # line 1 is the header; assumes no quoted newlines inside cells (row number is exact anyway).
    return frame, lambda i: f"line {i + 2} (row {i + 1})"


# Text columns that repeat a few values: read as Arrow dictionaries, i.e. pandas categoricals
# (codes plus a handful of strings instead of a Python string per row).
_DICTIONARY_COLUMNS = ("profile", "title", "artwork", "policy", "segment")


def _read_parquet(path: Path, keep_event_id: bool = True) -> tuple[pd.DataFrame, Callable[[int], str], bool]:
    """The frame, its row labels, and whether ``event_id`` was left out (``keep_event_id=False``).

    Text columns come as dictionaries (pandas categoricals) and candidate lists as codes into
    their few distinct lists, so no column becomes a million Python objects.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
        schema = pfile.schema_arrow
        dictionary = [c for c in _DICTIONARY_COLUMNS if c in schema.names and _is_text(schema.field(c).type)]
        # Callers that encode (LogArrays has no event ids, only their hashes, the rows' keys for
        # random draws) never make them strings: a million unique strings are the most expensive
        # thing in the file (``check``, ``abtest``, ``train-vw`` and the other formats still validate them).
        ids_checked = not keep_event_id and "event_id" in schema.names
        columns = list(schema.names)
        kind = schema.field("candidates").type if "candidates" in columns else None
        listed = kind is not None and (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _is_text(kind.value_type)
        if listed:  # one pass over the file: the lists' artwork ids come dictionary-encoded too
            dictionary.append("candidates.list.element")
        table = pq.read_table(path, columns=columns, read_dictionary=dictionary) if columns else pa.table({})
        if listed:
            i = table.column_names.index("candidates")
            col = table.column(i).combine_chunks()
            table = table.remove_column(i).append_column(
                "candidates", _candidates_as_dictionary(col, lambda: pfile.read(columns=["candidates"]).column(0)))
        if ids_checked:  # hashed from the Arrow column (``replay.draws.event_key``), never Python strings
            from replay.draws import event_key

            keys = event_key(table.column("event_id"))
            table = table.drop_columns(["event_id"])
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise LogSchemaError(str(path), None, None, f"not a readable Parquet file ({exc})") from None
    frame = table.to_pandas()
    if ids_checked:
        frame[EVENT_KEY] = keys
    return frame, lambda i: f"row {i + 1}", ids_checked


def _candidates_as_dictionary(col, read_plain):
    """A list<string> candidates column as a dictionary of JSON texts (fast to validate).

    ``col`` has its artwork ids dictionary-encoded, so a row's list is a short run of small integer
    codes; rows are keyed by (length, codes as base-B digits) and factorized. Lists too long for
    an int64 key, or with a null id, take the general path: ``read_plain()``, for the validator.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    valid = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    lengths = np.asarray(pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    flat = col.flatten()  # values of the non-null lists, in row order
    if not pa.types.is_dictionary(flat.type):
        flat = flat.dictionary_encode()
    if flat.null_count:
        return read_plain()  # a null artwork id: let the validator name it
    words = flat.dictionary.to_pylist()
    codes = flat.indices.to_numpy(zero_copy_only=False)
    base = len(words) + 1
    max_len = int(lengths.max(initial=0))
    if max_len * math.log2(base) > 62:
        return read_plain()  # not an int64 key: general (slower) path
    key = np.zeros(len(lengths), dtype=np.int64)
    if valid.all() and (lengths == max_len).all():  # the usual log: every row lists the same number
        digits = codes.reshape(len(lengths), max_len)
        for j in range(max_len):
            key *= base
            key += digits[:, j] + 1
    else:
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for j in range(max_len):  # digit j of every list that has one
            has = lengths > j
            key[has] = key[has] * base + codes[starts[has] + j] + 1
    key = np.where(valid, key * (max_len + 1) + lengths, -1)
    row_codes, uniques = pd.factorize(key, use_na_sentinel=False)
    labels = []
    for u in uniques.tolist():
        if u < 0:
            labels.append(None)
            continue
        n_items, digits = u % (max_len + 1), u // (max_len + 1)
        items = []
        for _ in range(n_items):
            digits, d = divmod(digits, base)
            items.append(words[d - 1])
        labels.append(json.dumps(items[::-1]))
    texts = np.array(labels, dtype=object)
    none = np.flatnonzero(texts == None)  # noqa: E711 - object array comparison
    out_codes = row_codes.astype(np.int32)
    if none.size:
        out_codes[row_codes == none[0]] = -1
    return pa.DictionaryArray.from_arrays(pa.array(out_codes, mask=out_codes < 0),
                                          pa.array([t if t is not None else "" for t in labels], pa.string()))


def _is_text(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)


def validate_logs(
    frame: pd.DataFrame, source: str = "<logs>", row_label: Callable[[int], str] | None = None,
    event_id_skipped: bool = False,
) -> pd.DataFrame:
    """Check a raw table against the schema and return it normalized (a new frame).

    ``event_id_skipped``: the reader left ``event_id`` out on purpose (Parquet, see load_logs).

    Raises LogSchemaError for the first column found broken, naming its first bad row.
    """
    label = row_label or (lambda i: f"row {i + 1}")
    if not isinstance(frame, pd.DataFrame):
        raise LogSchemaError(source, None, None, "logs must be a table")
    missing = [c for c in REQUIRED if c not in frame.columns and not (c == "event_id" and event_id_skipped)]
    if missing:
        raise LogSchemaError(source, None, missing[0], f"required column missing (have: {', '.join(map(str, frame.columns))})")
    if len(frame) == 0:
        raise LogSchemaError(source, None, None, "no logged impressions")
    frame = frame.reset_index(drop=True)
    out: dict[str, object] = {}

    def fail(column: str, bad: np.ndarray, message: Callable[[int], str]) -> None:
        idx = np.flatnonzero(bad)
        if idx.size:
            first = int(idx[0])
            more = f" ({idx.size - 1} more rows with this problem)" if idx.size > 1 else ""
            raise LogSchemaError(source, label(first), column, message(first) + more)

    for col in _ID_COLUMNS:
        if col in frame.columns:
            out[col] = _string_column(frame[col], col, fail, required=True)
    if "event_id" in out and out["event_id"].nunique() != len(frame):
        dup = out["event_id"].duplicated(keep="first").to_numpy()
        ids = out["event_id"]
        fail("event_id", dup, lambda i: f"duplicate event_id {ids.iloc[i]!r} (event ids must be unique)")
    out["timestamp"] = _timestamp_column(frame["timestamp"], fail)
    prop = _numeric_column(frame["propensity"], "propensity", fail)
    fail("propensity", ~((prop > 0) & (prop <= 1)), lambda i: f"must be in (0, 1], got {prop[i]!r}")
    out["propensity"] = prop
    reward = _numeric_column(frame["reward"], "reward", fail)
    fail("reward", ~((reward >= 0) & (reward <= 1)), lambda i: f"must be in [0, 1], got {reward[i]!r}")
    out["reward"] = reward
    if "policy" in frame.columns:
        out["policy"] = _string_column(frame["policy"], "policy", fail, required=False)
    if "segment" in frame.columns:
        out["segment"] = _string_column(frame["segment"], "segment", fail, required=False)
    if "candidates" in frame.columns:
        codes, cands = _candidates_column(frame["candidates"], fail)
        art_codes, arts = pd.factorize(out["artwork"])
        combo_key = (codes.astype(np.int64) + 1) * len(arts) + art_codes
        keys = pd.unique(combo_key)
        bad_keys = [key for key in keys.tolist() if key >= len(arts) and arts[key % len(arts)] not in cands[key // len(arts) - 1]]
        if bad_keys:
            not_in = np.isin(combo_key, bad_keys)
            fail("candidates", not_in,
                 lambda i: f"the logged artwork {arts[art_codes[i]]!r} is not among the candidates {list(cands[codes[i]])}")
        table = np.empty(len(cands) + 1, dtype=object)
        table[:-1] = cands
        table[-1] = None
        out["candidates"] = pd.Series(table[codes], dtype=object)
    if "context" in frame.columns:
        out["context"] = pd.Series(_context_column(frame["context"], fail), dtype=object)
    return pd.DataFrame(out)


def _string_column(col: pd.Series, name: str, fail, required: bool) -> pd.Series:
    if isinstance(col.dtype, pd.CategoricalDtype):  # Parquet dictionaries: check each distinct value once
        codes = col.cat.codes.to_numpy()
        cats = list(col.cat.categories)
        is_missing = codes < 0
        if required:
            fail(name, is_missing, lambda i: "missing value")
        not_str = np.array([not isinstance(c, str) for c in cats] + [False])
        fail(name, not_str[codes], lambda i: f"must be a string, got {cats[codes[i]]!r}")
        empty = np.array([c == "" for c in cats] + [False])
        fail(name, empty[codes], lambda i: "empty string")
        return col
    is_missing = pd.isna(col).to_numpy()
    if required:
        fail(name, is_missing, lambda i: "missing value")
    if not pd.api.types.is_string_dtype(col.dtype) or col.dtype == object:
        values = col.astype(object).to_numpy()
        is_str = np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
        fail(name, ~is_missing & ~is_str, lambda i: f"must be a string, got {values[i]!r}")
        col = col.astype(object).where(~is_missing, None).astype("str") if not is_missing.any() else col.astype(object)
    lengths = col.str.len().to_numpy(dtype=float, na_value=np.nan)
    fail(name, lengths == 0, lambda i: "empty string")
    return col


def _numeric_column(col: pd.Series, name: str, fail) -> np.ndarray:
    if pd.api.types.is_bool_dtype(col.dtype):
        fail(name, np.ones(len(col), dtype=bool), lambda i: f"must be a number, got {col.iloc[i]!r}")
    if pd.api.types.is_numeric_dtype(col.dtype):
        values = col.to_numpy(dtype=float, na_value=np.nan)
        fail(name, np.isnan(values), lambda i: "missing value")
        return values
    raw = col.astype(object).to_numpy()
    is_bool = np.fromiter((isinstance(v, bool) for v in raw), dtype=bool, count=len(raw))
    fail(name, is_bool, lambda i: f"must be a number, got {raw[i]!r}")
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    missing = pd.isna(col).to_numpy()
    fail(name, missing, lambda i: "missing value")
    fail(name, np.isnan(values), lambda i: f"must be a number, got {raw[i]!r}")
    return values


def _timestamp_column(col: pd.Series, fail) -> np.ndarray:
    missing = pd.isna(col).to_numpy()
    fail("timestamp", missing, lambda i: "missing value")
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        ts = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float)
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = col.to_numpy(dtype=float)
        fail("timestamp", ~np.isfinite(values), lambda i: f"must be epoch seconds or ISO-8601, got {values[i]!r}")
        return values
    raw = col.astype(object).to_numpy()
    numeric = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    out = numeric.copy()
    is_text = np.isnan(numeric)
    if is_text.any():
        text = pd.Series(raw[is_text]).map(lambda v: v if isinstance(v, str) else None)
        parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        secs = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=float, na_value=np.nan)
        out[is_text] = secs
    fail("timestamp", ~np.isfinite(out), lambda i: f"must be epoch seconds or ISO-8601, got {raw[i]!r}")
    return out


def _candidates_column(col: pd.Series, fail) -> tuple[np.ndarray, list[tuple[str, ...] | None]]:
    """Per-row codes into a list of distinct candidate tuples (None = not given).

    Only distinct values are parsed: logs repeat a handful of candidate lists millions of times.
    """
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, uniques = col.cat.codes.to_numpy(), list(col.cat.categories)
    else:
        raw = col.astype(object).to_numpy()
        keyed = [v if v is None or isinstance(v, str | float) else _list_key(v) for v in raw]
        codes, uniques = pd.factorize(pd.Series(keyed, dtype=object), use_na_sentinel=True)
        uniques = list(uniques)
    parsed: list[tuple[str, ...] | None] = []
    problems: list[str | None] = []
    for v in uniques:
        tup, why = _parse_candidates(v)
        parsed.append(tup)
        problems.append(why)
    bad_codes = np.array([p is not None for p in problems] + [False])  # last entry: missing (-1)
    fail("candidates", bad_codes[codes], lambda i: problems[codes[i]] or "")
    return np.asarray(codes), parsed


def _list_key(v) -> object:
    if isinstance(v, np.ndarray):
        v = v.tolist()
    return tuple(v) if isinstance(v, list | tuple) else repr(v)


def _parse_candidates(v) -> tuple[tuple[str, ...] | None, str | None]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            return None, f"must be a JSON list of strings, got {v!r}"
        if isinstance(v, list):
            v = tuple(v)
    if not isinstance(v, tuple) or not v or not all(isinstance(x, str) and x for x in v):
        return None, f"must be a non-empty list of artwork ids, got {v!r}"
    if len(set(v)) != len(v):
        return None, f"lists an artwork twice: {list(v)}"
    return v, None


def _context_column(col: pd.Series, fail) -> list[dict | None]:
    raw = col.astype(object).to_numpy()
    out: list[dict | None] = []
    bad = np.zeros(len(raw), dtype=bool)
    for i, v in enumerate(raw):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(None)
            continue
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                v = None
        if not isinstance(v, dict):
            bad[i] = True
            out.append(None)
            continue
        out.append({k: x for k, x in v.items() if x is not None})
    fail("context", bad, lambda i: f"must be a JSON object, got {raw[i]!r}")
    return out


@dataclass(frozen=True)
class LogArrays:
    """Logs as arrays, rows in timestamp order (stable: ties keep file order).

    Artworks are coded per title: ``arms[t]`` lists title t's artworks and ``action`` is the
    slot of the logged artwork in its title's list, so policy matrices are (n, K) with K the
    largest number of artworks of any title. ``mask[i, j]`` says slot j was a candidate in row i
    (from the ``candidates`` column when given, otherwise every artwork logged for the title).
    """

    titles: tuple[str, ...]
    arms: tuple[tuple[str, ...], ...]
    segments: tuple[str, ...]
    title: np.ndarray  # (n,) int
    action: np.ndarray  # (n,) int slot in arms[title]
    segment: np.ndarray  # (n,) int index in segments
    propensity: np.ndarray
    reward: np.ndarray
    mask: np.ndarray  # (n, K) bool
    profile: np.ndarray  # (n,) int codes into profiles
    profiles: tuple[str, ...]
    logging_policy: np.ndarray  # (n,) int codes into logging_policies
    logging_policies: tuple[str, ...]
    order: np.ndarray  # (n,) row positions in the validated frame
    features: np.ndarray | None = None  # (n, d) numeric context features, standardized later
    feature_names: tuple[str, ...] = ()
    has_segment: bool = False
    has_candidates: bool = False
    # Rows sharing a title and candidate set share a code: combo_mask[combo[i]] == mask[i] and
    # combo_title[combo[i]] == title[i]. Fixed policies compute one row per combination.
    combo: np.ndarray | None = None  # (n,) int
    combo_mask: np.ndarray | None = None  # (C, K) bool
    combo_title: np.ndarray | None = None  # (C,) int
    contexts: np.ndarray | None = None  # (n,) object: each row's logged context dict (or None), for VW
    combo_slots: tuple[tuple[int, ...], ...] = ()  # per combination: its candidates' slots, in logged order
    # A per-row key that does not depend on where the row sits (its timestamp's bits): cross-fitting
    # folds hash it, so a partitioned engine assigns every row the fold the in-memory one does.
    row_key: np.ndarray | None = None  # (n,) uint64
    # The hash of each row's event id (``replay.draws.event_key``): unique per row, so replay's and
    # the bootstrap's draws, functions of it, are independent across rows and the same on any engine.
    event_key: np.ndarray | None = None  # (n,) uint64

    @property
    def n(self) -> int:
        return int(self.title.size)

    @property
    def k(self) -> int:
        return int(self.mask.shape[1])

    def take(self, rows: np.ndarray) -> LogArrays:
        """A sub-log (rows in the given order); used to evaluate per segment or per partition."""
        f = self.features[rows] if self.features is not None else None
        return LogArrays(
            self.titles, self.arms, self.segments, self.title[rows], self.action[rows], self.segment[rows],
            self.propensity[rows], self.reward[rows], self.mask[rows], self.profile[rows], self.profiles,
            self.logging_policy[rows], self.logging_policies, self.order[rows], f, self.feature_names,
            self.has_segment, self.has_candidates,
            None if self.combo is None else self.combo[rows], self.combo_mask, self.combo_title,
            None if self.contexts is None else self.contexts[rows], self.combo_slots,
            None if self.row_key is None else self.row_key[rows],
            None if self.event_key is None else self.event_key[rows],
        )


def encode_logs(frame: pd.DataFrame, *, fill_features: bool = True) -> LogArrays:
    """Encode a validated frame (from ``load_logs`` or ``validate_logs``) into LogArrays.
    ``fill_features=False``: missing context values stay NaN (in one partition of a log, which the
    whole log's means fill: ``replay.partitioned``)."""
    ts = frame["timestamp"].to_numpy(dtype=float)
    if np.all(ts[1:] >= ts[:-1]):  # already in time order (exports and simulations are): no copy
        order, df = np.arange(len(frame)), frame
    else:
        order = np.argsort(ts, kind="stable")
        df = frame.iloc[order]
    title_codes, titles = _factorize_sorted(df["title"])
    # Distinct candidate lists per row (a handful), so per-row work stays vectorized.
    if "candidates" in df.columns:
        cand_codes, cand_uniques = _factorize_lists(df["candidates"].to_numpy(dtype=object))
    else:
        cand_codes, cand_uniques = None, []
    art_codes, art_names = pd.factorize(df["artwork"])
    pair_codes, pair_keys = pd.factorize(title_codes.astype(np.int64) * len(art_names) + art_codes)
    pairs = [(key // len(art_names), art_names[key % len(art_names)]) for key in pair_keys.tolist()]
    # Each title's artworks: its candidates (first-seen order, which is the catalog order the
    # service logs), then any other logged artwork, sorted.
    arms_lists: list[dict[str, None]] = [{} for _ in titles]
    if cand_codes is not None:
        n_c = len(cand_uniques) + 1
        for key in pd.unique(title_codes.astype(np.int64) * n_c + (cand_codes + 1)).tolist():  # first-seen order
            t, c = divmod(key, n_c)
            if c > 0:
                arms_lists[t].update(dict.fromkeys(cand_uniques[c - 1]))
    logged_by_title: list[set[str]] = [set() for _ in titles]
    for t, art in pairs:
        logged_by_title[t].add(art)
    for t in range(len(titles)):
        arms_lists[t].update(dict.fromkeys(sorted(logged_by_title[t] - set(arms_lists[t]))))
    arms = tuple(tuple(a) for a in arms_lists)
    k = max(len(a) for a in arms)
    slot_of_pair = np.array([arms[t].index(art) for t, art in pairs], dtype=np.int32)
    action = slot_of_pair[pair_codes]
    n_arms = np.array([len(a) for a in arms])
    if cand_codes is not None:
        n_c = len(cand_uniques) + 1
        combo_codes, combos = pd.factorize(title_codes.astype(np.int64) * n_c + (cand_codes + 1))
        combo_mask = np.zeros((combos.size, k), dtype=bool)
        combo_title = (combos // n_c).astype(np.int64)
        combo_slots = []
        for j, key in enumerate(combos.tolist()):
            t, c = divmod(key, n_c)
            slots = tuple(range(n_arms[t])) if c == 0 else tuple(arms[t].index(art) for art in cand_uniques[c - 1])
            combo_mask[j, list(slots)] = True
            combo_slots.append(slots)
    else:
        combo_codes, combo_title = title_codes, np.arange(len(titles))
        combo_mask = np.arange(k)[None, :] < n_arms[:, None]
        combo_slots = [tuple(range(m)) for m in n_arms.tolist()]
    mask = combo_mask[combo_codes]
    if "segment" in df.columns:
        seg_codes, segments = _factorize_filled(df["segment"], UNKNOWN_SEGMENT)
        has_segment = True
    else:
        seg_codes, segments, has_segment = np.zeros(len(df), dtype=np.int64), [UNKNOWN_SEGMENT], False
    prof_codes, profiles = pd.factorize(df["profile"])
    if "policy" in df.columns:
        pol_codes, pols = _factorize_filled(df["policy"], UNNAMED_POLICY)
    else:
        pol_codes, pols = np.zeros(len(df), dtype=np.int64), [UNNAMED_POLICY]
    features, names = _context_features(df["context"], fill_features) if "context" in df.columns else (None, ())
    return LogArrays(
        titles=tuple(titles), arms=arms, segments=tuple(segments),
        title=title_codes.astype(np.int32), action=action.astype(np.int32), segment=np.asarray(seg_codes, np.int32),
        propensity=df["propensity"].to_numpy(dtype=float), reward=df["reward"].to_numpy(dtype=float), mask=mask,
        profile=prof_codes.astype(np.int64), profiles=tuple(profiles),
        logging_policy=np.asarray(pol_codes, np.int32), logging_policies=tuple(pols), order=order,
        features=features, feature_names=names, has_segment=has_segment, has_candidates=cand_codes is not None,
        combo=np.asarray(combo_codes, dtype=np.int64), combo_mask=combo_mask, combo_title=combo_title,
        contexts=df["context"].to_numpy(dtype=object) if "context" in df.columns else None,
        combo_slots=tuple(combo_slots), row_key=df["timestamp"].to_numpy(dtype=np.float64).view(np.uint64),
        event_key=_event_keys(df),
    )


def _event_keys(df: pd.DataFrame) -> np.ndarray | None:
    """``event_key`` as ``load_logs(keep_event_id=False)`` left it, or hashed from ``event_id``."""
    from replay.draws import event_key

    if EVENT_KEY in df.columns:
        return df[EVENT_KEY].to_numpy(dtype=np.uint64)
    if "event_id" in df.columns:
        return event_key(df["event_id"].astype(str).to_numpy(dtype=object))
    return None


def _factorize_lists(values: np.ndarray) -> tuple[np.ndarray, list]:
    """Codes of a column of candidate tuples (-1: None) and the tuple of each code.

    Grouped by object identity: validation makes equal lists one shared tuple, so this is a
    hash of a million integers, not of a million tuples. Equal lists that are distinct objects
    just get two codes, which nothing downstream minds.
    """
    ids = np.fromiter(map(id, values), dtype=np.int64, count=len(values))
    codes, _ = pd.factorize(ids)
    first = np.empty(codes.max(initial=-1) + 1, dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # each code's first row (the last write wins)
    uniques = [values[i] for i in first.tolist()]
    if any(u is None for u in uniques):
        keep = np.array([u is not None for u in uniques])
        remap = np.where(keep, np.cumsum(keep) - 1, -1)
        codes, uniques = remap[codes], [u for u in uniques if u is not None]
    return codes, uniques


def _factorize_filled(col: pd.Series, fill: str):
    """Sorted codes of a text column, missing values as ``fill`` (categoricals stay categorical)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        if col.isna().any():
            col = col.cat.add_categories([fill]).fillna(fill)
        return _factorize_sorted(col)
    return pd.factorize(col.astype(object).fillna(fill), sort=True)


def _factorize_sorted(col: pd.Series):
    """Codes in the values' sort order: a categorical's own order is its Parquet dictionary's (first
    appearance in the file, or the first file's after a concat), which would make a title's code
    depend on which file was read first."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.cat.reorder_categories(sorted(col.cat.categories))
    return pd.factorize(col, sort=True)


def _context_features(col: pd.Series, fill: bool = True) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Numeric and boolean context values as columns (missing -> column mean, or NaN without
    ``fill``); text is ignored."""
    records = [c if c is not None else {} for c in col.to_numpy(dtype=object)]
    table = pd.DataFrame.from_records(records)
    keep: list[str] = []
    for name in table.columns:
        if name == "segment":
            continue
        values = pd.to_numeric(table[name], errors="coerce") if table[name].dtype != bool else table[name].astype(float)
        non_null = table[name].notna()
        if non_null.any() and values[non_null].notna().all():
            table[name] = values.astype(float)
            keep.append(str(name))
    if not keep:
        return None, ()
    x = table[keep].to_numpy(dtype=float)
    if fill:
        means = np.nanmean(x, axis=0)
        x = np.where(np.isnan(x), means[None, :], x)
    return x, tuple(keep)


def _write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    """One JSON object per row, numbers in their shortest exact form (pandas' ``to_json`` keeps
    10 decimals: a propensity or feature value below 1e-10 would be written as 0); missing
    values as null; ``.gz`` compressed."""
    import gzip

    import orjson

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "wb") as out:
        for row in frame.to_dict(orient="records"):
            out.write(orjson.dumps(row, default=_isoformat, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE))


def _isoformat(value):
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_partitioned(frame: pd.DataFrame, folder: str | Path) -> list[Path]:
    """Write a log table as hive-partitioned Parquet, one folder per UTC day of ``timestamp``
    (``folder/date=YYYY-MM-DD/part-0.parquet``): what ``evaluate --engine dask`` reads. Returns the files."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise LogSchemaError(str(folder), None, None, "the output folder exists and is not empty")
    days = pd.to_datetime(frame["timestamp"].to_numpy(dtype=float), unit="s", utc=True).strftime("%Y-%m-%d")
    files = []
    for day in sorted(set(days)):
        path = folder / f"date={day}" / "part-0.parquet"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LogSchemaError(str(folder), None, None, f"cannot write: {exc.strerror or exc}") from None
        write_logs(frame[np.asarray(days == day)], path, "parquet")
        files.append(path)
    return files


def write_logs(frame: pd.DataFrame, path: str | Path, fmt: str | None = None) -> None:
    """Write a log table (SPEC columns, in SPEC order) as JSON Lines, CSV or Parquet.

    CSV carries ``candidates`` and ``context`` as JSON text (SPEC); Parquet keeps ``candidates``
    a list of strings but ``context`` JSON text, since free-form objects have no one struct type.
    The loader reads all three back to the same table.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in WRITE_FORMATS:
        raise LogSchemaError(str(path), None, None, f"can write {WRITE_FORMATS}, not {fmt!r}")
    out = frame[[c for c in COLUMNS if c in frame.columns]].copy()
    as_json = ("candidates", "context") if fmt == "csv" else ("context",) if fmt == "parquet" else ()
    for col in as_json:
        if col in out.columns:
            out[col] = [None if v is None else json.dumps(list(v) if col == "candidates" else v, separators=(",", ":"))
                        for v in out[col]]
    if fmt == "parquet" and "candidates" in out.columns:
        out["candidates"] = [None if v is None else list(v) for v in out["candidates"]]
    try:
        if fmt == "parquet":
            out.to_parquet(path, index=False)
        elif fmt == "csv":
            out.to_csv(path, index=False)
        else:
            _write_jsonl(out, path)
    except OSError as exc:
        raise LogSchemaError(str(path), None, None, f"cannot write: {exc.strerror or exc}") from None
