"""Everything between the regressor and the motion file: clean-up (swaps, gaps,
filtering), the IK passes, and the scene placement (camera, floor).

Nothing is imported here: the Blender extension reads :mod:`.filtering` and
:mod:`.ground` (numpy only) and must not pull in torch through this package.
"""
