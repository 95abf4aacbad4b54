"""The add-on's end of the engine server (``python -m ikol_engine.server``; protocol there).

Blender must never wait on the engine: a reader thread turns the server's stdout lines
into events on a queue, and the main thread drains the queue from a timer or a modal
operator (:meth:`EngineClient.poll`). A second thread drains stderr, keeping its last
lines for error messages, so library chatter can never fill the pipe and stall the
engine. When the server's stdout ends (it exited or was killed), the reader queues one
``exit`` event with the exit code and stderr's last lines: every pending request learns
that the engine is gone from it. Standard library only; no bpy.
"""
from __future__ import annotations

import collections
import itertools
import json
import queue
import subprocess
import threading
from collections.abc import Sequence
from typing import IO, Any

#: The event the client itself adds when the server's stdout ends.
EXIT_EVENT = "exit"
_STDERR_LINES = 40
_STOP_GRACE_S = 5.0


class EngineGone(RuntimeError):
    """The engine server is not running (never started, exited, or was killed)."""


class EngineClient:
    """One engine server process and the events it sent that nobody has taken yet."""

    def __init__(self, command: Sequence[str], environment: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.environment = environment
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Starts the server (an argument list, never a shell); its ``ready`` event follows.

        Raises:
            EngineGone: the command cannot be started (e.g. the Python is missing).
        """
        if self.running:
            return
        try:
            self._process = subprocess.Popen(self.command, env=self.environment, stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as error:
            raise EngineGone(f"cannot start the engine ({self.command[0]}): {error}") from error
        self._stderr.clear()
        process = self._process
        stderr_reader = threading.Thread(target=self._read_stderr, args=(process.stderr,), name="ikol-engine-stderr",
                                         daemon=True)
        stderr_reader.start()
        self._reader = threading.Thread(target=self._read_events, args=(process, stderr_reader),
                                        name="ikol-engine-events", daemon=True)
        self._reader.start()

    def send(self, request_type: str, **parameters: Any) -> int:
        """Sends a request and returns its id; its events arrive through :meth:`poll`.

        Raises:
            EngineGone: the server is not running.
        """
        if not self.running:
            raise EngineGone("the engine is not running")
        request_id = next(self._ids)
        line = json.dumps({"id": request_id, "type": request_type, **parameters}) + "\n"
        try:
            with self._write_lock:
                self._process.stdin.write(line.encode("utf-8"))
                self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as error:
            raise EngineGone(f"the engine stopped accepting requests: {error}") from error
        return request_id

    def poll(self) -> list[dict[str, Any]]:
        """All events received since the last call, oldest first; never blocks."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(self, timeout: float) -> dict[str, Any] | None:
        """The next event, waiting up to ``timeout`` seconds (for headless use and tests)."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    def stop(self) -> None:
        """Asks the server to shut down, then makes sure it has."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            try:
                self.send("shutdown")
                process.wait(timeout=_STOP_GRACE_S)
            except (EngineGone, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        self._reader.join(_STOP_GRACE_S)  # the pipes close once nothing reads them
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()

    def _read_events(self, process: subprocess.Popen, stderr_reader: threading.Thread) -> None:
        for raw in process.stdout:
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                event = None
            if isinstance(event, dict) and "event" in event:
                self._events.put(event)
            else:  # the protocol promises JSON lines only; keep anything else for diagnosis
                self._stderr.append(f"(stdout) {raw.decode('utf-8', errors='replace').rstrip()}")
        code = process.wait()
        stderr_reader.join(_STOP_GRACE_S)  # the exit event carries stderr's very last lines
        self._events.put({"id": None, "event": EXIT_EVENT, "code": code, "stderr": list(self._stderr)})

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            self._stderr.append(raw.decode("utf-8", errors="replace").rstrip())
