"""Retargeting an IKOL SMPL rig's Action onto another armature (Rigify, Mixamo, UE5, ...).

:mod:`.mapping` names which target bone follows which SMPL joint, :mod:`.transfer` does
the rotation maths (numpy), :mod:`.channels` turns rotations into a bone's own rotation
channels, :mod:`.apply` reads and writes the Blender data.
"""
