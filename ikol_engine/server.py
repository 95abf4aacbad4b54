"""The engine server: ``python -m ikol_engine.server``.

One long-lived process per client (the Blender add-on), speaking JSON lines: requests on
stdin, events on stdout, one JSON object per line each way. Between requests it keeps
torch imported and the body models loaded, so a refine costs only the solve itself.
Stdout carries protocol lines and nothing else: at start the server keeps a private copy
of file descriptor 1 for itself and points fd 1 (and ``sys.stdout``) at stderr, so what
libraries print, from Python or from C, lands on stderr.

Requests
--------
``{"id": ID, "type": TYPE, ...}``; ID is a string or an integer chosen by the client and
echoed in every event about that request. Unknown parameters are refused.

* ``analyze``: ``video``, ``output`` (paths; relative ones are taken from the server's
  working directory), ``options`` {``start_s``, ``end_s``, ``stride``,
  ``model_complexity``, ``regressor``, ``batch_size``, ``fps`` (the real frame rate, for
  a container stating a broken one), ``hands`` (false: no hand landmarks), ``hand_step``},
  ``solve`` {the fields of :class:`~ikol_engine.track.options.SolveOptions`: ``iterations``, ``smoothing``,
  ``beta``, ``torso``, ``arms``, ``legs``, ``head``, ``twist_weight``, ``max_gap_s``,
  ``fov_deg`` (null: estimated), ``focal_mm``, ``sensor_mm``, ``reprojection``,
  ``foot_lock``, ``contact_speed``, ``contact_image_speed``, ``contact_height``,
  ``keep_contacts``, ``level_floor``, ``hands`` (false: no fingers), ``device``}, ``body`` (SMPL file; null:
  bundled body).
  ``options`` and ``solve`` are optional objects, each missing field takes its default.
  Every option is checked as the request is read, and the device and the body file
  before the job is queued, so a bad one is answered at once with an ``error`` event,
  never after the video's frames.
  ``options.person`` picks whom to follow (``auto``, an id, ``"X,Y"``, or ``all``: then
  ``output`` is a folder and the result lists one file per person under ``people``).
* ``refine``: ``motion``, ``output`` (default: replace ``motion``), ``solve`` (the fields
  to change; the others stay as the run that wrote ``motion`` had them), ``body``.
* ``people``: ``video``, ``start_s``, ``end_s``, ``fps`` (optional), ``sheet`` (optional
  PNG path for a numbered contact sheet): everyone found, with the ids ``person`` takes.
  The server keeps the last few: an analyze of the same, unchanged video with the same
  ``start_s``, ``end_s`` and ``fps`` then skips its own search for people.
* ``cancel``: ``target``, the id of a running or queued analyze/refine.
* ``info``: ``device`` (optional, default "auto"): versions, device, GPU, what runs.
* ``shutdown``: cancel all jobs, answer, exit with code 0.

Events
------
``{"id": ID, "event": EVENT, ...}``; ID is null for events about no request.

* ``ready`` (id null, first line): ``protocol`` (:data:`~ikol_engine.protocol.PROTOCOL_VERSION`)
  and the same fields as an info result.
* ``progress``: ``stage`` ("people": frames searched for people, by a ``people``
  request or first in an analyze of ``all``; "regress": frames through the keypoint
  network, the people found on the same frames in a one-person analyze; "solve": IK
  passes), ``done``, ``total``. At most about
  20 a second per job; a stage's first and last report are always sent.
* ``log``: ``level`` ("info", "warning", "error", "critical"), ``message``: Python warnings
  raised during a job, and notes such as a job waiting in the queue.
* ``result``: the request's answer, its last event. analyze and refine: ``output``,
  ``frames``, ``valid`` (frames with a pose), ``fps``, ``residual_mm`` (mean IK residual
  over valid frames), ``seconds`` (the job's run time), ``info`` (what the solve found:
  detected, interpolated, held, swapped, dropouts, floor, camera, contact_frames); refine also
  ``previous_residual_mm``, the source file's; analyze also ``person`` (the followed
  person's id). people: ``people`` (a list of ``id``, ``frames``, ``first_frame``,
  ``last_frame``, ``box``, ``description``), ``frames`` ([start, end)),
  ``detection_step``, ``image_size``, ``sheet``. An analyze whose video ended before its
  container said sends a ``log`` warning first, and its ``info`` has ``rejected``: the
  detections not taken as a person (too small, unsure or brief). cancel: ``target`` and ``state``
  ("running" or "queued"). info: see ``ready``. shutdown: ``{}``.
* ``error``: the request's last event: ``kind`` and ``message``. Kinds: "bad_request"
  (the line is not a valid request; the id is null if none could be read), "bad_input"
  (a file or setting the engine refuses: missing video, corrupt motion or body file, no
  person found; a one-line message), "cancelled", "internal" (an engine bug; with
  ``traceback``). The server keeps serving after every error.

Jobs and cancelling
-------------------
analyze and refine run one at a time, in the order received, on a worker thread; the
main thread keeps reading, so cancel, info and shutdown are answered at once. Cancelling
a queued job drops it (its error event comes at once); cancelling the running one stops
it at its next progress report (between frames, or between IK passes). Files are written
atomically at the end of a job, so a cancelled job leaves no file and any earlier file at
its output untouched. A cancel that comes after the last progress report is too late:
the job ends with its result. A client should take a job's own last event (``result`` or
``error``) as its outcome, and expect an error for a cancel whose target already ended.

Ending: ``shutdown`` or end of stdin cancels all jobs and exits with code 0; SIGTERM
(or SIGINT) does the same at once and exits with 143 (130). When the process dies any
other way the client's reader sees end of file on stdout with no ``result`` for the
pending request: that is how a client tells the engine is gone.
"""
from __future__ import annotations

