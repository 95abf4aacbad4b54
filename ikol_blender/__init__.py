"""IKOL Mocap, the Blender extension (Blender 4.2+).

Imports only bpy, numpy and the standard library; the engine runs in its own Python
as a subprocess. The operators and panels arrive with the Blender issues; this module
registers the extension so the build can be installed and validated.
"""


def register() -> None:
    """Nothing to register yet."""


def unregister() -> None:
    """Nothing to unregister yet."""
