"""The add-on's preferences: the engine's Python (set up and checked here), device, body model, cache folder.

*Set Up Engine* makes the engine Python (:mod:`.engine_setup`) in the extension's user
folder; *Check Engine* starts the engine and shows what it runs with. Both are modal with
a timer where there is a window (a setup whose operator Blender ends, as when a file loads,
is polled on by an app timer), and synchronous in background mode.
"""
from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

# Module imports, not names: operators and engine_process import this module in turn.
from . import engine_process, engine_setup, operators
from .devices import DEVICE_ITEMS
from .engine_client import EngineGone
from .engine_jobs import EngineJob, JobPhase
from .engine_setup import EngineSetup, Phase

ENGINE_PYTHON_LABEL = "Engine Python"
ONLINE_ACCESS_MESSAGE = "Allow Online Access in Preferences > System > Network"
CHECK_TIMEOUT_S = 120.0
_LOG_LINES = 12
_TICK_S = 0.1
_PHASE_ICONS = {Phase.SUCCEEDED: "CHECKMARK", Phase.FAILED: "ERROR", Phase.CANCELLED: "CANCEL"}


class IKOLPreferences(bpy.types.AddonPreferences):
    # The add-on's package: "ikol_blender" from a checkout, "bl_ext.<repo>.ikol_mocap" installed.
    bl_idname = __package__

    engine_python: bpy.props.StringProperty(
        name=ENGINE_PYTHON_LABEL, subtype="FILE_PATH",
        description="Python interpreter with the IKOL engine's requirements (torch, mediapipe) installed; "
                    "the extension runs the engine in it, never in Blender's own Python")
    torch_build: bpy.props.EnumProperty(
        name="Torch build", default="default",
        description="Which build of torch Set Up Engine installs",
        items=[("default", "PyPI", "PyPI's torch: with CUDA on Linux (a large download), CPU-only on Windows "
                                   "and macOS"),
               ("cpu", "CPU only", "PyTorch's CPU build: the smallest download; the engine runs on the CPU"),
               ("cu128", "CUDA 12.8", "PyTorch's CUDA 12.8 build, for NVIDIA GPUs on Windows and Linux")])

    device: bpy.props.EnumProperty(
        name="Default device", default="auto",
        items=DEVICE_ITEMS)
    body_model: bpy.props.StringProperty(
        name="SMPL model file", subtype="FILE_PATH",
        description="SMPL .pkl/.npz you obtained under SMPL's licence; empty uses the bundled licence-free body")
    cache_folder: bpy.props.StringProperty(
        name="Motion files", subtype="DIR_PATH",
        description="Where imports keep their motion files (Refine re-solves from them); empty: the "
                    "extension's user folder")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        engine = layout.box()
        engine.prop(self, "engine_python")
        engine.prop(self, "torch_build")
        row = engine.row(align=True)
        row.operator(IKOL_OT_setup_engine.bl_idname, icon="IMPORT")
        row.operator(IKOL_OT_check_engine.bl_idname, icon="VIEWZOOM")
        if not online_access():
            engine.label(text=f"{ONLINE_ACCESS_MESSAGE} to set up the engine", icon="INFO")
        _draw_setup(engine)
        _draw_check(engine)
        layout.prop(self, "device")
        layout.prop(self, "body_model")
        layout.prop(self, "cache_folder")


def _draw_setup(layout: bpy.types.UILayout) -> None:
    if SETUP is None:
        return
    box = layout.box()
    if SETUP.finished:
        box.label(text=SETUP.message, icon=_PHASE_ICONS[SETUP.phase])
        if SETUP.phase is Phase.SUCCEEDED:
            return
        box.label(text=f"Full log: {SETUP.log_file}")
    else:
        row = box.row()
        step = SETUP.step.value if SETUP.step else "Starting"
        row.progress(factor=SETUP.fraction, type="BAR", text=f"{step} {100 * SETUP.fraction:.0f}%")
        row.operator(IKOL_OT_cancel_engine_setup.bl_idname, icon="CANCEL")
    log = box.column(align=True)
    log.scale_y = 0.7
    for line in list(SETUP.log)[-_LOG_LINES:]:
        log.label(text=line)


def _draw_check(layout: bpy.types.UILayout) -> None:
    lines = CHECK.lines()
    if not lines:
        return
    box = layout.box()
    icon = "ERROR" if CHECK.error else "INFO"
    for line in lines:
        box.label(text=line, icon=icon)
        icon = "BLANK1"


def _preferences() -> IKOLPreferences | None:
    addon = bpy.context.preferences.addons.get(__package__)
    return None if addon is None else addon.preferences


def engine_python() -> str:
    """The preference's value, or "" where the add-on is not enabled (bpy used as a module)."""
    preferences = _preferences()
    return bpy.path.abspath(preferences.engine_python) if preferences else ""


def default_device() -> str:
    preferences = _preferences()
    return preferences.device if preferences else "auto"


def body_model() -> str | None:
    """The SMPL file to use, or None for the engine's bundled body."""
    preferences = _preferences()
    return bpy.path.abspath(preferences.body_model) if preferences and preferences.body_model else None


def motion_folder() -> Path:
    """Where new motion files go: the preference, else the extension's user folder.

    Installed, that is Blender's per-extension user folder (kept across updates, never the
    extension's own folder); loaded from a checkout, a folder in the system's temp.
    """
    preferences = _preferences()
    if preferences and preferences.cache_folder:
        return Path(bpy.path.abspath(preferences.cache_folder))
    return _user_folder("motions")


def engine_folder() -> Path:
    """Where Set Up Engine puts the engine's venv (and its log)."""
    return _user_folder("engine")


def _user_folder(name: str) -> Path:
    try:
        return Path(bpy.utils.extension_path_user(__package__, path=name, create=True))
    except ValueError:  # not loaded as an extension
        return Path(tempfile.gettempdir()) / "ikol-mocap" / name


def online_access() -> bool:
    """Whether the user allows add-ons to go online (read-only in Blender; tests replace this)."""
    return bpy.app.online_access


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
        if not online_access():
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
        preferences = _preferences()
        torch_build = preferences.torch_build if preferences else "default"
        # The running engine may live in the venv about to be replaced (Windows keeps such files locked).
        operators.SESSION.restart()
        # Blender's own Python is only the new venv's base; nothing is installed into it.
        SETUP = EngineSetup(Path(sys.executable), engine_folder() / "venv", packages,
                            engine_setup.torch_index_arguments(torch_build))
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
    preferences = _preferences()
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
            self.job = operators.SESSION.submit("info", device=default_device())
        except (EngineGone, engine_process.EngineUnavailable) as error:
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


CLASSES = (IKOLPreferences, IKOL_OT_setup_engine, IKOL_OT_cancel_engine_setup, IKOL_OT_check_engine)


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
