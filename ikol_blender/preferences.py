"""The add-on's preferences: where the engine's Python is."""
from __future__ import annotations

import bpy

ENGINE_PYTHON_LABEL = "Engine Python"


class IKOLPreferences(bpy.types.AddonPreferences):
    # The add-on's package: "ikol_blender" from a checkout, "bl_ext.<repo>.ikol_mocap" installed.
    bl_idname = __package__

    engine_python: bpy.props.StringProperty(
        name=ENGINE_PYTHON_LABEL, subtype="FILE_PATH",
        description="Python interpreter with the IKOL engine's requirements (torch, mediapipe) installed; "
                    "the extension runs the engine in it, never in Blender's own Python")

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.prop(self, "engine_python")


def engine_python() -> str:
    """The preference's value, or "" where the add-on is not enabled (bpy used as a module)."""
    addon = bpy.context.preferences.addons.get(__package__)
    if addon is None or addon.preferences is None:
        return ""
    return bpy.path.abspath(addon.preferences.engine_python)
