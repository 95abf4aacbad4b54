"""Foot contacts: keyed as on/off curves on import and refine, read back for a refine that keeps them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import bpy
import numpy as np
import pytest

from ikol_blender.scene import contacts, importer
from blender_curves import fcurves, keys
from ikol_engine.motion import CONTACT_NAMES, read_motion, write_motion


def random_contacts(frames: int, seed: int) -> np.ndarray:
    """(T, 4) bool: steps of 1 to 6 frames, on and off, per foot point."""
    rng = np.random.default_rng(seed)
    columns = []
    for _ in CONTACT_NAMES:
        steps = np.repeat(rng.random(frames) < 0.5, rng.integers(1, 7, frames))[:frames]
        columns.append(steps)
    return np.stack(columns, axis=1)


@pytest.fixture
def resting(clip) -> np.ndarray:
    truth = random_contacts(len(clip.motion.valid), seed=11)
    posed = truth[clip.motion.valid]
    assert posed.any(axis=0).all() and (~posed).any(axis=0).all()  # every curve has both steps to get right
    return truth


@pytest.fixture
def contact_file(clip, resting, tmp_path) -> Path:
    return write_motion(tmp_path / "feet.npz", dataclasses.replace(clip.motion, contacts=resting))


def contact_curves(armature: bpy.types.Object) -> dict[str, bpy.types.FCurve]:
    return {curve.data_path: curve for curve in fcurves(armature) if "ikol_contact_" in curve.data_path}


def test_property_names_follow_the_motion_file_columns():
    assert contacts.CONTACT_PROPERTIES == ("ikol_contact_L_Heel", "ikol_contact_R_Heel", "ikol_contact_L_Toe",
                                           "ikol_contact_R_Toe")


def test_import_keys_each_contact_as_constant_steps_on_the_valid_frames(blank, clip, resting, contact_file):
    motion = clip.motion
    armature = importer.import_motion(blank, contact_file)
    curves = contact_curves(armature)
    assert sorted(curves) == sorted(f'["{prop}"]' for prop in contacts.CONTACT_PROPERTIES)
    valid_frames = motion.frame_indices[motion.valid] + 1
    scene = blank.scene
    for column, prop in enumerate(contacts.CONTACT_PROPERTIES):
        curve = curves[f'["{prop}"]']
        co = keys(curve)
        assert len(co) == motion.valid.sum() == 35
        np.testing.assert_array_equal(co[:, 0], valid_frames)  # the bone keys' frames
        assert int((co[:, 1] != resting[motion.valid, column]).sum()) == 0
        assert {k.interpolation for k in curve.keyframe_points} == {"CONSTANT"}
        assert curve.group.name == contacts.CONTACT_GROUP
        # Steps, not ramps: half a frame after a key the curve still holds that key's value.
        halfway = np.array([curve.evaluate(frame + 0.5) for frame in valid_frames])
        assert int((halfway != resting[motion.valid, column]).sum()) == 0
        ui = armature.id_properties_ui(prop).as_dict()
        assert (ui["min"], ui["max"]) == (0.0, 1.0)
        side, point = CONTACT_NAMES[column].split("_")
        assert f"{'left' if side == 'L' else 'right'} {point.lower()} rests on the floor" in ui["description"]
    row = np.flatnonzero(motion.valid)[7]
    scene.frame_set(int(motion.frame_indices[row]) + 1)
    assert [armature[prop] for prop in contacts.CONTACT_PROPERTIES] == resting[row].astype(float).tolist()


def test_a_file_without_contacts_makes_no_contact_properties_or_curves(blank, motion_file):
    armature = importer.import_motion(blank, motion_file)
    assert contact_curves(armature) == {}
    assert not [key for key in armature.keys() if key.startswith("ikol_contact")]


def test_refined_keys_replace_the_contact_steps_and_a_file_without_them_removes_them(blank, clip, contact_file,
                                                                                     tmp_path):
    motion = clip.motion
    armature = importer.import_motion(blank, contact_file)
    before = contact_curves(armature)
    other = random_contacts(len(motion.valid), seed=12)
    importer.rekey_motion(armature, write_motion(tmp_path / "other.npz", dataclasses.replace(motion, contacts=other)))
    after = contact_curves(armature)
    assert {path: curve.as_pointer() for path, curve in after.items()} == \
        {path: curve.as_pointer() for path, curve in before.items()}  # the same curves, new keys
    for column, prop in enumerate(contacts.CONTACT_PROPERTIES):
        co = keys(after[f'["{prop}"]'])
        assert len(co) == motion.valid.sum()
        assert int((co[:, 1] != other[motion.valid, column]).sum()) == 0
        assert {k.interpolation for k in after[f'["{prop}"]'].keyframe_points} == {"CONSTANT"}
    bone_curves = len(fcurves(armature)) - 4
    importer.rekey_motion(armature, write_motion(tmp_path / "none.npz", motion))
    assert contact_curves(armature) == {} and len(fcurves(armature)) == bone_curves
    assert not [key for key in armature.keys() if key.startswith("ikol_contact")]


def test_edited_curves_read_back_as_the_contacts_of_a_copy_of_the_file(blank, clip, resting, contact_file,
                                                                       tmp_path):
    motion = read_motion(contact_file)
    armature = importer.import_motion(blank, contact_file)
    frames = importer.blender_frames(motion)
    unedited = contacts.edited_contacts(armature, motion, frames)
    assert unedited.dtype == bool and unedited.shape == (40, 4)
    assert int((unedited != resting).sum()) == 0
    # The animator lifts the left heel from frame 10 to 25 and puts the right toe down on a
    # later frame where it was free, with a key at 0.8 (above half: resting).
    row = int(np.flatnonzero(motion.valid & (frames > 26) & ~resting[:, 3])[0])
    curves = contact_curves(armature)
    for point in curves['["ikol_contact_L_Heel"]'].keyframe_points:
        if 10 <= point.co.x <= 25:
            point.co.y = 0.0
    curves['["ikol_contact_R_Toe"]'].keyframe_points.insert(frames[row], 0.8).interpolation = "CONSTANT"
    expected = resting.copy()
    lifted = motion.valid & (frames >= 10) & (frames <= 25)
    assert lifted.sum() == 14 and resting[lifted, 0].any()  # the edit changes frames that rested
    expected[lifted, 0] = False
    expected[row, 3] = True
    edited = contacts.edited_contacts(armature, motion, frames)
    assert int((edited != expected).sum()) == 0
    assert int((edited != resting).sum()) == int(resting[lifted, 0].sum()) + 1
    np.testing.assert_array_equal(edited[~motion.valid], resting[~motion.valid])  # no key: the file's

    copy = contacts.write_with_contacts(motion, edited, tmp_path / "feet_contacts.npz")
    written = read_motion(copy)
    np.testing.assert_array_equal(written.contacts, expected)
    np.testing.assert_array_equal(written.rotations, motion.rotations)
    np.testing.assert_array_equal(written.image_keypoints, motion.image_keypoints)
    np.testing.assert_array_equal(read_motion(contact_file).contacts, resting)  # the rig's file stays


def test_a_rig_without_contact_curves_cannot_give_edited_contacts(blank, clip, motion_file):
    armature = importer.import_motion(blank, motion_file)
    with pytest.raises(ValueError, match=r"no foot contact curves \(ikol_contact_L_Heel, ikol_contact_R_Heel, "
                                         r"ikol_contact_L_Toe, ikol_contact_R_Toe\)"):
        contacts.edited_contacts(armature, clip.motion, importer.blender_frames(clip.motion))


class _StubEngine:
    """An engine session that answers a refine from what it was sent: the file it was
    given, copied to the output, or a failure."""

    def __init__(self, succeed: bool) -> None:
        self.succeed = succeed
        self.sent: list[dict] = []
        self.seen_contacts: np.ndarray | None = None

    def submit(self, kind: str, **request):
        from ikol_blender.engine.jobs import EngineJob, JobPhase

        self.sent.append(request)
        given = read_motion(request["motion"])
        self.seen_contacts = given.contacts
        job = EngineJob(kind, len(self.sent), output=request["output"])
        if self.succeed:
            write_motion(request["output"], given)
            mean = float(given.residual_mm[given.valid].mean())
            job.handle({"event": "result", "previous_residual_mm": mean, "residual_mm": mean})
        else:
            job.handle({"event": "error", "message": "the stub engine refuses"})
        return job

    def pump(self) -> None:
        pass

    def pump_until(self, job, seconds: float) -> None:
        pass

    def stop(self) -> None:
        pass


@pytest.fixture
def refine_operator(blank, monkeypatch, tmp_path):
    """The add-on registered, with motion files in ``tmp_path``; yields a function
    (stub engine) -> the operator's outcome."""
    import ikol_blender
    from ikol_blender import settings
    from ikol_blender.ui import operators

    monkeypatch.setattr(settings, "motion_folder", lambda: tmp_path)
    ikol_blender.register()

    def refine(engine: _StubEngine) -> set[str]:
        monkeypatch.setattr(operators, "SESSION", engine)
        return bpy.ops.ikol.refine()
    try:
        yield refine
    finally:
        ikol_blender.unregister()


