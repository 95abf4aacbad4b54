"""Retarget operators and the IKOL sidebar's Retarget section.

The active IKOL rig is the source; the scene's retarget settings name the target
armature and the mapping: detected (auto), a built-in map, or a custom one edited as
pairs in the panel and saved to / loaded from a JSON file.
"""
from __future__ import annotations

import bpy
from bpy_extras.io_utils import ExportHelper, ImportHelper

from .operators import ikol_armature
from ..scene.retarget import apply, mapping

MAPPING_ITEMS = [
    ("auto", "Auto", "The built-in mapping that fits most of the target's bones"),
    ("rigify", "Rigify", "Rigify's generated rig, through its FK controls"),
    ("rigify_metarig", "Rigify Metarig", "Rigify's human metarig"),
    ("mixamo", "Mixamo", "Mixamo characters (mixamorig:Hips, ...)"),
    ("ue5", "UE5 Mannequin", "Unreal Engine 5 Mannequin (pelvis, spine_01, ...)"),
    ("smplx", "SMPL-X add-on", "The SMPL/SMPL-X Blender add-on's rig"),
    ("custom", "Custom", "The pairs below (fill them from a built-in map, edit, save or load)"),
]


def _is_armature(_settings, obj: bpy.types.Object) -> bool:
    return obj.type == "ARMATURE"


class IKOL_PG_retarget_pair(bpy.types.PropertyGroup):
    joint: bpy.props.StringProperty(name="SMPL Joint")
    bone: bpy.props.StringProperty(name="Target Bone")


class IKOL_PG_retarget(bpy.types.PropertyGroup):
    target: bpy.props.PointerProperty(name="Target", type=bpy.types.Object, poll=_is_armature,
                                      description="The armature to key with the IKOL rig's motion")
    mapping: bpy.props.EnumProperty(name="Mapping", items=MAPPING_ITEMS, default="auto")
    pairs: bpy.props.CollectionProperty(type=IKOL_PG_retarget_pair)
    active_pair: bpy.props.IntProperty()


def custom_mapping(settings: IKOL_PG_retarget) -> dict[str, str]:
    """The custom pairs as a mapping; pairs with an empty bone are left out."""
    return {pair.joint: pair.bone for pair in settings.pairs if pair.bone}


def _set_pairs(settings: IKOL_PG_retarget, chosen: dict[str, str]) -> None:
    settings.pairs.clear()
    for joint in mapping.JOINT_NAMES:
        pair = settings.pairs.add()
        pair.joint, pair.bone = joint, chosen.get(joint, "")


class IKOL_OT_retarget(bpy.types.Operator):
    """Key the target armature with the active IKOL rig's motion, in a new Action"""

    bl_idname = "ikol.retarget"
    bl_label = "Retarget"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return ikol_armature(context) is not None and context.scene.ikol_retarget.target is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.ikol_retarget
        source, target = ikol_armature(context), settings.target
        try:
            name, chosen = apply.resolve_mapping(target, settings.mapping, custom_mapping(settings))
            action = apply.retarget(source, target, chosen)
        except ValueError as error:  # MappingError and RetargetError
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        keyed = apply.keyed_pairs(source, chosen)
        self.report({"INFO"}, f"{target.name}: {len(keyed)} bones keyed ({name} mapping; "
                              f"{mapping.finger_note(chosen, keyed)}) in {action.name}")
        return {"FINISHED"}


class IKOL_OT_retarget_fill(bpy.types.Operator):
    """Fill the custom pairs from the mapping that fits the target (or from Rigify's, without a target)"""

    bl_idname = "ikol.retarget_fill"
    bl_label = "Fill From Target"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.ikol_retarget
        try:
            if settings.target is None:
                chosen = mapping.built_in("rigify")
            else:
                _, chosen = apply.resolve_mapping(settings.target, "auto")
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _set_pairs(settings, chosen)
        settings.mapping = "custom"
        return {"FINISHED"}


class IKOL_OT_retarget_save(bpy.types.Operator, ExportHelper):
    """Save the custom pairs as a mapping file (JSON)"""

    bl_idname = "ikol.retarget_save"
    bl_label = "Save Mapping"
    filename_ext = ".json"
    filter_glob: bpy.props.StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            path = mapping.save_mapping(self.filepath, custom_mapping(context.scene.ikol_retarget))
        except (ValueError, OSError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"mapping saved to {path}")
        return {"FINISHED"}


class IKOL_OT_retarget_load(bpy.types.Operator, ImportHelper):
    """Load a mapping file (JSON) into the custom pairs"""

    bl_idname = "ikol.retarget_load"
    bl_label = "Load Mapping"
    bl_options = {"REGISTER", "UNDO"}
    filename_ext = ".json"
    filter_glob: bpy.props.StringProperty(default="*.json", options={"HIDDEN"})

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.ikol_retarget
        bones = None if settings.target is None else [bone.name for bone in settings.target.data.bones]
        try:
            chosen = mapping.load_mapping(self.filepath, bones)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _set_pairs(settings, chosen)
        settings.mapping = "custom"
        return {"FINISHED"}


class IKOL_UL_retarget_pairs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.label(text=item.joint)
        if data.target is not None:
            row.prop_search(item, "bone", data.target.data, "bones", text="")
        else:
            row.prop(item, "bone", text="")


class IKOL_PT_retarget(bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "IKOL"
    bl_label = "Retarget"
    bl_idname = "IKOL_PT_retarget"
    bl_parent_id = "IKOL_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return ikol_armature(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.ikol_retarget
        layout.use_property_split = True
        layout.prop(settings, "target")
        layout.prop(settings, "mapping")
        if settings.mapping == "custom":
            layout.template_list("IKOL_UL_retarget_pairs", "", settings, "pairs", settings, "active_pair", rows=6)
            row = layout.row(align=True)
            row.operator(IKOL_OT_retarget_fill.bl_idname, icon="AUTO")
            row.operator(IKOL_OT_retarget_load.bl_idname, text="", icon="FILE_FOLDER")
            row.operator(IKOL_OT_retarget_save.bl_idname, text="", icon="FILE_TICK")
        layout.operator(IKOL_OT_retarget.bl_idname, icon="ARMATURE_DATA")


CLASSES = (IKOL_PG_retarget_pair, IKOL_PG_retarget, IKOL_OT_retarget, IKOL_OT_retarget_fill, IKOL_OT_retarget_save,
           IKOL_OT_retarget_load, IKOL_UL_retarget_pairs, IKOL_PT_retarget)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.ikol_retarget = bpy.props.PointerProperty(type=IKOL_PG_retarget)


def unregister() -> None:
    del bpy.types.Scene.ikol_retarget
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
