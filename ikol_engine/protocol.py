"""The engine server's wire format: requests parsed and checked, events encoded.

Pure functions and plain data, no I/O and no threads, so that every rule of the
protocol (see :mod:`ikol_engine.server` for the whole of it) can be tested without a
process. A request line becomes one of the request dataclasses below or raises
:class:`BadRequest`; an event becomes one JSON line.
"""
from __future__ import annotations

import json
import math
import typing
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .motion import Motion
from .pipeline import AnalyzeOptions
from .track.options import SolveOptions
from .track.solve import Solution

#: Bumped whenever a request or event changes in a way an older client would misread.
PROTOCOL_VERSION = 1

#: Error kinds: the request itself is wrong; the files it names are; the job was
#: cancelled; the engine failed (a bug: the event carries the traceback).
BAD_REQUEST, BAD_INPUT, CANCELLED, INTERNAL = "bad_request", "bad_input", "cancelled", "internal"

RequestId = str | int


class BadRequest(ValueError):
    """A request line the server cannot act on; ``request_id`` is its id if one was readable."""

    def __init__(self, message: str, request_id: RequestId | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class Analyze:
    """Video to motion file (:func:`ikol_engine.pipeline.analyze`)."""

    id: RequestId
    video: str
    output: str
    options: AnalyzeOptions
    solve: SolveOptions
    body: str | None


@dataclass(frozen=True)
class Refine:
    """Motion file re-solved with new settings (:func:`ikol_engine.pipeline.refine`)."""

    id: RequestId
    motion: str
    output: str
    solve: dict[str, Any]  # the SolveOptions fields to change; the rest stay as the file's run had them
    body: str | None


@dataclass(frozen=True)
class People:
    """Everyone in a video, with ids for ``options.person`` (:func:`ikol_engine.people.scan.scan_people`).

    ``options`` holds the part of the video (``start_s``, ``end_s``) and ``fps``; ``sheet``
    is where to write a numbered contact sheet (PNG), if anywhere.
    """

    id: RequestId
    video: str
    options: AnalyzeOptions
    sheet: str | None


@dataclass(frozen=True)
class Cancel:
    """Stop the running or queued job whose id is ``target``."""

    id: RequestId
    target: RequestId


@dataclass(frozen=True)
class Info:
    """Versions, the compute device ``device`` resolves to, and what the server is doing."""

    id: RequestId
    device: str


@dataclass(frozen=True)
class Shutdown:
    """Cancel everything, answer, exit."""

    id: RequestId


Request = Analyze | Refine | People | Cancel | Info | Shutdown
Job = Analyze | Refine | People

_MISSING = object()


def parse_request(line: str | bytes) -> Request:
    """One request line (a JSON object) to its request.

    Raises:
        BadRequest: not UTF-8, not JSON, not an object, no valid id, an unknown type,
            a missing or unknown parameter, a parameter of the wrong type, or option
            values the engine's option classes refuse.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRequest(f"request is not UTF-8: {error}") from None
    try:
        message = json.loads(line, parse_constant=_refuse_constant)
    except ValueError as error:
        raise BadRequest(f"request is not JSON: {error}") from None
    if not isinstance(message, dict):
        raise BadRequest(f"request must be a JSON object, got {_json_type(message)}")
    request_id = message.pop("id", _MISSING)
    if request_id is _MISSING:
        raise BadRequest("request has no 'id'")
    if not _is_id(request_id):
        raise BadRequest(f"'id' must be a string or an integer, got {_json_type(request_id)}")
    kind = message.pop("type", _MISSING)
    parse = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parse is None:
        described = "no 'type'" if kind is _MISSING else f"unknown type {kind!r}"
        raise BadRequest(f"request has {described}; known: {', '.join(_PARSERS)}", request_id)
    try:
        return parse(request_id, _Params(message, kind))
    except BadRequest as error:
        raise BadRequest(str(error), request_id) from None


class _Params:
    """A request's parameters, taken one by one; whatever is left over is an error."""

    def __init__(self, values: dict[str, Any], kind: str) -> None:
        self.values, self.kind = values, kind

    def take(self, name: str, kind: type, default: Any = _MISSING) -> Any:
        value = self.values.pop(name, default)
        if value is _MISSING:
            raise BadRequest(f"{self.kind} needs '{name}'")
        if value is default:
            return value
        return _checked(value, kind, f"'{name}'")

    def options(self, name: str, cls: type) -> Any:
        """A nested object of ``cls``'s fields (all optional) -> a ``cls``."""
        return cls(**self.changes(name, cls))

    def changes(self, name: str, cls: type) -> dict[str, Any]:
        """A nested object of ``cls``'s fields (all optional) -> the fields given, checked
        (types, and ``cls``'s own range checks)."""
        given = self.values.pop(name, {})
        if not isinstance(given, dict):
            raise BadRequest(f"'{name}' must be an object, got {_json_type(given)}")
        hints = typing.get_type_hints(cls)
        known = [field.name for field in fields(cls)]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise BadRequest(f"'{name}' has unknown keys {', '.join(unknown)}; known: {', '.join(known)}")
        values = {key: _checked(value, hints[key], f"'{name}.{key}'") for key, value in given.items()}
        try:
            cls(**values)
        except ValueError as error:  # the option classes' own range checks
            raise BadRequest(f"'{name}': {error}") from None
        return values

    def done(self) -> None:
        if self.values:
            raise BadRequest(f"{self.kind} takes no {', '.join(repr(key) for key in sorted(self.values))}")


def _analyze(request_id: RequestId, params: _Params) -> Analyze:
    request = Analyze(request_id, video=params.take("video", str), output=params.take("output", str),
                      options=params.options("options", AnalyzeOptions), solve=params.options("solve", SolveOptions),
                      body=params.take("body", str | None, None))
    params.done()
    return request


def _people(request_id: RequestId, params: _Params) -> People:
    video = params.take("video", str)
    options = {key: params.take(key, float | None, None) for key in ("start_s", "end_s", "fps")}
    try:
        checked = AnalyzeOptions(**options)
    except ValueError as error:
        raise BadRequest(f"people: {error}") from None
    request = People(request_id, video=video, options=checked, sheet=params.take("sheet", str | None, None))
    params.done()
    return request


def _refine(request_id: RequestId, params: _Params) -> Refine:
    motion = params.take("motion", str)
    # No output: the motion file is replaced (atomically, so it is never half-written).
    request = Refine(request_id, motion=motion, output=params.take("output", str | None, None) or motion,
                     solve=params.changes("solve", SolveOptions), body=params.take("body", str | None, None))
    params.done()
    return request


def _cancel(request_id: RequestId, params: _Params) -> Cancel:
    target = params.take("target", RequestId)
    params.done()
    return Cancel(request_id, target)


def _info(request_id: RequestId, params: _Params) -> Info:
    device = params.take("device", str, "auto")
    params.done()
    return Info(request_id, device)


def _shutdown(request_id: RequestId, params: _Params) -> Shutdown:
    params.done()
    return Shutdown(request_id)


_PARSERS = {"analyze": _analyze, "refine": _refine, "people": _people, "cancel": _cancel, "info": _info,
            "shutdown": _shutdown}


def _checked(value: Any, kind: Any, where: str) -> Any:
    """``value`` if it is of type ``kind`` (int, float, bool, str, or a union of them and
    None); ints are accepted, and returned as float, where a float is expected."""
    allowed = typing.get_args(kind) or (kind,)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, bool):  # bool is an int subclass, but never a number here
        if bool in allowed:
            return value
    elif isinstance(value, int) and int in allowed:
        return value
    elif isinstance(value, (int, float)) and float in allowed:
        return float(value)
    elif isinstance(value, str) and str in allowed:
        return value
    wanted = " or ".join(_TYPE_NAMES.get(t, str(t)) for t in allowed)
    raise BadRequest(f"{where} must be {wanted}, got {_json_type(value)}")


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def _is_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _refuse_constant(name: str) -> None:
    # Python's json reads NaN and Infinity, which JSON has not; a client sending them has a bug.
    raise ValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__)


