"""The add-on's preferences: the engine's Python, torch build, device, body model, cache folder.

The rest of the add-on reads the values through :mod:`ikol_blender.settings`. The Set Up
and Check Engine buttons run :mod:`.engine_operators`; what they leave is drawn here.
"""
from __future__ import annotations

import bpy

from .. import settings
from ..engine.devices import DEVICE_ITEMS
from ..engine.process import ENGINE_PYTHON_LABEL
from ..engine.setup import Phase
from . import engine_operators
from .engine_operators import (ONLINE_ACCESS_MESSAGE, IKOL_OT_cancel_engine_setup, IKOL_OT_check_engine,
                               IKOL_OT_setup_engine)

_LOG_LINES = 12
_PHASE_ICONS = {Phase.SUCCEEDED: "CHECKMARK", Phase.FAILED: "ERROR", Phase.CANCELLED: "CANCEL"}


class IKOLPreferences(bpy.types.AddonPreferences):
    bl_idname = settings.ADDON_PACKAGE

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
        if not settings.online_access():
            engine.label(text=f"{ONLINE_ACCESS_MESSAGE} to set up the engine", icon="INFO")
        _draw_setup(engine)
        _draw_check(engine)
        layout.prop(self, "device")
        layout.prop(self, "body_model")
        layout.prop(self, "cache_folder")


def _draw_setup(layout: bpy.types.UILayout) -> None:
    setup = engine_operators.SETUP  # read when drawn: each Set Up Engine replaces it
    if setup is None:
        return
    box = layout.box()
    if setup.finished:
        box.label(text=setup.message, icon=_PHASE_ICONS[setup.phase])
        if setup.phase is Phase.SUCCEEDED:
            return
        box.label(text=f"Full log: {setup.log_file}")
    else:
        row = box.row()
        step = setup.step.value if setup.step else "Starting"
        row.progress(factor=setup.fraction, type="BAR", text=f"{step} {100 * setup.fraction:.0f}%")
        row.operator(IKOL_OT_cancel_engine_setup.bl_idname, icon="CANCEL")
    log = box.column(align=True)
    log.scale_y = 0.7
    for line in list(setup.log)[-_LOG_LINES:]:
        log.label(text=line)


def _draw_check(layout: bpy.types.UILayout) -> None:
    check = engine_operators.CHECK
    lines = check.lines()
    if not lines:
        return
    box = layout.box()
    icon = "ERROR" if check.error else "INFO"
    for line in lines:
        box.label(text=line, icon=icon)
        icon = "BLANK1"


def register() -> None:
    bpy.utils.register_class(IKOLPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(IKOLPreferences)
