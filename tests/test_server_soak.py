"""A live engine server under random lines and a long mixed load: every line answered, memory bounded.

One server (module scope) first analyses half a second of the sample, whose motion the
load's refine jobs then re-solve.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

from ikol_engine import samples
from ikol_engine.motion import read_motion
from ikol_engine.protocol import BadRequest, parse_request
from tests.test_fuzz import request_lines
from tests.test_server import Engine

ROUNDS = 40
# Per round: 10 refine jobs, 6 cancels of them, 2 cancels of no job, 1 repeated cancel,
# 3 info, 3 malformed lines: 25 requests, so 1,000 in all.
JOBS_PER_ROUND = 10
MEMORY_GROWTH_LIMIT_MB = 64.0

_probes = itertools.count()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    server = Engine(tmp_path_factory.mktemp("soak"))
    server.wait_for(lambda e: e["event"] == "ready")
    yield server
    server.close()


@pytest.fixture(scope="module")
def motion_path(engine) -> Path:
    output = engine.directory / "half_second.npz"
    result = engine.request({"id": "first", "type": "analyze", "video": str(samples.demo_video()),
                             "output": str(output), "options": {"end_s": 0.5}, "solve": {"device": "cpu"}})
    assert result["event"] == "result", result
    return output


def _as_line(line: str | bytes) -> bytes:
    """One request line as the client writes it: bytes without a newline inside."""
    data = line.encode("utf-8") if isinstance(line, str) else line
    return data.replace(b"\n", b" ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_lines)
def test_live_server_answers_each_random_line_with_one_error_and_serves_on(engine, line: str | bytes) -> None:
    data = _as_line(line)
    assume(data.strip())  # blank lines are not requests; the server skips them
    try:
        parse_request(data + b"\n")
    except BadRequest as refusal:
        expected = refusal
    else:
        assume(False)  # a valid request would do real work; the parser's own property test covers it
    mark = engine.send(data)
    probe = f"probe-{next(_probes)}"
    engine.request({"id": probe, "type": "info"})
    with engine._changed:
        answers = [e for e in engine.events[mark:] if e["id"] != probe]
    assert answers == [{"id": expected.request_id, "event": "error", "kind": "bad_request",
                        "message": str(expected)}]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


def _round(engine: Engine, number: int, motion: Path, folder: Path, rng: np.random.Generator) -> dict[str, str]:
    """Sends one round of 25 requests; returns each request id with the answers it may get."""
    expected: dict[str, str] = {}
    jobs = [f"r{number}-{k}" for k in range(JOBS_PER_ROUND)]
    for k, job in enumerate(jobs):
        engine.send({"id": job, "type": "refine", "motion": str(motion), "output": str(folder / f"out{k % 3}.npz"),
                     "solve": {"iterations": int(rng.integers(1, 4)), "smoothing": float(rng.random()),
                               "device": "cpu"}})
        expected[job] = "result|cancelled"
    # The storm: cancels of jobs queued, running or already done, some twice, some of nothing.
    for k, target in enumerate(rng.choice(jobs, size=6, replace=False)):
        engine.send({"id": f"c{number}-{k}", "type": "cancel", "target": str(target)})
        expected[f"c{number}-{k}"] = "result|bad_request"
    engine.send({"id": f"c{number}-again", "type": "cancel", "target": str(target)})
    expected[f"c{number}-again"] = "result|bad_request"
    for k in range(2):
        engine.send({"id": f"c{number}-none{k}", "type": "cancel", "target": f"nobody-{number}-{k}"})
        expected[f"c{number}-none{k}"] = "bad_request"
    for k in range(3):
        engine.send({"id": f"i{number}-{k}", "type": "info"})
        expected[f"i{number}-{k}"] = "result"
    engine.send({"id": f"m{number}-0", "type": "teleport"})
    engine.send({"id": f"m{number}-1", "type": "refine", "motion": str(motion), "solve": {"iterations": "many"}})
    expected[f"m{number}-0"] = expected[f"m{number}-1"] = "bad_request"
    engine.send(rng.integers(0, 256, size=int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
                .replace(b"\n", b"?").replace(b"{", b"?") + b"!")  # never JSON: an error without an id
    return expected


def test_a_thousand_mixed_requests_with_cancel_storms_are_all_answered_in_bounded_memory(engine, motion_path,
                                                                                        tmp_path) -> None:
    rng = np.random.default_rng(7)
    before = motion_path.read_bytes()
    mark = len(engine.events)
    expected: dict[str, str] = {}
    memory: list[float] = []
    for number in range(ROUNDS):
        round_mark = len(engine.events)
        round_expected = _round(engine, number, motion_path, tmp_path, rng)
        for request_id in round_expected:
            engine.finish(request_id, round_mark)
        expected |= round_expected
        memory.append(_rss_mb(engine.process.pid))
    assert len(expected) + ROUNDS == 1000

    with engine._changed:
        events = engine.events[mark:]
    finals: dict[object, list[dict]] = {}
    for event in events:
        if event["event"] in ("result", "error"):
            finals.setdefault(event["id"], []).append(event)
    # Every request answered exactly once, with an answer it may get.
    for request_id, allowed in expected.items():
        [answer] = finals.pop(request_id)
        outcome = "result" if answer["event"] == "result" else answer["kind"]
        assert outcome in allowed.split("|"), answer
    # The unparseable lines: one error each, without an id; nothing else was answered.
    assert len(finals.pop(None)) == ROUNDS and finals == {}
    assert engine.bad_lines == [] and "Traceback" not in engine.stderr()

    finished = [r for r in expected if r.startswith("r") and any(
        e["id"] == r and e["event"] == "result" for e in events)]
    cancelled = [r for r in expected if r.startswith("r") and r not in finished]
    print(f"{len(finished)} refine jobs finished, {len(cancelled)} cancelled; "
          f"server memory {memory[0]:.0f} MB after round 1, {max(memory):.0f} MB at most, {memory[-1]:.0f} at the end")
    assert finished and cancelled
    # Memory: the first rounds warm the caches; after that it must not keep growing.
    assert max(memory[ROUNDS // 4:]) - memory[ROUNDS // 4] < MEMORY_GROWTH_LIMIT_MB
    # Files: the results that were written are whole, nothing half-written is left, and
    # the source motion was never touched.
    written = os.listdir(tmp_path)
    assert written and set(written) <= {f"out{k % 3}.npz" for k in range(JOBS_PER_ROUND)}
    for name in written:
        assert read_motion(tmp_path / name).rotations.shape[0] == 15
    assert motion_path.read_bytes() == before
    assert engine.request({"id": "after-soak", "type": "info"})["running"] is None
