"""What a motion file becomes in a Blender scene: rig, keys, camera, preview renders.

Imports :mod:`..engine` (the motion file through :mod:`..engine.link`), never :mod:`..ui`.
:mod:`.bone_space` and :mod:`.camera` are numpy only, usable without bpy.
"""
