"""Set Up Engine, Cancel and Check Engine: the preferences' buttons, and what they leave for the preferences to draw.

*Set Up Engine* makes the engine Python (:mod:`ikol_blender.engine.setup`) in the
extension's user folder; *Check Engine* starts the engine and shows what it runs with.
Both are modal with a timer where there is a window (a setup whose operator Blender ends,
as when a file loads, is polled on by an app timer), and synchronous in background mode.
They share the engine session and the modal helpers of :mod:`.operators`: a setup or
check must not start while an import or refine runs, and restarts the engine it replaces.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from .. import settings
from ..engine import setup as engine_setup  # a module: tests replace its functions
from ..engine.client import EngineGone
from ..engine.jobs import EngineJob, JobPhase
from ..engine.process import EngineUnavailable
from ..engine.setup import EngineSetup, Phase
from . import operators

ONLINE_ACCESS_MESSAGE = "Allow Online Access in Preferences > System > Network"
CHECK_TIMEOUT_S = 120.0
_TICK_S = 0.1


# ---- Set Up Engine ---------------------------------------------------------------------

#: The latest engine setup of this Blender session, for the preferences to draw.
SETUP: EngineSetup | None = None


def _setup_running() -> bool:
    return SETUP is not None and not SETUP.finished


def _redraw_preferences(context: bpy.types.Context) -> None:
    operators.redraw(context, frozenset({"PREFERENCES"}))


class IKOL_OT_setup_engine(bpy.types.Operator):
    """Make a Python environment for the engine in the extension's user folder and install its packages (~1 GB)"""

    bl_idname = "ikol.setup_engine"
    bl_label = "Set Up Engine"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not _setup_running()

    def execute(self, context: bpy.types.Context) -> set[str]:
        global SETUP
        if not settings.online_access():
            self.report({"ERROR"}, ONLINE_ACCESS_MESSAGE)
            return {"CANCELLED"}
        if operators.RUNNING:
            self.report({"ERROR"}, "wait for the running import or refine to end, or press Esc")
            return {"CANCELLED"}
        try:
            packages = engine_setup.install_packages()
        except OSError as error:
            self.report({"ERROR"}, f"IKOL engine setup: {error}")
            return {"CANCELLED"}
        # The running engine may live in the venv about to be replaced (Windows keeps such files locked).
        operators.SESSION.restart()
        # Blender's own Python is only the new venv's base; nothing is installed into it.
        SETUP = EngineSetup(Path(sys.executable), settings.engine_folder() / "venv", packages,
                            engine_setup.torch_index_arguments(settings.torch_build()))
        if bpy.app.background or context.window is None:
            SETUP.run(on_line=lambda line: print(line, flush=True))
            return self._conclude()
        SETUP.start()
        return operators.begin_modal(self, context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            SETUP.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        SETUP.poll()
        context.window_manager.progress_update(int(100 * SETUP.fraction))
        _redraw_preferences(context)
        if not SETUP.finished:
            return {"RUNNING_MODAL"}
        self._end_modal(context)
        return self._conclude()

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the operator (its window closed, a file loaded): the setup goes on, polled by an app timer."""
        self._end_modal(context)
        bpy.app.timers.register(_poll_detached_setup, first_interval=_TICK_S, persistent=True)

    def _end_modal(self, context: bpy.types.Context) -> None:
        operators.end_modal(self, context)
        _redraw_preferences(context)

    def _conclude(self) -> set[str]:
        level, message = _conclude_setup()
        self.report({level}, message)
        return {"FINISHED" if level == "INFO" else "CANCELLED"}


def _conclude_setup() -> tuple[str, str]:
    """Takes a finished setup's outcome into the preferences; returns the report's level and message."""
    if SETUP.phase is not Phase.SUCCEEDED:
        failed = SETUP.phase is Phase.FAILED
        detail = f" (log: {SETUP.log_file})" if failed else ""
        return "ERROR" if failed else "WARNING", f"IKOL {SETUP.message}{detail}"
    preferences = settings.addon_preferences()
    if preferences is not None:
        preferences.engine_python = str(SETUP.python)
    if not operators.RUNNING:  # an engine started meanwhile runs the previous Python
        operators.SESSION.restart()
    return "INFO", f"IKOL {SETUP.message}"


def _poll_detached_setup() -> float | None:
    """An app timer: polls a setup whose operator Blender ended, to its conclusion."""
    SETUP.poll()
    _redraw_preferences(bpy.context)
    if not SETUP.finished:
        return _TICK_S
    print(_conclude_setup()[1])
    return None


class IKOL_OT_cancel_engine_setup(bpy.types.Operator):
    """Stop the engine setup; the previous engine Python stays as it was"""

    bl_idname = "ikol.cancel_engine_setup"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _setup_running()

    def execute(self, context: bpy.types.Context) -> set[str]:
        SETUP.cancel()
        return {"FINISHED"}


# ---- Check Engine ----------------------------------------------------------------------

@dataclass
class EngineCheck:
    """The latest Check Engine: running, then what the engine said or why it could not.

    Attributes:
        python: the engine Python that was started; result: the ``info`` result's fields.
    """

    running: bool = False
    python: str = ""
    result: dict[str, Any] | None = None
    error: str = ""

    def lines(self) -> list[str]:
        """What the preferences show, one label each."""
        if self.running:
            return ["Starting the engine..."]
        if self.error:
            return [self.error]
        if self.result is None:
            return []
        info = self.result
        return [f"Engine Python: {self.python}",
                f"IKOL engine {info.get('engine')} on Python {info.get('python')}",
                f"torch {info.get('torch')}, mediapipe {info.get('mediapipe')}, numpy {info.get('numpy')}, "
                f"smplx {info.get('smplx')}",
                f"Device: {info.get('device')}",
                f"GPU: {info.get('gpu') or 'none in use'}"]


#: The latest check of this Blender session, for the preferences to draw.
CHECK = EngineCheck()


class IKOL_OT_check_engine(bpy.types.Operator):
    """Start the engine with the current settings and show its versions, device and GPU"""

    bl_idname = "ikol.check_engine"
    bl_label = "Check Engine"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not CHECK.running and not _setup_running()

    def execute(self, context: bpy.types.Context) -> set[str]:
        global CHECK
        if not operators.RUNNING:  # check the engine as now set, not one started before a change
            operators.SESSION.restart()
        try:
            self.job = operators.SESSION.submit("info", device=settings.default_device())
        except (EngineGone, EngineUnavailable) as error:
            CHECK = EngineCheck(error=f"IKOL engine: {error}")
            self.report({"ERROR"}, CHECK.error)
            return {"CANCELLED"}
        CHECK = EngineCheck(running=True, python=operators.SESSION.client.command[0])
        self.deadline = time.monotonic() + CHECK_TIMEOUT_S
        if bpy.app.background or context.window is None:
            operators.SESSION.pump_until(self.job, CHECK_TIMEOUT_S)
            return self._conclude(self.job)
        return operators.begin_modal(self, context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        operators.SESSION.pump()
        if not self.job.finished and time.monotonic() < self.deadline:
            return {"RUNNING_MODAL"}
        operators.end_modal(self, context)
        outcome = self._conclude(self.job)
        _redraw_preferences(context)
        return outcome

    def cancel(self, context: bpy.types.Context) -> None:
        operators.end_modal(self, context)
        operators.SESSION.jobs.pop(self.job.request_id, None)
        CHECK.running = False

    def _conclude(self, job: EngineJob) -> set[str]:
        CHECK.running = False
        if job.phase is not JobPhase.SUCCEEDED:
            operators.SESSION.jobs.pop(job.request_id, None)  # a late answer has nobody to go to
            reason = job.message if job.finished else f"no answer within {CHECK_TIMEOUT_S:.0f} s"
            CHECK.error = f"IKOL engine: {reason}"
            self.report({"ERROR"}, CHECK.error)
            return {"CANCELLED"}
        CHECK.result = job.result
        self.report({"INFO"}, f"IKOL engine: torch {job.result.get('torch')} on {job.result.get('device')}")
        return {"FINISHED"}


CLASSES = (IKOL_OT_setup_engine, IKOL_OT_cancel_engine_setup, IKOL_OT_check_engine)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    if bpy.app.timers.is_registered(_poll_detached_setup):
        bpy.app.timers.unregister(_poll_detached_setup)
    if _setup_running():
        SETUP.cancel()  # its worker removes the staging folder
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
