"""The compute devices the engine takes, as Blender enum items: plain tuples, no bpy, so the
preferences and the operators can both use them when their classes are defined."""

DEVICE_ITEMS = [("auto", "Auto", "The GPU when the engine's torch has CUDA, else the CPU"),
                ("cpu", "CPU", "Always the CPU"), ("cuda", "GPU (CUDA)", "The first CUDA GPU")]
