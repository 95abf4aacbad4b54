"""Sets up an engine Python: a venv made with Blender's own Python, holding the engine's pinned requirements.

Blender's Python itself is never touched: it only serves as the base of a new venv in
the extension's user folder. :class:`EngineSetup` runs the four steps on a worker thread
and a timer (or a loop, headless) polls it:

1. ``python -m venv`` into a staging folder next to the final one;
2. ``python -m pip install --upgrade pip``;
3. ``python -m pip install`` the pinned requirements (:func:`install_packages`);
4. check that the new Python finds the engine's modules (the vendored engine on its
   ``PYTHONPATH``, as :mod:`.process` runs it), then rename the staging folder
   into place.

A previous venv is replaced only after the new one passed step 4: a failed or cancelled
setup removes its staging folder and leaves the previous engine Python working. Child
processes get argument lists, never a shell; their output lines are the log. After the
rename the venv's console scripts (``bin/pip``) still name the staging folder in their
first line, so use ``python -m pip`` in it.

GPU users: PyPI's torch has CUDA on Linux but is CPU-only on Windows and macOS. The
preference *Torch build* adds one of PyTorch's own indexes (:data:`TORCH_INDEXES`,
``--extra-index-url https://download.pytorch.org/whl/cu128`` for CUDA 12.8); its
builds carry a local version label (``2.13.0+cu128``) that still satisfies the
``torch==2.13.0`` pin and that pip prefers over PyPI's build of the same release.

No bpy calls here: the operators in :mod:`ikol_blender.ui.engine_operators` drive it, the tests drive it directly.
"""
from __future__ import annotations

import collections
import enum
import math
import os
import queue
import shutil
import signal
import subprocess
import threading
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from .process import ADDON_ROOT, Engine, LineCallback, vendored_source

#: Written into the extension zip by build_addon.py from pyproject.toml's dependencies.
REQUIREMENTS_FILE = "engine_requirements.txt"
#: PyTorch's package indexes by the *Torch build* preference; "default" uses PyPI's build.
TORCH_INDEXES = {"cpu": "https://download.pytorch.org/whl/cpu", "cu128": "https://download.pytorch.org/whl/cu128"}
LOG_FILE = "setup.log"
_KEPT_LINES = 200
_ERROR_LINES = 40
# On POSIX children lead their own process group, so that cancelling also stops what pip
# started itself (a build backend), which would otherwise hold the output pipe open;
# Windows ends the whole tree with taskkill instead.
_NEW_GROUP = {} if os.name == "nt" else {"start_new_session": True}

#: Returns the modules a Python lacks.
Verify = Callable[[Path], list[str]]


class Step(enum.Enum):
    VENV = "Creating the environment"
    PIP = "Upgrading pip"
    INSTALL = "Installing the engine's packages"
    VERIFY = "Checking the engine's modules"


class Phase(enum.Enum):
    READY = "ready"  # not started
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


_STEPS = list(Step)
# Share of the progress bar per step: the install is nearly all of the time.
_SPANS = {Step.VENV: (0.0, 0.05), Step.PIP: (0.05, 0.1), Step.INSTALL: (0.1, 0.97), Step.VERIFY: (0.97, 1.0)}


class SetupFailed(RuntimeError):
    """A step failed; the message is one line saying which and why."""


class _Cancelled(Exception):
    pass


def parse_requirements(text: str) -> list[str]:
    """The requirement lines of a requirements file (no blank lines, no comments)."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def engine_requirements(root: Path = ADDON_ROOT) -> list[str]:
    """The engine's pinned requirements: the installed extension's file, else the checkout's pyproject.toml.

    Raises:
        FileNotFoundError: neither is there.
    """
    installed = root / REQUIREMENTS_FILE
    if installed.is_file():
        return parse_requirements(installed.read_text(encoding="utf-8"))
    pyproject = root.parent / "pyproject.toml"
    if pyproject.is_file():
        return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])
    raise FileNotFoundError(f"no {REQUIREMENTS_FILE} in {root} and no pyproject.toml in {root.parent}")


def install_packages(root: Path = ADDON_ROOT) -> list[str]:
    """What step 3 gives pip: the requirements, and from a checkout the checkout itself.

    The installed extension runs its vendored engine; loaded from a checkout there is
    none, so the new venv gets the checkout as an editable install.
    """
    packages = engine_requirements(root)
    return packages if vendored_source(root) is not None else [*packages, "-e", str(root.parent)]


def torch_index_arguments(torch_build: str) -> list[str]:
    """pip's arguments for the *Torch build* preference ("default", "cpu", "cu128")."""
    index = TORCH_INDEXES.get(torch_build)
    return ["--extra-index-url", index] if index else []


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def missing_engine_modules(python: Path) -> list[str]:
    """The engine's modules ``python`` lacks, found as the engine will be run."""
    return Engine(python, vendored_source()).missing_modules()


