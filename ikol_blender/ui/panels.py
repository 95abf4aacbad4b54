"""The IKOL tab of the 3D Viewport's sidebar: import, the people in a video, progress, refine, engine state."""
from __future__ import annotations

import bpy

from ..scene.importer import MEAN_RESIDUAL_PROPERTY
from .operators import (RUNNING, SESSION, IKOL_OT_detect_people, IKOL_OT_import_picked, IKOL_OT_import_video,
                        IKOL_OT_refine, IKOL_OT_restart_engine, ikol_armature)
from .tasks import PREVIOUS_RESIDUAL_PROPERTY, SHEET_IMAGE


def _progress(layout: bpy.types.UILayout, kind: str) -> bool:
    """Draws the running task of ``kind``, if any; True if there was one."""
    task = RUNNING.get(kind)
    if task is None:
        return False
    layout.progress(factor=task.fraction, type="BAR", text=f"{task.status} {100 * task.fraction:.0f}%")
    layout.label(text="Esc cancels", icon="CANCEL")
    return True


class _Sidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "IKOL"


class IKOL_PT_main(_Sidebar, bpy.types.Panel):
    bl_label = "IKOL Mocap"
    bl_idname = "IKOL_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        if SESSION.engine_error:
            box = layout.box()
            box.label(text="The engine stopped", icon="ERROR")
            box.label(text=SESSION.engine_error[:120])
            box.operator(IKOL_OT_restart_engine.bl_idname, icon="FILE_REFRESH")
        if not _progress(layout, "import"):
            layout.operator(IKOL_OT_import_video.bl_idname, text="Import Video...", icon="FILE_MOVIE")


class IKOL_PT_people(_Sidebar, bpy.types.Panel):
    """Detect People, look at the numbered sheet, pick whom to follow, import."""

    bl_label = "People"
    bl_idname = "IKOL_PT_people"
    bl_parent_id = "IKOL_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        picker = context.scene.ikol_people
        layout.prop(picker, "video")
        if not _progress(layout, "people"):
            layout.operator(IKOL_OT_detect_people.bl_idname, icon="COMMUNITY")
        sheet = bpy.data.images.get(SHEET_IMAGE)
        if sheet is not None and picker.people:
            sheet.preview_ensure()
            layout.template_icon(icon_value=sheet.preview.icon_id, scale=10.0)
        layout.prop(picker, "person")
        if not _progress(layout, "import"):
            layout.operator(IKOL_OT_import_picked.bl_idname, icon="FILE_MOVIE")


class IKOL_PT_refine(_Sidebar, bpy.types.Panel):
    bl_label = "Refine IK"
    bl_idname = "IKOL_PT_refine"
    bl_parent_id = "IKOL_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return ikol_armature(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        armature = ikol_armature(context)
        settings = armature.ikol_refine
        layout.use_property_split = True
        layout.prop(settings, "iterations")
        layout.prop(settings, "smoothing")
        column = layout.column(heading="Keypoint weights", align=True)
        for name in ("torso", "arms", "legs", "head"):
            column.prop(settings, name)
        layout.prop(settings, "twist_weight")
        layout.label(text="Camera and feet")
        layout.prop(settings, "reprojection")
        layout.prop(settings, "foot_lock")
        column = layout.column(align=True)
        column.active = not settings.keep_contacts  # the thresholds only detect contacts, which edited ones replace
        for name in ("contact_speed", "contact_image_speed", "contact_height"):
            column.prop(settings, name)
        layout.prop(settings, "keep_contacts")
        if not _progress(layout, "refine"):
            layout.operator(IKOL_OT_refine.bl_idname, icon="MOD_ARMATURE")
        if MEAN_RESIDUAL_PROPERTY in armature:
            after = armature[MEAN_RESIDUAL_PROPERTY]
            before = armature.get(PREVIOUS_RESIDUAL_PROPERTY)
            text = (f"Mean residual: {before:.1f} -> {after:.1f} mm" if before is not None
                    else f"Mean residual: {after:.1f} mm")
            layout.label(text=text, icon="INFO")


CLASSES = (IKOL_PT_main, IKOL_PT_people, IKOL_PT_refine)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
