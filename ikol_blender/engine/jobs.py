"""Engine requests followed to their outcome: the logic of the modal operators, without bpy.

A :class:`EngineJob` is one analyze or refine request and the state its events put it
in; :class:`EngineSession` owns the engine server's client, starts it on demand, and
hands each event to the job it is about. Operators call :meth:`EngineSession.pump` from
a timer and read the jobs' state; tests drive the same objects without a window or an
event loop. A dead engine fails every pending job with the reason and is started again
by the next request; the unfinished files it was writing for them, which a killed
process cannot delete itself, are removed.
"""
from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import EXIT_EVENT, EngineClient, EngineGone
from .link import remove_partial_files

# Share of the progress bar each stage reaches: the keypoint network is most of an
# analysis. A one-person analyze finds the people on the frames the network gets (one
# "regress" stage from the start); with --person all they are found first ("people",
# about half as long as one person's keypoints), and the bar never goes back.
_STAGE_SPANS = {"analyze": {"people": (0.0, 0.3), "regress": (0.0, 0.9), "solve": (0.9, 1.0)},
                "refine": {"solve": (0.0, 1.0)}, "people": {"people": (0.0, 1.0)}}


class JobPhase(enum.Enum):
    WAITING = "waiting"        # sent; the engine has not reported on it yet
    RUNNING = "running"
    CANCELLING = "cancelling"  # cancel sent; the job's last event is still to come
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_FINAL = {JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.CANCELLED}


@dataclass
class EngineJob:
    """One request and what its events said.

    Attributes:
        kind: "analyze", "refine" or "people"; request_id: the id it was sent with.
        fraction: progress 0..1 over the whole job; stage: the engine's current stage.
        message: the error for FAILED, else the latest log line.
        result: the ``result`` event's fields once SUCCEEDED.
        cancel_requested: a cancel was sent; a result that still arrives is then not
            wanted (the engine finished before it saw the cancel).
        output: the file the engine writes for this job (a refine without ``output``
            rewrites its ``motion``; a people request writes its ``sheet``), if any.
    """

    kind: str
    request_id: int
    phase: JobPhase = JobPhase.WAITING
    stage: str = ""
    fraction: float = 0.0
    message: str = ""
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
    output: str | None = None

    @property
    def finished(self) -> bool:
        return self.phase in _FINAL

    def handle(self, event: dict[str, Any]) -> None:
        """Updates the state from one event about this job (or the engine's exit)."""
        if self.finished:
            return
        kind = event.get("event")
        if kind == "progress":
            self.stage = str(event.get("stage", ""))
            span = _STAGE_SPANS.get(self.kind, {}).get(self.stage, (0.0, 1.0))
            done, total = event.get("done", 0), event.get("total", 0)
            share = done / total if total else 1.0
            self.fraction = max(self.fraction, span[0] + (span[1] - span[0]) * share)
            if self.phase is JobPhase.WAITING:
                self.phase = JobPhase.RUNNING
        elif kind == "log":
            self.message = str(event.get("message", ""))
        elif kind == "result":
            self.phase, self.result, self.fraction = JobPhase.SUCCEEDED, event, 1.0
        elif kind == "error":
            if event.get("kind") == "cancelled":
                self.phase, self.message = JobPhase.CANCELLED, "cancelled"
            else:
                self.phase, self.message = JobPhase.FAILED, str(event.get("message", "the engine failed"))
        elif kind == EXIT_EVENT:
            self.phase, self.message = JobPhase.FAILED, engine_exit_message(event)


def engine_exit_message(event: dict[str, Any]) -> str:
    """One line on why the engine is gone, from an ``exit`` event."""
    lines = [line for line in event.get("stderr", []) if line.strip()]
    reason = f": {lines[-1].strip()}" if lines else ""
    return f"the engine stopped (exit code {event.get('code')}){reason}"


