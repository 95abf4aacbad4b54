"""The add-on's preferences: the engine's Python, default device, body model, cache folder."""
from __future__ import annotations

import tempfile
from pathlib import Path

import bpy

ENGINE_PYTHON_LABEL = "Engine Python"


class IKOLPreferences(bpy.types.AddonPreferences):
    # The add-on's package: "ikol_blender" from a checkout, "bl_ext.<repo>.ikol_mocap" installed.
    bl_idname = __package__

    engine_python: bpy.props.StringProperty(
        name=ENGINE_PYTHON_LABEL, subtype="FILE_PATH",
        description="Python interpreter with the IKOL engine's requirements (torch, mediapipe) installed; "
                    "the extension runs the engine in it, never in Blender's own Python")

    device: bpy.props.EnumProperty(
        name="Default device", default="auto",
        items=[("auto", "Auto", "The GPU when the engine's torch has CUDA, else the CPU"),
               ("cpu", "CPU", "Always the CPU"), ("cuda", "GPU (CUDA)", "The first CUDA GPU")])
    body_model: bpy.props.StringProperty(
        name="SMPL model file", subtype="FILE_PATH",
        description="SMPL .pkl/.npz you obtained under SMPL's licence; empty uses the bundled licence-free body")
    cache_folder: bpy.props.StringProperty(
        name="Motion files", subtype="DIR_PATH",
        description="Where imports keep their motion files (Refine re-solves from them); empty: the "
                    "extension's user folder")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "engine_python")
        layout.prop(self, "device")
        layout.prop(self, "body_model")
        layout.prop(self, "cache_folder")


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
    try:
        return Path(bpy.utils.extension_path_user(__package__, path="motions", create=True))
    except ValueError:  # not loaded as an extension
        return Path(tempfile.gettempdir()) / "ikol-mocap" / "motions"
