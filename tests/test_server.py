"""The engine server's protocol, spoken to a real ``python -m ikol_engine.server`` process.

One server (module scope) analyses the first second of the sample video once and answers
the other requests; the tests of how a server ends (shutdown, end of stdin, SIGTERM,
SIGKILL) each start a fresh one.
"""
from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ikol_engine import __version__, samples
from ikol_engine.common.devices import resolve_device
from ikol_engine.motion import read_motion
from ikol_engine.protocol import PROTOCOL_VERSION
from ikol_engine.server import EventWriter, Server

END_S = 1.0  # 30 frames of the sample
TIMEOUT_S = 180.0

Event = dict[str, Any]


class Engine:
    """A server process and a reader thread collecting its stdout, as a client would."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stderr_path = directory / "stderr.txt"
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen([sys.executable, "-m", "ikol_engine.server"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=stderr, cwd=directory)
        self.events: list[Event] = []
        self.bad_lines: list[bytes] = []  # stdout lines that are not protocol events
        self.eof = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                event = json.loads(line)
                assert isinstance(event, dict) and {"id", "event"} <= event.keys()
            except (ValueError, AssertionError):
                event = None
            with self._changed:
                if event is None:
                    self.bad_lines.append(line)
                else:
                    self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self.eof = True
            self._changed.notify_all()

    def send(self, request: dict[str, Any] | str | bytes) -> int:
        """Writes one request line; returns the number of events seen before it."""
        if isinstance(request, dict):
            request = json.dumps(request)
        line = request if isinstance(request, bytes) else request.encode()
        with self._changed:
            mark = len(self.events)
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()
        return mark

    def wait_for(self, found: Callable[[Event], bool], after: int = 0, timeout: float = TIMEOUT_S) -> Event:
        """The first event from index ``after`` on that ``found`` accepts."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = next((e for e in self.events[after:] if found(e)), None)
                if match is not None:
                    return match
                assert not self.eof, f"server ended without the awaited event; stderr:\n{self.stderr()}"
                assert self._changed.wait(deadline - time.monotonic()), "timed out waiting for an event"

    def finish(self, request_id: Any, after: int = 0) -> list[Event]:
        """Every event of a request up to its last one (result or error)."""
        self.wait_for(lambda e: e["id"] == request_id and e["event"] in ("result", "error"), after)
        with self._changed:
            return [e for e in self.events[after:] if e["id"] == request_id]

    def request(self, request: dict[str, Any]) -> Event:
        """Sends a request and returns its last event."""
        return self.finish(request["id"], self.send(request))[-1]

    def wait_eof(self, timeout: float = 60.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.eof, timeout), "stdout still open"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)
        self.process.stdin.close()
        self.process.stdout.close()


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    server = Engine(tmp_path_factory.mktemp("engine"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def analysed(engine) -> tuple[list[Event], Path]:
    output = engine.directory / "first.npz"
    events = engine.finish("a1", engine.send({
        "id": "a1", "type": "analyze", "video": str(samples.demo_video()), "output": str(output),
        "options": {"end_s": END_S}, "solve": {"device": "cpu"}}))
    return events, output


@pytest.fixture
def fresh(tmp_path):
    server = Engine(tmp_path)
    server.wait_for(lambda e: e["event"] == "ready")
    yield server
    server.close()


def _long_analysis(engine: Engine, request_id: str, output: Path) -> int:
    """Starts analysing the whole sample (seconds of work) and waits until frames are going through."""
    mark = engine.send({"id": request_id, "type": "analyze", "video": str(samples.demo_video()),
                        "output": str(output), "solve": {"device": "cpu"}})
    engine.wait_for(lambda e: e["id"] == request_id and e["event"] == "progress" and e["done"] >= 1, mark)
    return mark


def test_ready_comes_first_with_versions(engine) -> None:
    ready = engine.wait_for(lambda e: True)
    assert ready is engine.events[0]
    assert ready["event"] == "ready" and ready["id"] is None
    assert ready["protocol"] == PROTOCOL_VERSION and ready["engine"] == __version__
    assert ready["torch"] == torch.__version__ and ready["pid"] == engine.process.pid


def test_info_reports_versions_and_device(engine) -> None:
    info = engine.request({"id": "i1", "type": "info"})
    device = resolve_device("auto")
    assert info["event"] == "result"
    assert info["device"] == str(device) and info["torch"] == torch.__version__
    assert info["gpu"] == (torch.cuda.get_device_name(device) if device.type == "cuda" else None)
    assert all(info[name] == importlib.metadata.version(name) for name in ("numpy", "mediapipe", "smplx"))
    assert engine.request({"id": "i2", "type": "info", "device": "cpu"})["device"] == "cpu"
    bad = engine.request({"id": "i3", "type": "info", "device": "tpu"})
    assert bad["event"] == "error" and bad["kind"] == "bad_input" and "unknown device 'tpu'" in bad["message"]


def test_analyze_reports_progress_then_one_result(analysed) -> None:
    events, output = analysed
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1 and "error" not in kinds
    progress = [e for e in events if e["event"] == "progress"]
    assert len(progress) == len(events) - 1
    stages = [e["stage"] for e in progress]
    order = ["regress", "solve"]  # a one-person analyze finds the people on the regressed frames
    assert stages == sorted(stages, key=order.index) and set(stages) == set(order)
    # Per stage: one total, done rising from 0 to it (frames for regress; IK passes for solve).
    for stage, expected_total in (("regress", int(END_S * 30)), ("solve", None)):
        reports = [(e["done"], e["total"]) for e in progress if e["stage"] == stage]
        done, totals = [d for d, _ in reports], {t for _, t in reports}
        assert done == sorted(done) and done[0] == 0 and done[-1] == reports[-1][1]
        assert len(totals) == 1 and expected_total in (None, *totals)

    result = events[-1]
    motion = read_motion(output)
    assert result["output"] == str(output) and result["frames"] == len(motion.valid) == 30
    assert result["fps"] == motion.fps == 30.0
    assert result["valid"] == int(motion.valid.sum()) == result["info"]["valid"]
    assert result["info"]["detected"] >= 25
    assert result["residual_mm"] == pytest.approx(float(np.mean(motion.residual_mm[motion.valid])), abs=1e-3)
    assert 0 < result["residual_mm"] < 50 and result["seconds"] > 0
    assert motion.rotations.shape == (30, 24, 4) and motion.options["analyze"]["end_s"] == END_S


def test_people_request_lists_everyone_and_writes_a_sheet(engine) -> None:
    sheet = engine.directory / "people.png"
    mark = engine.send({"id": "p1", "type": "people", "video": str(samples.demo_video()), "end_s": 2.0,
                        "sheet": str(sheet)})
    events = engine.finish("p1", mark)
    result = events[-1]
    assert result["event"] == "result", result
    assert {e["stage"] for e in events if e["event"] == "progress"} == {"people"}
    assert result["frames"] == [0, 60] and result["image_size"] == [1768, 994] and result["sheet"] == str(sheet)
    # In the first two seconds: the jumper throughout, the walker from about frame 40.
    ids = [person["id"] for person in result["people"]]
    assert ids == list(range(1, len(ids) + 1)) and len(ids) == 2
    assert result["people"][0]["first_frame"] == 0 and result["people"][1]["first_frame"] >= 30
    assert sheet.is_file() and sheet.stat().st_size > 10_000
    bad = engine.request({"id": "p2", "type": "people", "video": str(samples.demo_video()), "end_s": -1})
    assert bad["event"] == "error" and bad["kind"] == "bad_request" and "end" in bad["message"]


def test_analyze_all_writes_a_file_per_person_and_a_bad_pick_is_refused_at_once(engine, analysed) -> None:
    folder = engine.directory / "everyone"
    mark = engine.send({"id": "all1", "type": "analyze", "video": str(samples.demo_video()),
                        "output": str(folder), "options": {"end_s": 2.0, "person": "all"}, "solve": {"device": "cpu"}})
    events = engine.finish("all1", mark)
    result = events[-1]
    assert result["event"] == "result", result
    # The people request of the same video and range (the test above) found them already.
    assert "people" not in {e["stage"] for e in events if e["event"] == "progress"}
    assert [Path(p["output"]).name for p in result["people"]] == ["demo_person1.npz", "demo_person2.npz"]
    assert [p["person"] for p in result["people"]] == [1, 2]
    assert sorted(os.listdir(folder)) == ["demo_person1.npz", "demo_person2.npz"]
    assert analysed[0][-1]["person"] == 1  # one person followed by default: the longest present
    refused = engine.request({"id": "all2", "type": "analyze", "video": str(samples.demo_video()),
                              "output": str(folder / "x.npz"), "options": {"person": "the tall one"}})
    assert refused["event"] == "error" and refused["kind"] == "bad_request" and "person" in refused["message"]


def test_cancelling_all_after_the_first_person_writes_no_file(engine) -> None:
    folder = engine.directory / "cancelled_everyone"
    mark = engine.send({"id": "all3", "type": "analyze", "video": str(samples.demo_video()),
                        "output": str(folder), "options": {"end_s": 2.0, "person": "all"}, "solve": {"device": "cpu"}})
    # The first person solved, the second being regressed: cancel then.
    solved = engine.wait_for(lambda e: e["id"] == "all3" and e["event"] == "progress" and e["stage"] == "solve", mark)
    engine.wait_for(lambda e: e["id"] == "all3" and e["event"] == "progress" and e["stage"] == "regress",
                    engine.events.index(solved))
    engine.request({"id": "c-all3", "type": "cancel", "target": "all3"})
    assert engine.finish("all3", mark)[-1]["kind"] == "cancelled"
    assert not folder.exists() or list(folder.iterdir()) == []


def test_refine_reports_before_and_after(engine, analysed) -> None:
    first = analysed[0][-1]
    output = engine.directory / "refined.npz"
    started = time.perf_counter()
    refined = engine.request({"id": "r1", "type": "refine", "motion": first["output"], "output": str(output),
                              "solve": {"smoothing": 0, "iterations": 3, "device": "cpu"}})
    first_s = time.perf_counter() - started
    assert refined["event"] == "result", refined
    motion = read_motion(output)
    assert refined["previous_residual_mm"] == pytest.approx(first["residual_mm"], abs=1e-4)
    assert refined["residual_mm"] == pytest.approx(float(np.mean(motion.residual_mm[motion.valid])), abs=1e-3)
    assert refined["residual_mm"] != pytest.approx(first["residual_mm"], abs=1e-3)
    assert motion.options["solve"]["smoothing"] == 0.0 and motion.options["solve"]["iterations"] == 3

    # In place (no output given), with the warm server: the round trip the Refine button makes.
    before = output.read_bytes()
    started = time.perf_counter()
    again = engine.request({"id": "r2", "type": "refine", "motion": str(output),
                            "solve": {"smoothing": 1.0, "device": "cpu"}})
    second_s = time.perf_counter() - started
    assert again["event"] == "result" and again["output"] == str(output)
    assert again["previous_residual_mm"] == pytest.approx(refined["residual_mm"], abs=1e-4)
    # Only what the request names changes; the iterations stay as the file's run had them.
    solve = read_motion(output).options["solve"]
    assert output.read_bytes() != before and solve["smoothing"] == 1.0 and solve["iterations"] == 3
    print(f"refine round trips of {again['frames']} frames: {first_s:.3f} s, then {second_s:.3f} s "
          f"(server-side {again['seconds']:.3f} s)")


def test_cancel_running_and_queued_jobs(engine) -> None:
    folder = engine.directory / "cancel"
    folder.mkdir()
    earlier = folder / "out.npz"
    earlier.write_bytes(b"an earlier result")
    _long_analysis(engine, "long", earlier)

    # The main thread answers while the job runs; a second job queues behind it.
    mark = engine.send({"id": "queued", "type": "analyze", "video": str(samples.demo_video()),
                        "output": str(folder / "never.npz")})
    busy = engine.request({"id": "busy", "type": "info"})
    assert busy["running"] == "long" and busy["queued"] == ["queued"]
    duplicate = engine.request({"id": "long", "type": "refine", "motion": str(earlier)})
    assert duplicate["event"] == "error" and duplicate["kind"] == "bad_request" and "already" in duplicate["message"]

    assert engine.request({"id": "c1", "type": "cancel", "target": "queued"}) == {
        "id": "c1", "event": "result", "target": "queued", "state": "queued"}
    queued = engine.finish("queued", mark)
    assert [(e["event"], e.get("kind")) for e in queued] == [("log", None), ("error", "cancelled")]

    mark = engine.send({"id": "c2", "type": "cancel", "target": "long"})
    assert engine.finish("c2", mark)[-1] == {"id": "c2", "event": "result", "target": "long", "state": "running"}
    ended = engine.finish("long", mark)[-1]
    assert ended["event"] == "error" and ended["kind"] == "cancelled"
    assert sorted(os.listdir(folder)) == ["out.npz"]  # no temporary file, no second file
    assert earlier.read_bytes() == b"an earlier result"

    late = engine.request({"id": "c3", "type": "cancel", "target": "long"})
    assert late["event"] == "error" and late["kind"] == "bad_request" and "'long'" in late["message"]


@pytest.mark.parametrize(("line", "request_id"), [
    ("this is not JSON", None),
    ('[{"id": 1, "type": "info"}]', None),
    ('{"type": "info"}', None),
    ('{"id": "m1", "type": "teleport"}', "m1"),
    ('{"id": "m2", "type": "analyze", "video": 5, "output": "x.npz"}', "m2"),
    ('{"id": "m3", "type": "refine", "motion": "x.npz", "solve": {"iterations": "many"}}', "m3"),
    ('{"id": "m4", "type": "refine", "motion": "x.npz", "ouput": "y.npz"}', "m4"),
])
def test_malformed_request_is_refused_and_server_goes_on(engine, line, request_id) -> None:
    mark = engine.send(line)
    error = engine.wait_for(lambda e: e["event"] == "error" and e["id"] == request_id, mark)
    assert error["kind"] == "bad_request" and error["message"] and "traceback" not in error
    assert engine.request({"id": "after", "type": "info"})["event"] == "result"
    assert not (engine.directory / "x.npz").exists() and not (engine.directory / "y.npz").exists()


def test_bad_input_is_one_line_without_traceback(engine) -> None:
    missing = engine.directory / "no-such-video.mp4"
    error = engine.request({"id": "b1", "type": "analyze", "video": str(missing),
                            "output": str(engine.directory / "b1.npz")})
    assert error["event"] == "error" and error["kind"] == "bad_input", error
    assert str(missing) in error["message"] and "\n" not in error["message"] and "traceback" not in error

    corrupt = engine.directory / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really")
    error = engine.request({"id": "b2", "type": "refine", "motion": str(corrupt)})
    assert error["event"] == "error" and error["kind"] == "bad_input" and str(corrupt) in error["message"]
    assert corrupt.read_bytes() == b"PK\x03\x04 not really"


def test_stdout_carries_only_protocol_lines(engine, analysed) -> None:
    engine.request({"id": "last", "type": "info"})
    assert engine.bad_lines == []
    assert len(engine.events) > 20
    # MediaPipe's C++ log lines are the libraries' chatter during a run: on stderr.
    assert "TensorFlow Lite" in engine.stderr()


def test_claimed_stdout_sends_python_and_c_output_to_stderr() -> None:
    script = ("import os; from ikol_engine.server import claim_stdout; stream = claim_stdout(); "
              "print('python noise'); os.write(1, b'fd noise\\n'); stream.write(b'protocol\\n'); stream.flush()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stdout == b"protocol\n"
    assert b"python noise" in done.stderr and b"fd noise" in done.stderr


def test_log_records_become_log_events() -> None:
    stream = io.BytesIO()
    handler = Server(io.BytesIO(), EventWriter(stream)).log_handler()
    handler.handle(logging.LogRecord("py.warnings", logging.WARNING, __file__, 1, "careful: %s", ("x",), None))
    assert json.loads(stream.getvalue()) == {"id": None, "event": "log", "level": "warning", "message": "careful: x"}


def test_shutdown_cancels_the_running_job_and_exits_zero(fresh) -> None:
    _long_analysis(fresh, "job", fresh.directory / "out.npz")
    mark = fresh.send({"id": "bye", "type": "shutdown"})
    fresh.wait_eof()
    assert fresh.process.wait(30) == 0
    ends = [(e["id"], e["event"], e.get("kind")) for e in fresh.events[mark:] if e["event"] in ("result", "error")]
    assert ends == [("job", "error", "cancelled"), ("bye", "result", None)]
    assert not (fresh.directory / "out.npz").exists()
    assert [p.name for p in fresh.directory.iterdir()] == ["stderr.txt"]


def test_end_of_stdin_exits_zero(fresh) -> None:
    fresh.process.stdin.close()
    fresh.wait_eof()
    assert fresh.process.wait(30) == 0
    assert fresh.bad_lines == []


def test_sigterm_cancels_and_exits_promptly(fresh) -> None:
    mark = _long_analysis(fresh, "job", fresh.directory / "out.npz")
    started = time.monotonic()
    fresh.process.send_signal(signal.SIGTERM)
    fresh.wait_eof()
    assert fresh.process.wait(30) == 143
    assert time.monotonic() - started < 10
    assert fresh.finish("job", mark)[-1]["kind"] == "cancelled"
    assert [p.name for p in fresh.directory.iterdir()] == ["stderr.txt"]


def test_killed_engine_is_seen_as_end_of_stdout(fresh) -> None:
    mark = _long_analysis(fresh, "job", fresh.directory / "out.npz")
    fresh.process.kill()
    fresh.wait_eof(timeout=10)
    assert fresh.process.wait(30) == -signal.SIGKILL
    assert all(e["event"] == "progress" for e in fresh.events[mark:] if e["id"] == "job")
