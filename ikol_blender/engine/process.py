"""Runs the engine (torch, mediapipe) as a subprocess of a separate engine Python.

Blender's own Python never imports torch: the engine runs in a Python the user points
at, with the engine source either vendored in the installed extension (``vendor/``,
put first on the child's ``PYTHONPATH``) or installed in that Python (a checkout).
The child's stderr carries progress lines (one a tenth, since it is not a terminal) and,
on failure, the reason; its stdout carries the one-line summary.

Synchronous on purpose: the headless path has no event loop (modal operators and timers
never run in background mode), so this blocks until the engine is done.
"""
from __future__ import annotations

import collections
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .link import remove_partial_files

ENVIRONMENT_VARIABLE = "IKOL_ENGINE_PYTHON"
#: What the engine imports at the top level; an engine Python must find all of them.
ENGINE_MODULES = ("ikol_engine", "torch", "mediapipe", "cv2", "smplx", "roma")
ENGINE_ERROR_PREFIX = "ikol-engine: error: "
#: A progress line of the engine's ProgressBar when stderr is not a terminal.
_PROGRESS = re.compile(r"^(?P<stage>[^:]+): (?P<done>\d+)/(?P<total>\d+) \((?P<percent>\d+)%\)$")
#: The extension's folder (the one holding ``engine/``), where an installed copy keeps ``vendor/``.
ADDON_ROOT = Path(__file__).resolve().parents[1]
#: The add-on preference naming the engine Python, as the error below tells the user to set it.
ENGINE_PYTHON_LABEL = "Engine Python"
#: The engine's ranges (ikol_engine.track.camera and .video.decode), repeated here since
#: the extension checks options without importing the engine's torch side.
MIN_FOV_DEG, MAX_FOV_DEG = 1.0, 170.0
MIN_FPS, MAX_FPS = 1.0, 1000.0
_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")
#: ``--person``: auto, all, an id from 1, or a pixel X,Y (the engine's rule, ikol_engine.people.selection).
_PERSON = re.compile(r"\s*(auto|all|0*[1-9]\d*|[-+]?\d+(\.\d*)?\s*,\s*[-+]?\d+(\.\d*)?)\s*", re.IGNORECASE)
_KEPT_LINES = 20
_TERMINATE_GRACE_S = 5.0
_PROBE_TIMEOUT_S = 60.0

ProgressCallback = Callable[[str, float], None]
LineCallback = Callable[[str], None]


class EngineUnavailable(RuntimeError):
    """No usable engine Python: nothing to run the engine with."""


class EngineError(RuntimeError):
    """The engine ran and failed; the message is its last error line."""

    def __init__(self, message: str, returncode: int) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass(frozen=True)
