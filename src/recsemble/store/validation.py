"""Input rules both store backends apply before touching the database.

A batch is checked whole before anything is written, so a rejected batch stores nothing. Each
error is a ValueError naming the field (`events[3].item_id: ...`) so the HTTP layer can turn
it into a clear 4xx answer. The rules are the same for SQLite and PostgreSQL: an id PostgreSQL
cannot store (a NUL character, a lone surrogate) is refused by SQLite too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from numbers import Real
from typing import Any

from recsemble.data.tables import id_problem
from recsemble.store.base import MAX_ID_LENGTH, MAX_TIMESTAMP, Event, Record

#: The two record kinds a store keeps.
KINDS = ("item", "user")

_INT64 = 2**63
#: The largest float32: models and retraining's file keep explicit values (ratings) as float32.
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class UniqueEvents:
    """A batch with its repeated event_ids removed (the first occurrence kept)."""

    events: list[Event]
    repeated: int  # later occurrences of an event_id already in the batch


def check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {list(KINDS)}, not {kind!r}")
    return str(kind)


def check_id(value: object, field: str) -> str:
    """A non-empty text id of at most MAX_ID_LENGTH characters that UTF-8 can carry."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{field}: must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{field}: longer than {MAX_ID_LENGTH} characters ({len(value)})")
    _check_text(value, field)
    return value


def check_entity_id(value: str, field: str) -> str:
    """A user or item id that a data file can hold too: retraining reads the store's events
    and records back from one, so an id it would strip or read as missing ("None") would
    fail every retraining (the HTTP API refuses the same ids)."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"{field}: {problem}")
    return value


def check_ids(values: Sequence[object], field: str) -> list[str]:
    if isinstance(values, str):  # its characters would be looked up as ids
        raise ValueError(f"{field}: must be a list of ids, not the string {values!r}")
    return [check_id(value, f"{field}[{position}]") for position, value in enumerate(values)]


def unique_events(events: Sequence[Event]) -> UniqueEvents:
    """Check every event of a batch, then drop repeats of an event_id within it. An event
    without a time (timestamp 0) is stored with the append's clock, as the API stamps one: the
    time must be stored, or a restart and a retraining would each give it another."""
    for position, event in enumerate(events):
        check_event(event, f"events[{position}]")
    seen: set[str] = set()
    kept = []
    now = int(time.time())
    for event in events:
        if event.event_id not in seen:
            seen.add(event.event_id)
            kept.append(_as_stored(event, now))
    return UniqueEvents(kept, len(events) - len(kept))


def _as_stored(event: Event, now: int) -> Event:
    """The event as both backends store it: a time (see unique_events) and a float value (a
    numpy float32 or a Fraction is a number too, but not one SQLite can bind)."""
    value = None if event.value is None else float(event.value)
    if event.timestamp and (value is None or type(event.value) is float):
        return event
    return replace(event, timestamp=event.timestamp or now, value=value)


def check_event(event: object, where: str) -> None:
    if not isinstance(event, Event):
        raise ValueError(f"{where}: must be an Event, not {type(event).__name__}")
    for field in ("event_id", "user_id", "item_id", "type"):
        check_id(getattr(event, field), f"{where}.{field}")
    for field in ("user_id", "item_id"):
        check_entity_id(getattr(event, field), f"{where}.{field}")
    timestamp = event.timestamp
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError(f"{where}.timestamp: must be an integer (epoch seconds)")
    if not -_INT64 <= timestamp < _INT64:
        raise ValueError(f"{where}.timestamp: out of the 64-bit range")
    if abs(timestamp) > MAX_TIMESTAMP:
        raise ValueError(
            f"{where}.timestamp: {timestamp} is after 2200 as epoch seconds (milliseconds?); "
            "give epoch seconds"
        )
    value = event.value
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(f"{where}.value: must be a number or null")
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            raise ValueError(f"{where}.value: out of the floating-point range") from None
        if not math.isfinite(number):
            raise ValueError(f"{where}.value: must be finite, not {value!r}")
        if abs(number) > FLOAT32_MAX:  # retraining keeps values as float32: inf, refused
            raise ValueError(
                f"{where}.value: {value!r} is beyond the float32 range the models keep values "
                f"in (at most {FLOAT32_MAX:.4g} in size)"
            )


def unique_records(records: Sequence[Record]) -> list[tuple[str, str]]:
    """(id, attributes as JSON text) per record, checked; a repeated id keeps its last value."""
    latest: dict[str, str] = {}
    for position, record in enumerate(records):
        where = f"records[{position}]"
        if not isinstance(record, Record):
            raise ValueError(f"{where}: must be a Record, not {type(record).__name__}")
        record_id = check_entity_id(check_id(record.id, f"{where}.id"), f"{where}.id")
        latest[record_id] = encode_attributes(record.attributes, f"{where}.attributes")
    return list(latest.items())


def encode_attributes(attributes: object, field: str) -> str:
    """The attribute object as JSON text: string keys, finite numbers, no NUL characters."""
    if not isinstance(attributes, Mapping):
        raise ValueError(f"{field}: must be an object, not {type(attributes).__name__}")
    for key in attributes:
        if not isinstance(key, str):
            raise ValueError(f"{field}: keys must be strings, not {key!r}")
    try:
        text = json.dumps(dict(attributes), allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field}: not JSON-serialisable with finite numbers ({exc})") from None
    _check_text(text, field)
    if "\\u0000" in text:
        raise ValueError(f"{field}: contains a NUL character")
    return text


def decode_attributes(text: str | Mapping[str, Any]) -> dict[str, Any]:
    """Attributes read back (PostgreSQL's jsonb arrives decoded, SQLite's text does not)."""
    if isinstance(text, Mapping):
        return dict(text)
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"stored attributes are not a JSON object: {text[:80]!r}")
    return value


#: The event types appends must have (JSON list in store_meta; absent: any type).
READ_EVENT_TYPES = "SELECT value FROM store_meta WHERE key = 'event_types'"


def encode_event_types(types: Collection[str] | None) -> str | None:
    """The types as store_meta holds them (None: the key is removed), checked as ids."""
    if types is None:
        return None
    if isinstance(types, str) or not types:  # a string's characters would be the types
        raise ValueError(f"event types: must be a non-empty list of types or None, not {types!r}")
    return json.dumps(sorted({check_id(t, "event types") for t in types}))


def check_event_types(events: Sequence[Event], stored: tuple[Any, ...] | None) -> None:
    """ValueError naming the batch's first event of a type outside the stored list (the
    store_meta row read inside the append's transaction; None: any type is accepted)."""
    if stored is None:
        return
    allowed = json.loads(stored[0])
    for position, event in enumerate(events):
        if event.type not in allowed:
            raise ValueError(
                f"events[{position}].type: {event.type!r} is not one of the event types this "
                f"store accepts ({', '.join(allowed)}: the served model's event_weights); add "
                "it to [data] event_weights and retrain to accept it"
            )


def check_limit(limit: object) -> int:
    """A positive 64-bit integer (SQLite could not bind a larger one: OverflowError)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit < _INT64:
        raise ValueError(f"limit: must be a positive 64-bit integer, not {limit!r}")
    return limit


def check_cursor(cursor: object) -> int:
    if isinstance(cursor, bool) or not isinstance(cursor, int) or not 0 <= cursor < _INT64:
        raise ValueError(f"cursor: must be a non-negative 64-bit integer, not {cursor!r}")
    return cursor


def _check_text(value: str, field: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{field}: contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field}: not valid Unicode text (a lone surrogate)") from None
