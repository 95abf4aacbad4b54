"""The engine server's wire format, without a process: parsing, checking, encoding, throttling."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ikol_engine.pipeline import AnalyzeOptions
from ikol_engine.protocol import (
    Analyze, BadRequest, Cancel, Info, ProgressThrottle, Refine, Shutdown, encode_event, parse_request,
)
from ikol_engine.track.options import SolveOptions


def test_analyze_fills_options_and_defaults() -> None:
    request = parse_request(json.dumps({
        "id": "a1", "type": "analyze", "video": "/v.mp4", "output": "/m.npz",
        "options": {"end_s": 1, "stride": 2}, "solve": {"smoothing": 0, "level_floor": False, "device": "cpu"}}))
    assert request == Analyze("a1", video="/v.mp4", output="/m.npz", options=AnalyzeOptions(end_s=1.0, stride=2),
                              solve=SolveOptions(smoothing=0.0, level_floor=False, device="cpu"), body=None)
    # JSON integers where the options hold floats are stored as floats (they end up in the file's options).
    assert isinstance(request.options.end_s, float) and isinstance(request.solve.smoothing, float)


def test_refine_defaults_to_in_place_and_other_requests_parse() -> None:
    assert parse_request(b'{"id": 3, "type": "refine", "motion": "/m.npz"}') == Refine(
        3, motion="/m.npz", output="/m.npz", solve={}, body=None)
    assert parse_request('{"id": 3, "type": "refine", "motion": "/m.npz", "output": null, "body": "/s.pkl"}') == \
        Refine(3, motion="/m.npz", output="/m.npz", solve={}, body="/s.pkl")
    # A refine names only what it changes: the rest stays as the file's run had it.
    changed = parse_request('{"id": 5, "type": "refine", "motion": "/m.npz", "solve": {"smoothing": 0, "arms": 2}}')
    assert changed.solve == {"smoothing": 0.0, "arms": 2.0} and isinstance(changed.solve["smoothing"], float)
    assert parse_request('{"id": 4, "type": "cancel", "target": "a1"}') == Cancel(4, "a1")
    assert parse_request('{"id": 5, "type": "cancel", "target": 3}') == Cancel(5, 3)
    assert parse_request('{"id": "i", "type": "info"}') == Info("i", "auto")
    assert parse_request('{"id": "i", "type": "info", "device": "cpu"}') == Info("i", "cpu")
    assert parse_request('{"type": "shutdown", "id": 0}') == Shutdown(0)


@pytest.mark.parametrize(("line", "request_id", "says"), [
    ("not json", None, "not JSON"),
    (b"\xff\xfe{}", None, "not UTF-8"),
    ("[1, 2]", None, "got an array"),
    ('"info"', None, "got a string"),
    ('{"type": "info"}', None, "no 'id'"),
    ('{"id": true, "type": "info"}', None, "got a boolean"),
    ('{"id": 1.5, "type": "info"}', None, "got a number"),
    ('{"id": null, "type": "info"}', None, "got null"),
    ('{"id": 7}', 7, "no 'type'"),
    ('{"id": 7, "type": "dance"}', 7, "unknown type 'dance'"),
    ('{"id": 7, "type": ["info"]}', 7, "unknown type"),
    ('{"id": 8, "type": "analyze", "output": "/m.npz"}', 8, "analyze needs 'video'"),
    ('{"id": 8, "type": "analyze", "video": 3, "output": "/m.npz"}', 8, "'video' must be a string, got an integer"),
    ('{"id": 8, "type": "analyze", "video": "/v", "output": "/m", "ouput": "/x"}', 8, "takes no 'ouput'"),
    ('{"id": 8, "type": "analyze", "video": "/v", "output": "/m", "options": [1]}', 8, "'options' must be an object"),
    ('{"id": 8, "type": "analyze", "video": "/v", "output": "/m", "options": {"stride": 1.5}}', 8,
     "'options.stride' must be an integer, got a number"),
    ('{"id": 8, "type": "analyze", "video": "/v", "output": "/m", "options": {"stride": 0}}', 8, "stride must be"),
    ('{"id": 8, "type": "analyze", "video": "/v", "output": "/m", "options": {"end_s": NaN}}', None, "not JSON"),
    ('{"id": 9, "type": "refine", "motion": "/m", "solve": {"iterations": "5"}}', 9,
     "'solve.iterations' must be an integer, got a string"),
    ('{"id": 9, "type": "refine", "motion": "/m", "solve": {"iterations": true}}', 9, "got a boolean"),
    ('{"id": 9, "type": "refine", "motion": "/m", "solve": {"smooth": 1}}', 9, "unknown keys smooth"),
    ('{"id": 9, "type": "refine", "motion": "/m", "solve": {"level_floor": 1}}', 9, "must be true or false"),
    ('{"id": 9, "type": "refine", "motion": "/m", "solve": {"iterations": 500}}', 9, "iterations must be"),
    ('{"id": 9, "type": "refine", "motion": "/m", "solve": {"smoothing": -1}}', 9, "smoothing must be a finite number >= 0, got -1.0"),
    ('{"id": 10, "type": "cancel"}', 10, "cancel needs 'target'"),
    ('{"id": 10, "type": "cancel", "target": [1]}', 10, "must be a string or an integer"),
    ('{"id": 11, "type": "shutdown", "now": true}', 11, "shutdown takes no 'now'"),
])
def test_malformed_requests_are_refused_with_their_id(line, request_id, says) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request(line)
    assert caught.value.request_id == request_id
    assert says in str(caught.value)


def test_events_are_single_ascii_lines_of_plain_json() -> None:
    line = encode_event("a1", "result", residual_mm=np.float32(12.5), frames=np.int64(30), nan=math.nan,
                        info={"dropouts": [np.array([0, 3])], "floor": None}, text="line\nbreak é")
    assert line.endswith("\n") and line.count("\n") == 1 and line.isascii()
    assert json.loads(line) == {"id": "a1", "event": "result", "residual_mm": 12.5, "frames": 30, "nan": None,
                                "info": {"dropouts": [[0, 3]], "floor": None}, "text": "line\nbreak é"}
    assert json.loads(encode_event(None, "ready")) == {"id": None, "event": "ready"}


def test_throttle_keeps_first_last_and_one_per_interval() -> None:
    throttle = ProgressThrottle(interval=0.045)
    sent = [done for done in range(101) if throttle("regress", done, 100, now=done * 0.01)]
    # First report, then one every 5 reports (0.05 s apart, the first past the interval), and the last.
    assert sent == list(range(0, 101, 5))
    # A new stage is always announced, however soon; and its last report.
    assert throttle("solve", 0, 3, now=1.0) and not throttle("solve", 1, 3, now=1.001)
    assert throttle("solve", 3, 3, now=1.002)