def encode_event(request_id: RequestId | None, event: str, **fields: Any) -> str:
    """One event as a JSON line (ending in a newline, ASCII only).

    Numpy values become plain JSON; non-finite floats become null, since JSON has no NaN.
    """
    return json.dumps({"id": request_id, "event": event, **_plain(fields)}, allow_nan=False,
                      separators=(",", ":")) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def mean_residual_mm(motion: Motion) -> float:
    """Mean IK residual over the valid frames, mm (NaN if none is valid)."""
    valid = np.asarray(motion.valid, dtype=bool)
    return float(np.mean(motion.residual_mm[valid])) if valid.any() else math.nan


def job_result(output: str, motion: Motion, solution: Solution) -> dict[str, Any]:
    """The fields of an analyze or refine ``result`` event (the server adds the run time)."""
    return {"output": output, "frames": int(len(motion.valid)), "valid": int(np.count_nonzero(motion.valid)),
            "fps": float(motion.fps), "residual_mm": mean_residual_mm(motion), "info": solution.info,
            "person": motion.options.get("person", {}).get("id")}


class ProgressThrottle:
    """Decides which progress reports become events: a stage's first and last always,
    others at most one per ``interval`` seconds, so a fast stage cannot flood the client."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.stage: str | None = None
        self.sent_at = -math.inf

    def __call__(self, stage: str, done: int, total: int, now: float) -> bool:
        if stage != self.stage or done >= total or now - self.sent_at >= self.interval:
            self.stage, self.sent_at = stage, now
            return True
        return False