class _InstallProgress:
    """A rough fraction of ``pip install`` from its output.

    The number of packages is not known in advance (requirements bring their own), so
    each "Collecting", "Downloading" or "Processing" line moves the bar a step closer to
    75%, "Installing collected packages" puts it at 80%, "Successfully installed" at 100%.
    """

    _SCALE = 20.0  # lines to about half of the way: the engine's set brings a few dozen packages

    def __init__(self) -> None:
        self.lines = 0
        self.fraction = 0.0

    def feed(self, line: str) -> float:
        text = line.lstrip()
        if text.startswith(("Collecting ", "Downloading ", "Processing ")):
            self.lines += 1
            fraction = 0.75 * (1.0 - math.exp(-self.lines / self._SCALE))
        elif text.startswith("Installing collected packages"):
            fraction = 0.8
        elif text.startswith("Successfully installed"):
            fraction = 1.0
        else:
            fraction = self.fraction
        self.fraction = max(self.fraction, fraction)
        return self.fraction


class EngineSetup:
    """One setup run: creates ``venv`` from ``base_python`` and installs ``packages`` into it.

    The worker thread only puts events on a queue; :meth:`poll` applies them on the
    caller's thread, so the attributes below change only there.

    Args:
        base_python: the new venv's base (Blender's own Python); venv: the final folder.
        packages: pip's arguments naming what to install (:func:`install_packages`).
        pip_arguments: given to both pip runs (an extra index; tests: ``--no-index``).
        verify: returns the modules the new Python lacks; default: the engine's.

    Attributes:
        phase, step: where the run is; message: the outcome, one line.
        fraction: progress 0..1 over the four steps.
        log: the last output lines (a full log goes to ``setup.log`` beside the venv).
    """

    def __init__(self, base_python: Path, venv: Path, packages: Sequence[str], pip_arguments: Sequence[str] = (),
                 verify: Verify | None = None) -> None:
        self.base_python = Path(base_python)
        self.venv = Path(venv)
        self.staging = self.venv.with_name(self.venv.name + ".staging")
        self.log_file = self.venv.with_name(LOG_FILE)
        self.packages = list(packages)
        self.pip_arguments = list(pip_arguments)
        self.verify = verify or missing_engine_modules
        self.phase = Phase.READY
        self.step: Step | None = None
        self.fraction = 0.0
        self.message = ""
        self.log: collections.deque[str] = collections.deque(maxlen=_KEPT_LINES)
        self._events: queue.Queue[tuple] = queue.Queue()
        self._cancel = threading.Event()
        self._child_lock = threading.Lock()
        self._child: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._log_to: IO[str] | None = None

    @property
    def python(self) -> Path:
        """The engine Python this run makes (there once it succeeded)."""
        return venv_python(self.venv)

    @property
    def finished(self) -> bool:
        return self.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)

    def start(self) -> None:
        if self.phase is not Phase.READY:
            raise RuntimeError("an engine setup runs once")
        self.phase = Phase.RUNNING
        self._thread = threading.Thread(target=self._work, name="ikol-engine-setup", daemon=True)
        self._thread.start()

    def poll(self, timeout: float = 0.0) -> list[str]:
        """Applies what the worker reported (waiting up to ``timeout`` for a first event); returns new log lines."""
        lines = []
        try:
            event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
            while True:
                kind, *values = event
                if kind == "line":
                    lines.append(values[0])
                    self.log.append(values[0])
                elif kind == "progress":
                    self.step, self.fraction = values
                else:
                    self.phase, self.message = values
                    if self.phase is Phase.SUCCEEDED:
                        self.fraction = 1.0
                event = self._events.get_nowait()
        except queue.Empty:
            pass
        return lines

    def cancel(self) -> None:
        """Stops the run: the running child is ended and the staging folder removed."""
        with self._child_lock:
            self._cancel.set()
            if self._child is not None and self._child.poll() is None:
                _terminate(self._child)

    def run(self, on_line: LineCallback = print, tick: float = 0.1) -> Phase:
        """Starts and waits for the end, handing each log line to ``on_line`` (headless use)."""
        self.start()
        try:
            while not self.finished:
                for line in self.poll(tick):
                    on_line(line)
        except KeyboardInterrupt:
            self.cancel()
            self.join()
            raise
        return self.phase

    def join(self, timeout: float | None = None) -> None:
        """Waits for the worker thread, then applies its last events."""
        if self._thread is not None:
            self._thread.join(timeout)
        self.poll()

    # Worker thread.

    def _work(self) -> None:
        try:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_to = open(self.log_file, "w", encoding="utf-8")
            self._steps()
        except _Cancelled:
            phase, message = Phase.CANCELLED, "engine setup cancelled; the previous engine Python is unchanged"
        except Exception as error:  # whatever it is, the run must end and say why, not leave the UI waiting
            phase = Phase.FAILED
            message = str(error) if isinstance(error, SetupFailed) else f"engine setup failed: {error}"
        else:
            phase, message = Phase.SUCCEEDED, f"engine Python ready: {self.python}"
        if phase is not Phase.SUCCEEDED:
            self._discard()
        if self._log_to is not None:
            self._log_to.write(message + "\n")
            self._log_to.close()
        self._events.put(("end", phase, message))

    def _steps(self) -> None:
        self._discard()  # a staging folder left by a crashed run
        self._enter(Step.VENV)
        self._run(Step.VENV, [str(self.base_python), "-m", "venv", str(self.staging)])
        staged = venv_python(self.staging)
        pip = [str(staged), "-m", "pip", "install", "--progress-bar", "off", *self.pip_arguments]
        self._enter(Step.PIP)
        self._run(Step.PIP, [*pip, "--upgrade", "pip"])
        self._enter(Step.INSTALL)
        install = _InstallProgress()
        self._run(Step.INSTALL, [*pip, *self.packages],
                  lambda line: self._progress(Step.INSTALL, install.feed(line)))
        self._enter(Step.VERIFY)
        if missing := self.verify(staged):
            raise SetupFailed(f"the new environment lacks {', '.join(missing)} after installing")
        if self._cancel.is_set():
            raise _Cancelled
        self._replace()

    def _enter(self, step: Step) -> None:
        self._line(f"[{_STEPS.index(step) + 1}/{len(_STEPS)}] {step.value}")
        self._progress(step, 0.0)

    def _progress(self, step: Step, within: float) -> None:
        start, end = _SPANS[step]
        self._events.put(("progress", step, start + (end - start) * within))

    def _line(self, line: str) -> None:
        self._log_to.write(line + "\n")
        self._log_to.flush()  # readable while pip runs
        self._events.put(("line", line))

    def _run(self, step: Step, command: list[str], on_line: LineCallback | None = None) -> None:
        """Runs one child to its end, its output lines into the log."""
        with self._child_lock:
            if self._cancel.is_set():
                raise _Cancelled
            self._line("$ " + subprocess.list2cmdline(command))
            child = self._child = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=_environment(), text=True, encoding="utf-8", errors="replace", **_NEW_GROUP)
        recent: collections.deque[str] = collections.deque(maxlen=_ERROR_LINES)
        with child.stdout:  # text mode: pip's carriage returns end lines too
            for raw in child.stdout:
                if line := raw.rstrip():
                    recent.append(line)
                    self._line(line)
                    if on_line is not None:
                        on_line(line)
        returncode = child.wait()
        with self._child_lock:
            self._child = None
        if self._cancel.is_set():
            raise _Cancelled
        if returncode != 0:
            raise SetupFailed(f"{step.value} failed (exit {returncode}): {_error_line(recent)}")

    def _replace(self) -> None:
        """Puts the verified staging folder in place of the previous venv, which is kept until then."""
        previous = self.venv.with_name(self.venv.name + ".previous")
        _remove(previous)
        if self.venv.exists():
            self.venv.rename(previous)
        try:
            self.staging.rename(self.venv)
        except OSError:
            if previous.exists():
                previous.rename(self.venv)
            raise
        _remove(previous)

    def _discard(self) -> None:
        _remove(self.staging)


def _environment() -> dict[str, str]:
    """Ours, minus what would make the new venv's pip see Blender's (or anyone's) modules."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    environment["PYTHONUNBUFFERED"] = "1"  # lines as they come, not at exit
    environment["PYTHONIOENCODING"] = "utf-8"  # what the reader decodes, whatever the console's code page
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return environment


def _terminate(child: subprocess.Popen) -> None:
    """Ends ``child`` and what it started."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(child.pid)], capture_output=True)
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _error_line(lines: Sequence[str]) -> str:
    """pip's own last "ERROR:" line if there is one, else the last line."""
    for line in reversed(lines):
        if line.lstrip().startswith("ERROR:"):
            return line.strip()
    return lines[-1].strip() if lines else "no output"


def _remove(path: Path) -> None:
    if path.exists() or path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
