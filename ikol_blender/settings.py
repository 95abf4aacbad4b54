"""The add-on's preference values as the operators and the batch read them.

Only bpy: the preferences' panel (:mod:`.ui.preferences`) and the operators that change
them sit above this module, and the batch, which runs without any UI, reads the same
values. Where the add-on is not enabled (bpy used as a module) every value is its default.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import bpy

#: The add-on's package: "ikol_blender" from a checkout, "bl_ext.<repo>.ikol_mocap" installed.
ADDON_PACKAGE = __package__


def addon_preferences() -> bpy.types.AddonPreferences | None:
    """The enabled add-on's preferences, or None where it is not enabled."""
    addon = bpy.context.preferences.addons.get(ADDON_PACKAGE)
    return None if addon is None else addon.preferences


def engine_python() -> str:
    """The preference's value, or "" where the add-on is not enabled (bpy used as a module)."""
    preferences = addon_preferences()
    return bpy.path.abspath(preferences.engine_python) if preferences else ""


def torch_build() -> str:
    preferences = addon_preferences()
    return preferences.torch_build if preferences else "default"


def default_device() -> str:
    preferences = addon_preferences()
    return preferences.device if preferences else "auto"


def body_model() -> str | None:
    """The SMPL file to use, or None for the engine's bundled body."""
    preferences = addon_preferences()
    return bpy.path.abspath(preferences.body_model) if preferences and preferences.body_model else None


def motion_folder() -> Path:
    """Where new motion files go: the preference, else the extension's user folder.

    Installed, that is Blender's per-extension user folder (kept across updates, never the
    extension's own folder); loaded from a checkout, a folder in the system's temp.
    """
    preferences = addon_preferences()
    if preferences and preferences.cache_folder:
        return Path(bpy.path.abspath(preferences.cache_folder))
    return _user_folder("motions")


def engine_folder() -> Path:
    """Where Set Up Engine puts the engine's venv (and its log)."""
    return _user_folder("engine")


def _user_folder(name: str) -> Path:
    try:
        return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path=name, create=True))
    except ValueError:  # not loaded as an extension
        return Path(tempfile.gettempdir()) / "ikol-mocap" / name


def online_access() -> bool:
    """Whether the user allows add-ons to go online (read-only in Blender; tests replace this)."""
    return bpy.app.online_access