import collections
import importlib.metadata
import logging
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import torch

from . import __version__, protocol, skeleton
from .body import BodyModel
from .common.devices import resolve_device
from .ik.solver import default_body, solve
from .motion import read_motion
from .people.scan import PeopleScan, scan_people, write_scan_sheet
from .pipeline import AnalyzeOptions, analyze, analyze_people, refine
from .protocol import BAD_INPUT, BAD_REQUEST, CANCELLED, INTERNAL, BadRequest, RequestId
from .regressors.base import RegressorError

#: People scans kept for the analyses that follow them.
_KEPT_SCANS = 4
# How long a terminating server waits for the running job to reach its next progress
# report (and so leave no temporary file) before it exits regardless.
_TERMINATE_WAIT_S = 5.0


class Cancelled(Exception):
    """Raised from a job's progress callback to stop the job."""


class EventWriter:
    """Writes events to the protocol stream, whole lines from any thread."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, request_id: RequestId | None, event: str, **fields: Any) -> None:
        line = protocol.encode_event(request_id, event, **fields).encode("ascii")
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                # The client is gone (or the stream already closed): nobody to tell, and
                # the end of stdin that follows shuts the server down.
                pass


class _Job:
    def __init__(self, request: protocol.Job) -> None:
        self.request = request
        self.cancelled = threading.Event()


class Server:
    """Reads requests from ``requests`` until shutdown or its end; events go to ``events``."""

    def __init__(self, requests: BinaryIO, events: EventWriter) -> None:
        self.requests, self.events = requests, events
        self._lock = threading.Condition()
        self._queue: collections.deque[_Job] = collections.deque()
        self._running: _Job | None = None
        self._stopping = False
        self._bodies: dict[tuple[str, int, int], BodyModel] = {}
        # The last people scans, so that an analyze right after a people request (the
        # add-on's Detect People, then Import) does not search the video again.
        self._scans: collections.OrderedDict[tuple, PeopleScan] = collections.OrderedDict()
        self._worker = threading.Thread(target=self._work, name="ikol-engine-jobs", daemon=True)
        self._in_job = threading.local()

    def serve(self) -> int:
        """The main loop; returns the exit code."""
        self.events.send(None, "ready", **self._info("auto"))
        self._worker.start()
        try:
            for line in self.requests:
                if line.strip() and self._handle(line):
                    return 0
        except KeyboardInterrupt:
            self._stop(wait=_TERMINATE_WAIT_S)
            return 130
        except _Terminated:
            self._stop(wait=_TERMINATE_WAIT_S)
            return 143
        self._stop()
        return 0

    def log_handler(self) -> logging.Handler:
        """A handler sending log records (and so captured warnings) as ``log`` events,
        with the id of the job whose thread raised them."""
        server = self

        class _ToEvents(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                server.events.send(getattr(server._in_job, "id", None), "log", level=record.levelname.lower(),
                                   message=record.getMessage())

        return _ToEvents()

    # Main thread: requests.

    def _handle(self, line: bytes) -> bool:
        """Answers or queues one request line; True once the server should exit."""
        try:
            request = protocol.parse_request(line)
        except BadRequest as error:
            self.events.send(error.request_id, "error", kind=BAD_REQUEST, message=str(error))
            return False
        try:
            return self._dispatch(request)
        except Exception as error:  # a bug here must not end the server
            self.events.send(request.id, "error", kind=INTERNAL, message=f"{type(error).__name__}: {error}",
                             traceback=traceback.format_exc())
            return False

    def _dispatch(self, request: protocol.Request) -> bool:
        if isinstance(request, (protocol.Analyze, protocol.Refine, protocol.People)):
            self._enqueue(request)
        elif isinstance(request, protocol.Cancel):
            self._cancel(request)
        elif isinstance(request, protocol.Info):
            try:
                self.events.send(request.id, "result", **self._info(request.device))
            except ValueError as error:  # an unknown or unavailable device
                self.events.send(request.id, "error", kind=BAD_INPUT, message=str(error))
        else:
            self._stop()
            self.events.send(request.id, "result")
            return True
        return False

    def _enqueue(self, request: protocol.Job) -> None:
        try:
            self._check_inputs(request)
        except ValueError as error:  # refused before it starts: no job, no waiting for the video
            self.events.send(request.id, "error", kind=BAD_INPUT, message=str(error))
            return
        with self._lock:
            if any(job.request.id == request.id for job in self._jobs()):
                self.events.send(request.id, "error", kind=BAD_REQUEST,
                                 message=f"a job with id {request.id!r} is already running or queued")
                return
            ahead = len(self._jobs())
            self._queue.append(_Job(request))
            self._lock.notify()
        if ahead:
            self.events.send(request.id, "log", level="info", message=f"queued behind {ahead} job(s)")

    def _check_inputs(self, request: protocol.Job) -> None:
        """Refuses a job whose device is not here or whose body file does not load (its
        options were checked when the request was parsed).

        Raises:
            ValueError: naming the device or the file.
        """
        if isinstance(request, protocol.People):
            return
        device = request.solve.device if isinstance(request, protocol.Analyze) else request.solve.get("device")
        if device is not None:
            resolve_device(device)
        self._body(request.body)

    def _cancel(self, request: protocol.Cancel) -> None:
        with self._lock:
            job = next((job for job in self._jobs() if job.request.id == request.target), None)
            if job is None:
                self.events.send(request.id, "error", kind=BAD_REQUEST,
                                 message=f"no running or queued job with id {request.target!r}")
                return
            job.cancelled.set()
            state = "running" if job is self._running else "queued"
            if state == "queued":
                self._queue.remove(job)
                self._send_cancelled(job)
        self.events.send(request.id, "result", target=request.target, state=state)

    def _stop(self, wait: float | None = None) -> None:
        """Cancels every job and ends the worker, waiting for it at most ``wait`` seconds."""
        with self._lock:
            self._stopping = True
            if self._running is not None:
                self._running.cancelled.set()
            while self._queue:
                self._send_cancelled(self._queue.popleft())
            self._lock.notify()
        self._worker.join(wait)

    def _jobs(self) -> list[_Job]:
        return ([self._running] if self._running else []) + list(self._queue)

    def _info(self, device_name: str) -> dict[str, Any]:
        device = resolve_device(device_name)
        with self._lock:
            running = self._running.request.id if self._running else None
            queued = [job.request.id for job in self._queue]
        return {"protocol": protocol.PROTOCOL_VERSION, "engine": __version__, "python": platform.python_version(),
                "torch": torch.__version__, **{name: importlib.metadata.version(name) for name in _PACKAGES},
                "device": str(device),
                "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                "pid": os.getpid(), "running": running, "queued": queued}

    # Worker thread: jobs.

    def _work(self) -> None:
        try:
            _warm_up()
        except Exception as error:  # the jobs that need it will report it
            self.events.send(None, "log", level="error", message=f"warm-up failed: {type(error).__name__}: {error}")
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                job = self._running = self._queue.popleft()
            event, fields = self._run(job)
            # No longer running before the client hears of its end: a cancel sent after
            # the job's last event is then always refused, never accepted and ignored.
            with self._lock:
                self._running = None
            self.events.send(job.request.id, event, **fields)

    def _run(self, job: _Job) -> tuple[str, dict[str, Any]]:
        """Runs a job; returns its last event and that event's fields."""
        request = job.request
        self._in_job.id = request.id
        started = time.perf_counter()
        try:
            if isinstance(request, protocol.Analyze):
                result = self._analyze(request, self._progress(job))
            elif isinstance(request, protocol.People):
                result = self._people(request, self._progress(job))
            else:
                result = self._refine(request, self._progress(job))
        except Cancelled:
            return "error", _CANCELLED
        except (ValueError, RegressorError) as error:  # what the CLI reports as bad input
            return "error", {"kind": BAD_INPUT, "message": str(error)}
        except Exception as error:
            return "error", {"kind": INTERNAL, "message": f"{type(error).__name__}: {error}",
                             "traceback": traceback.format_exc()}
        finally:
            self._in_job.id = None
        return "result", {**result, "seconds": time.perf_counter() - started}

    def _analyze(self, request: protocol.Analyze, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
        known = self._scans.get(_scan_key(request.video, request.options))
        if request.options.choice.mode == "all":  # output is a folder; one file per person
            written = analyze_people(request.video, request.output, request.options, request.solve,
                                     self._body(request.body), progress, known)
            return {"output": request.output,
                    "people": [protocol.job_result(str(path), motion, solution) for path, motion, solution in written]}
        motion, solution = analyze(request.video, request.output, request.options, request.solve,
                                   self._body(request.body), progress, known)
        return protocol.job_result(request.output, motion, solution)

    def _people(self, request: protocol.People, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
        options = request.options
        scan = scan_people(request.video, options.start_s, options.end_s, options.fps, progress)
        key = _scan_key(request.video, options)
        if key is not None:
            self._scans[key] = scan
            while len(self._scans) > _KEPT_SCANS:
                self._scans.popitem(last=False)
        if request.sheet is not None:
            write_scan_sheet(request.video, scan, request.sheet, options.fps)
        return {"people": scan.as_json(), "frames": [scan.start, scan.end], "detection_step": scan.step,
                "image_size": [scan.info.width, scan.info.height], "sheet": request.sheet}

    def _refine(self, request: protocol.Refine, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
        # Read first: an in-place refine replaces the file whose residual the client shows as "before".
        previous = protocol.mean_residual_mm(read_motion(request.motion))
        motion, solution = refine(request.motion, request.output, request.solve, self._body(request.body), progress)
        return {**protocol.job_result(request.output, motion, solution), "previous_residual_mm": previous}

    def _progress(self, job: _Job) -> Callable[[str, int, int], None]:
        throttle = protocol.ProgressThrottle()

        def report(stage: str, done: int, total: int) -> None:
            if job.cancelled.is_set():
                raise Cancelled
            if throttle(stage, done, total, time.monotonic()):
                self.events.send(job.request.id, "progress", stage=stage, done=done, total=total)

        if job.cancelled.is_set():  # cancelled while it was being taken from the queue
            raise Cancelled
        return report

    def _body(self, path: str | None) -> BodyModel | None:
        """The body model at ``path``, loaded once per version of the file; None: the bundled body."""
        if path is None:
            return None
        key = _file_version(path)
        if key is None:
            return BodyModel(path)  # raises BodyModelError naming the file
        if key not in self._bodies:
            self._bodies[key] = BodyModel(path)
        return self._bodies[key]

    def _send_cancelled(self, job: _Job) -> None:
        self.events.send(job.request.id, "error", **_CANCELLED)


def _file_version(path: str) -> tuple[str, int, int] | None:
    """A file as it is now (path, modification time, size), to cache what was read from
    it; None if it cannot be read."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size


def _scan_key(video: str, options: AnalyzeOptions) -> tuple | None:
    """What a people scan depends on: the video file as it is now, and the range and rate;
    None if the file cannot be read (the job then reports it)."""
    version = _file_version(video)
    return None if version is None else (*version, options.start_s, options.end_s, options.fps)


def _warm_up() -> None:
    """Loads the bundled body and runs a small solve before the first job.

    A process's first solve pays for torch's one-time set-up (measured: a 30-frame
    refine took 0.57 s first and 0.19 s next on the CPU), which would otherwise land on the
    client's first refine.
    """
    body = default_body()
    body.smpl  # built on first use
    frames = 8
    rest = body.rest_keypoints(torch.zeros(1, body.num_betas)).expand(frames, -1, -1)
    twists = skeleton.NUM_JOINTS - 1
    solve(rest, torch.ones(rest.shape[:2]), twist=torch.zeros(frames, twists),
          twist_confidence=torch.ones(frames, twists), iterations=2, body=body)


_CANCELLED = {"kind": CANCELLED, "message": "cancelled; nothing was written and any earlier file is untouched"}
_PACKAGES = ("numpy", "mediapipe", "smplx")


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread wherever it is waiting; a BaseException so that
    no handler meant for failed requests swallows it."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise _Terminated


def claim_stdout() -> BinaryIO:
    """Returns a private stream onto the process's stdout and points fd 1 and
    ``sys.stdout`` at stderr, so that nothing but protocol lines reaches stdout."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb")


def main() -> NoReturn:
    events = EventWriter(claim_stdout())
    server = Server(sys.stdin.buffer, events)
    logging.captureWarnings(True)
    logging.basicConfig(level=logging.WARNING, handlers=[server.log_handler()])
    signal.signal(signal.SIGTERM, _raise_terminated)
    code = server.serve()
    # Every event is flushed and every file written atomically, so nothing is lost by
    # skipping interpreter shutdown, which takes about a second with torch loaded (and
    # would wait for a job that has not yet reached its next progress report).
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
