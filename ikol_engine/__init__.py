"""IKOL Mocap engine: video to SMPL joint rotations, without Blender."""
__version__ = "0.1.0"