@dataclass
class EngineSession:
    """The engine server of one Blender session and the jobs waiting on it.

    Attributes:
        make_client: builds a client for a fresh server (resolving the engine Python,
            which may raise); called on first use and after the engine died.
        info: the fields of the server's ``ready`` event, once it came.
        engine_error: why the engine last stopped unasked, for the UI to show with a
            restart button; cleared by a restart.
    """

    make_client: Callable[[], EngineClient]
    client: EngineClient | None = None
    info: dict[str, Any] | None = None
    engine_error: str = ""
    jobs: dict[int, EngineJob] = field(default_factory=dict)

    def submit(self, kind: str, **parameters: Any) -> EngineJob:
        """Sends an analyze, refine or people request (starting the engine if needed) -> its job.

        Raises:
            EngineGone: the engine cannot be started or took no request.
            EngineUnavailable (from ``make_client``): no usable engine Python.
        """
        client = self._started()
        job = EngineJob(kind, client.send(kind, **parameters),
                        output=parameters.get("output") or parameters.get("motion") or parameters.get("sheet"))
        self.jobs[job.request_id] = job
        return job

    def cancel(self, job: EngineJob) -> None:
        """Asks the engine to stop ``job``; its final event follows through :meth:`pump`."""
        if job.finished or job.cancel_requested:
            return
        job.cancel_requested = True
        job.phase = JobPhase.CANCELLING
        client = self.client
        if client is None or not client.running:
            # The engine that had the job is gone; its exit event (if still queued) ends the job.
            self._forget_dead_client()
            job.handle({"event": "error", "kind": "cancelled"})
            self.jobs.pop(job.request_id, None)
            return
        try:
            client.send("cancel", target=job.request_id)
        except EngineGone as error:
            job.phase, job.message = JobPhase.FAILED, str(error)

    def pump(self) -> None:
        """Hands every event received so far to its job; never blocks."""
        if self.client is None:
            return
        for event in self.client.poll():
            self._dispatch(event)

    def pump_until(self, job: EngineJob, timeout: float) -> None:
        """Blocks until ``job`` is finished or ``timeout`` seconds pass (headless use, tests)."""
        deadline = time.monotonic() + timeout
        while not job.finished and self.client is not None and time.monotonic() < deadline:
            event = self.client.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            if event is not None:
                self._dispatch(event)

    def restart(self) -> None:
        """Stops the engine (failing what was pending) and clears the error; the next
        request starts a fresh one."""
        self.stop()
        self.engine_error = ""

    def stop(self) -> None:
        """Shuts the engine down; jobs still pending fail as stopped."""
        pending = list(self.jobs.values())
        for job in pending:
            job.handle({"event": "error", "kind": "internal", "message": "the engine was stopped"})
        self.jobs.clear()
        client, self.client = self.client, None
        if client is not None:
            client.stop()  # its exit event is about a shutdown we asked for: not an error
        _remove_leftovers(pending)  # an engine killed after the shutdown grace left them

    def _started(self) -> EngineClient:
        self._forget_dead_client()
        if self.client is None:
            self.client = self.make_client()
            self.client.start()
            self.engine_error = ""
        return self.client

    def _forget_dead_client(self) -> None:
        """Drops a client whose engine died since the last pump; its exit event still
        fails the jobs it held."""
        dead = self.client
        if dead is None or dead.running:
            return
        dead.stop()
        for event in dead.poll():
            self._dispatch(event)
        self.client = None

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "ready":
            self.info = {k: v for k, v in event.items() if k not in ("id", "event")}
        elif kind == EXIT_EVENT:
            self.engine_error = engine_exit_message(event)
            for job in self.jobs.values():
                job.handle(event)
            _remove_leftovers(self.jobs.values())
            self.jobs.clear()
            if self.client is not None and not self.client.running:
                self.client.stop()  # closes its pipes; the process is gone, so nothing waits
            self.client = None
        elif (job := self.jobs.get(event.get("id"))) is not None:
            job.handle(event)
            if job.finished:
                del self.jobs[job.request_id]


def _remove_leftovers(jobs: Iterable[EngineJob]) -> None:
    """Deletes the unfinished files a dead engine left for ``jobs`` (the engine is gone,
    so none of them is still being written)."""
    for job in jobs:
        if job.output:
            remove_partial_files(Path(job.output))