class Engine:
    """An engine Python and, if the engine is vendored, the folder holding ``ikol_engine``."""

    python: Path
    source: Path | None

    def command(self, arguments: Sequence[str], module: str = "ikol_engine.cli") -> list[str]:
        """An argument list running one of the engine's modules (the CLI by default)."""
        return [str(self.python), "-m", module, *arguments]

    def environment(self) -> dict[str, str]:
        """The child's environment: ours, with the vendored engine first on ``PYTHONPATH``."""
        environment = dict(os.environ)
        if self.source is not None:
            paths = [str(self.source), *filter(None, environment.get("PYTHONPATH", "").split(os.pathsep))]
            environment["PYTHONPATH"] = os.pathsep.join(paths)
            # `-m` and `-c` put the working directory first on sys.path, where a checkout's
            # ikol_engine would shadow the vendored one (Python 3.11+ honours this).
            environment["PYTHONSAFEPATH"] = "1"
        return environment

    def missing_modules(self) -> list[str]:
        """The engine's modules this Python cannot find (without importing them: fast)."""
        probe = ("import importlib.util, sys\n"
                 "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))")
        try:
            result = subprocess.run([str(self.python), "-c", probe, *ENGINE_MODULES], env=self.environment(),
                                    capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise EngineUnavailable(f"engine Python {self.python} does not run: {error}") from error
        if result.returncode != 0:
            raise EngineUnavailable(f"engine Python {self.python} does not run: {_last_line(result.stderr)}")
        return result.stdout.split()


@dataclass(frozen=True)
class AnalyzeOptions:
    """Options of ``ikol-engine analyze``; None leaves the engine's default."""

    start: float | None = None
    end: float | None = None
    iterations: int | None = None
    device: str | None = None
    fov: float | str | None = None  # degrees, or "auto": estimated from the clip
    focal_mm: float | None = None
    model_complexity: int | None = None
    fps: float | None = None
    person: str | None = None
    hands: bool = True  # False: --no-hands, the body alone

    def check(self) -> None:
        """The engine's own rules for these options, checked without starting it.

        Raises:
            ValueError: naming the option and what it takes.
        """
        for label, value in (("--start", self.start), ("--end", self.end)):
            if value is not None and not 0 <= value < math.inf:
                raise ValueError(f"{label} must be a finite number of seconds >= 0, got {value}")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"--start {self.start} must come before --end {self.end}")
        if self.iterations is not None and not 0 <= self.iterations <= 100:
            raise ValueError(f"--iterations must be from 0 to 100, got {self.iterations}")
        if self.fov is not None and self.fov != "auto" and not (
                isinstance(self.fov, (int, float)) and MIN_FOV_DEG <= self.fov <= MAX_FOV_DEG):
            raise ValueError(f"--fov must be auto or between {MIN_FOV_DEG:g} and {MAX_FOV_DEG:g} degrees, "
                             f"got {self.fov}")
        if self.focal_mm is not None and not 0 < self.focal_mm < math.inf:
            raise ValueError(f"--focal-mm must be a focal length in mm > 0, got {self.focal_mm}")
        if self.fps is not None and not MIN_FPS <= self.fps <= MAX_FPS:
            raise ValueError(f"--fps must be between {MIN_FPS:g} and {MAX_FPS:g}, got {self.fps}")
        if self.device is not None and _DEVICE_NAME.fullmatch(self.device) is None:
            raise ValueError(f"unknown device {self.device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
        check_person(self.person)

    def arguments(self) -> list[str]:
        flags = {"--start": self.start, "--end": self.end, "--iterations": self.iterations,
                 "--device": self.device, "--fov": self.fov, "--focal-mm": self.focal_mm,
                 "--model-complexity": self.model_complexity,
                 "--fps": self.fps, "--person": self.person}
        return ([part for flag, value in flags.items() if value is not None for part in (flag, str(value))]
                + ([] if self.hands else ["--no-hands"]))


def check_person(person: str | None) -> None:
    """``--person``'s form, checked without the engine (None: the engine's default, auto).

    Raises:
        ValueError: not auto, all, a person id (1, 2, ...) or a pixel X,Y.
    """
    if person is not None and _PERSON.fullmatch(person) is None:
        raise ValueError(f"--person must be auto, all, a person id (1, 2, ...) or a pixel X,Y; got {person!r}")


def check_device(engine: Engine, device: str | None) -> None:
    """Asks the engine whether a GPU device exists there (``auto`` and ``cpu`` always do).

    Raises:
        ValueError: the engine's reason (no CUDA build, too few GPUs).
    """
    if device in (None, "auto", "cpu"):
        return
    try:
        run_engine(engine, ["info", "--device", device], log=lambda line: None)
    except EngineError as error:
        raise ValueError(str(error)) from None


def vendored_source(root: Path = ADDON_ROOT) -> Path | None:
    """The folder holding the vendored ``ikol_engine`` (installed extension), or None (a checkout)."""
    vendor = root / "vendor"
    return vendor if (vendor / "ikol_engine").is_dir() else None


def resolve_engine(python: str | Path | None = None) -> Engine:
    """The engine to run, checked to find the engine's modules.

    The engine Python is the first of: ``python`` (the caller's choice: a command-line
    flag, else the add-on preference; empty for none); ``$IKOL_ENGINE_PYTHON``; this very
    Python if it finds the engine's modules (bpy used as a Python module in the engine's
    environment).

    Raises:
        EngineUnavailable: none is set and this Python lacks the engine, or the chosen
            one does not run or lacks the engine's modules.
    """
    source = vendored_source()
    candidates = (python, os.environ.get(ENVIRONMENT_VARIABLE))
    chosen = next((str(candidate) for candidate in candidates if candidate), None)
    if chosen is None:
        engine = Engine(Path(sys.executable), source)
        if missing := engine.missing_modules():
            raise EngineUnavailable(f"no engine Python: set the add-on preference '{ENGINE_PYTHON_LABEL}' "
                                    f"or {ENVIRONMENT_VARIABLE} to a Python with the engine's requirements "
                                    f"({sys.executable} lacks {', '.join(missing)})")
        return engine
    path = Path(os.path.expanduser(chosen))
    if not path.is_file() or not os.access(path, os.X_OK):
        raise EngineUnavailable(f"engine Python {path} is not an executable file")
    engine = Engine(path, source)
    if missing := engine.missing_modules():
        raise EngineUnavailable(f"engine Python {path} lacks {', '.join(missing)}; install the engine's "
                                f"requirements into it (see the README)")
    return engine


def run_analyze(engine: Engine, video: str | Path, output: str | Path, options: AnalyzeOptions = AnalyzeOptions(),
                progress: ProgressCallback | None = None, log: LineCallback | None = None) -> str:
    """Runs ``ikol-engine analyze VIDEO -o OUTPUT`` and returns the engine's summary line.

    The engine writes ``output`` atomically: on failure or interrupt an earlier file
    there is left as it was, and the unfinished file of an engine that was killed is
    removed here.

    Args:
        progress: called with (stage, fraction 0..1) for each progress line.
        log: called with every other stderr line (library chatter, tracebacks);
            default: echoed to our stderr.
    Raises:
        EngineError: the engine exited non-zero.
        KeyboardInterrupt: after the child has been stopped.
    """
    # --verbose: the libraries' lines come on the child's stderr to ``log`` (which the
    # batch drops), instead of a log file the engine would leave beside ``output``.
    arguments = ["analyze", str(video), "-o", str(output), *options.arguments(), "--verbose"]
    try:
        return run_engine(engine, arguments, progress, log)
    except BaseException:
        remove_partial_files(Path(output))  # the child is gone by now (run_engine waits for it)
        raise


def run_engine(engine: Engine, arguments: Sequence[str], progress: ProgressCallback | None = None,
               log: LineCallback | None = None) -> str:
    """Runs an engine command (see :func:`run_analyze`); returns its stdout's last line."""
    log = log or _echo
    recent: collections.deque[str] = collections.deque(maxlen=_KEPT_LINES)
    # stdout goes to a file, not a pipe: only stderr is read while the child runs, and a
    # full stdout pipe would block it.
    with tempfile.TemporaryFile() as stdout:
        child = subprocess.Popen(engine.command(arguments), env=engine.environment(), stdin=subprocess.DEVNULL,
                                 stdout=stdout, stderr=subprocess.PIPE)
        try:
            for raw in child.stderr:
                line = raw.decode("utf-8", errors="replace").rstrip()
                match = _PROGRESS.match(line)
                if match and progress is not None:
                    progress(match["stage"], int(match["done"]) / max(1, int(match["total"])))
                elif match:
                    log(line)
                elif line:
                    recent.append(line)
                    log(line)
            returncode = child.wait()
        except BaseException:
            _stop(child)
            raise
        finally:
            child.stderr.close()
        stdout.seek(0)
        summary = _last_line(stdout.read().decode("utf-8", errors="replace"))
    if returncode != 0:
        raise EngineError(_error_line(recent, returncode), returncode)
    return summary


def _stop(child: subprocess.Popen) -> None:
    """Ends the child: politely first (the engine then exits without writing), then for sure."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=_TERMINATE_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _error_line(lines: Sequence[str], returncode: int) -> str:
    """The engine's own error message if it printed one, else the last line (a traceback's)."""
    for line in reversed(lines):
        if line.startswith(ENGINE_ERROR_PREFIX):
            return line[len(ENGINE_ERROR_PREFIX):]
    if lines:
        return f"engine failed (exit {returncode}): {lines[-1]}"
    return f"engine failed (exit {returncode}) without a message"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
