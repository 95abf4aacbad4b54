"""The Refine panel's settings are the engine's SolveOptions: same names, same defaults, all sent."""
from __future__ import annotations

import dataclasses

import bpy
import pytest

from ikol_engine.track.options import SolveOptions


@pytest.fixture
def refine_settings(blank):
    """The Refine settings of a fresh object, with the add-on registered."""
    import ikol_blender
    from ikol_blender.ui.operators import IKOLRefineSettings

    ikol_blender.register()
    try:
        yield IKOLRefineSettings, bpy.data.objects.new("rig", None).ikol_refine
    finally:
        ikol_blender.unregister()


def test_panel_defaults_are_the_engines_and_all_of_them_are_sent(refine_settings):
    cls, settings = refine_settings
    panel = {prop.identifier: prop for prop in cls.bl_rna.properties if prop.identifier not in ("rna_type", "name")}
    engine = {field.name: field.default for field in dataclasses.fields(SolveOptions)}
    assert set(panel) == {"iterations", "smoothing", "torso", "arms", "legs", "head", "twist_weight", "reprojection",
                          "foot_lock", "contact_speed", "contact_image_speed", "contact_height", "keep_contacts"}
    assert set(panel) <= set(engine)
    for name, prop in panel.items():
        # Blender keeps float properties as float32.
        assert prop.default == pytest.approx(engine[name], rel=1e-6), name
        assert type(prop.default) is type(engine[name]), name
    sent = settings.solve_options("cpu")
    assert set(sent) == set(panel) | {"device"} and sent["device"] == "cpu"
    solve = SolveOptions(**sent)  # the engine accepts every value the panel sends
    for name in panel:
        assert getattr(solve, name) == pytest.approx(engine[name], rel=1e-6), name


def test_camera_and_feet_ranges_and_labels(refine_settings):
    cls, _ = refine_settings
    properties = cls.bl_rna.properties
    assert (properties["reprojection"].name, properties["reprojection"].hard_max) == ("Image keypoints", 20.0)
    assert (properties["foot_lock"].name, properties["foot_lock"].hard_max) == ("Foot lock", 1000.0)
    assert properties["keep_contacts"].name == "Use edited contacts"
    for name in ("reprojection", "foot_lock", "contact_speed", "contact_image_speed", "contact_height"):
        assert properties[name].hard_min == 0.0 and properties[name].description, name
    assert "per second" in properties["contact_speed"].description
    assert "Body heights per second" in properties["contact_image_speed"].description
    assert "above the floor" in properties["contact_height"].description
