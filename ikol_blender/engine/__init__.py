"""Running the engine from Blender: its Python found and set up, its processes and requests.

No bpy and nothing of :mod:`..scene` or :mod:`..ui`: settings such as the engine Python
or the device come in as arguments. :mod:`.link` is the one place engine code is imported.
"""