def key_values(armature: bpy.types.Object) -> dict[tuple[str, int], np.ndarray]:
    return {(curve.data_path, curve.array_index): keys(curve) for curve in fcurves(armature)}


def test_refine_with_edited_contacts_sends_a_copy_with_the_curves_contacts(refine_operator, blank, clip, resting,
                                                                           contact_file, tmp_path):
    motion = clip.motion
    armature = importer.import_motion(blank, contact_file)
    for point in contact_curves(armature)['["ikol_contact_R_Heel"]'].keyframe_points:
        point.co.y = 1.0  # the right heel rests all along
    armature.ikol_refine.keep_contacts = True
    engine = _StubEngine(succeed=True)
    assert refine_operator(engine) == {"FINISHED"}
    (request,) = engine.sent
    copy, output = Path(request["motion"]), Path(request["output"])
    assert copy == output.with_name(f"{output.stem}_contacts.npz") and copy.parent == contact_file.parent
    assert request["solve"]["keep_contacts"] is True
    expected = resting.copy()
    expected[motion.valid, 1] = True
    assert int((engine.seen_contacts != expected).sum()) == 0
    assert not copy.exists()  # only the engine needed it
    # The stub's refined file holds the contacts it was sent: the rig's steps are those now.
    assert armature[importer.MOTION_PROPERTY] == str(output.resolve())
    right_heel = keys(contact_curves(armature)['["ikol_contact_R_Heel"]'])
    assert len(right_heel) == motion.valid.sum() and (right_heel[:, 1] == 1.0).all()


