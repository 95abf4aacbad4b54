"""Keeping the libraries' own output (TensorFlow Lite, absl, smplx) off the user's terminal.

MediaPipe's native code writes its log lines straight to file descriptor 2, below
Python, so :func:`library_output_to` moves fd 2 itself onto a log file, while Python's
``sys.stderr`` gets a fresh descriptor onto the terminal: the engine's progress and
messages, written through ``sys.stderr``, still reach the user. Python-level chatter is
routed the same way: ``sys.stdout`` (smplx prints its notes), library warnings and
library log records go to the log; records of the ``ikol_engine`` logger stay on the
terminal as ``ikol-engine: warning: ...`` lines.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

#: The logger whose records are the engine's own messages to the user.
ENGINE_LOGGER = "ikol_engine"


@contextlib.contextmanager
def library_output_to(path: str | Path, prefix: str = "ikol-engine") -> Iterator[Path]:
    """Within the block, what libraries write goes to ``path`` (replaced), ours to the terminal.

    A log left empty is removed. ``sys.stderr`` keeps reaching where fd 2 pointed before (when it is fd 2's own
    stream; a stand-in such as a test's capture is left as it is). Everything is put
    back on exit.

    Raises:
        OSError: the log file cannot be written (its folder is missing, say).
    """
    path = Path(path)
    log = open(path, "w", encoding="utf-8", errors="replace")
    saved_stderr, saved_stdout = sys.stderr, sys.stdout
    saved_stderr.flush()
    saved_stdout.flush()
    terminal_fd = os.dup(2)
    ours_on_fd = _is_fd(saved_stderr, 2)
    terminal: TextIO = (os.fdopen(os.dup(terminal_fd), "w", buffering=1, encoding=saved_stderr.encoding,
                                  errors="backslashreplace") if ours_on_fd else saved_stderr)
    os.dup2(log.fileno(), 2)
    sys.stderr, sys.stdout = terminal, log
    handlers = _route_logging(log, terminal, prefix)
    try:
        yield path
    finally:
        for stream in (terminal, log):
            stream.flush()
        _unroute_logging(handlers)
        os.dup2(terminal_fd, 2)
        os.close(terminal_fd)
        sys.stderr, sys.stdout = saved_stderr, saved_stdout
        if ours_on_fd:
            terminal.close()
        log.close()
        if path.stat().st_size == 0:
            path.unlink()


def _is_fd(stream: TextIO, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):  # a stand-in stream without a descriptor
        return False


def _route_logging(log: TextIO, terminal: TextIO, prefix: str) -> tuple[logging.Handler, logging.Handler, bool]:
    """Library records and warnings to ``log``; the engine's records to ``terminal``.

    Returns what :func:`_unroute_logging` needs to undo it.
    """
    library = logging.StreamHandler(log)
    library.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    ours = logging.StreamHandler(terminal)
    ours.setFormatter(_LowerLevel(f"{prefix}: %(levelname)s: %(message)s"))
    engine = logging.getLogger(ENGINE_LOGGER)
    propagate = engine.propagate
    logging.getLogger().addHandler(library)
    engine.addHandler(ours)
    engine.propagate = False
    logging.captureWarnings(True)
    return library, ours, propagate


def _unroute_logging(routing: tuple[logging.Handler, logging.Handler, bool]) -> None:
    library, ours, propagate = routing
    logging.captureWarnings(False)
    logging.getLogger().removeHandler(library)
    engine = logging.getLogger(ENGINE_LOGGER)
    engine.removeHandler(ours)
    engine.propagate = propagate


class _LowerLevel(logging.Formatter):
    """``warning`` rather than ``WARNING``: the CLI's own lines are lower case."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(logging.makeLogRecord({**record.__dict__, "levelname": record.levelname.lower()}))