def test_refine_with_edited_contacts_that_fails_changes_nothing(refine_operator, blank, contact_file, tmp_path):
    armature = importer.import_motion(blank, contact_file)
    armature.ikol_refine.keep_contacts = True
    before, files = key_values(armature), sorted(tmp_path.iterdir())
    engine = _StubEngine(succeed=False)
    with pytest.raises(RuntimeError, match="Refine failed: the stub engine refuses"):
        refine_operator(engine)
    assert len(engine.sent) == 1 and engine.seen_contacts is not None
    assert sorted(tmp_path.iterdir()) == files  # the copy is gone, no refined file
    after = key_values(armature)
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    assert armature[importer.MOTION_PROPERTY] == str(contact_file.resolve())


def test_refine_with_edited_contacts_refuses_a_rig_without_contact_curves(refine_operator, blank, motion_file,
                                                                          tmp_path):
    armature = importer.import_motion(blank, motion_file)
    armature.ikol_refine.keep_contacts = True
    files = sorted(tmp_path.iterdir())
    engine = _StubEngine(succeed=True)
    with pytest.raises(RuntimeError, match="cannot refine with the edited contacts: .* no foot contact curves"):
        refine_operator(engine)
    assert engine.sent == [] and sorted(tmp_path.iterdir()) == files


def test_refine_with_edited_contacts_that_cannot_start_leaves_no_copy(refine_operator, blank, contact_file,
                                                                      tmp_path, monkeypatch):
    from ikol_blender.engine.client import EngineGone
    from ikol_blender.ui import operators

    armature = importer.import_motion(blank, contact_file)
    armature.ikol_refine.keep_contacts = True
    files = sorted(tmp_path.iterdir())
    gone = _StubEngine(succeed=True)

    def refuse(kind: str, **request):
        assert Path(request["motion"]).is_file()  # the copy was written for it
        raise EngineGone("the stub engine is gone")
    gone.submit = refuse
    with pytest.raises(RuntimeError, match="IKOL engine: the stub engine is gone"):
        refine_operator(gone)
    assert sorted(tmp_path.iterdir()) == files
    monkeypatch.setitem(operators.RUNNING, "refine", object())  # another refine is running
    engine = _StubEngine(succeed=True)
    with pytest.raises(RuntimeError, match="an IKOL refine is already running"):
        refine_operator(engine)
    assert engine.sent == [] and sorted(tmp_path.iterdir()) == files
