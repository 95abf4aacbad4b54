"""Import and refine through a real engine server, driven the way the modal operators drive them.

The modal operators only tick these tasks from a timer; here a loop ticks them, so the
whole path (request, events, cancel, engine death, the scene change at the end) runs
without a window.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ikol_engine import samples
from ikol_engine.motion import read_motion

TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def session():
    from ikol_blender.engine.client import EngineClient
    from ikol_blender.engine.jobs import EngineSession

    engine = EngineSession(lambda: EngineClient([sys.executable, "-m", "ikol_engine.server"]))
    yield engine
    engine.stop()


def run(task, context, on_tick=None):
    """Ticks a started task to its outcome, as the modal operator's timer does."""
    deadline = time.monotonic() + TIMEOUT_S
    while (outcome := task.tick(context)) is None:
        assert time.monotonic() < deadline, "the engine took too long"
        if on_tick is not None:
            on_tick(task)
        task.session.pump_until(task.job, 0.05)
    return outcome


def scene_state():
    import bpy

    return {kind: sorted(x.name for x in getattr(bpy.data, kind))
            for kind in ("objects", "actions", "armatures", "meshes", "cameras", "movieclips")}


def curve_values(armature) -> dict[tuple[str, int], np.ndarray]:
    from blender_curves import fcurves, keys

    return {(curve.data_path, curve.array_index): keys(curve) for curve in fcurves(armature)}


@pytest.fixture(scope="module")
def imported(session, tmp_path_factory):
    """One second of the sample imported through the engine server; (armature name, motion path, outcome)."""
    import bpy

    from ikol_blender.ui.tasks import ImportVideoTask

    bpy.ops.wm.read_factory_settings(use_empty=True)
    output = tmp_path_factory.mktemp("motions") / "demo.npz"
    task = ImportVideoTask(session, video=samples.demo_video(), output=output, options={"end_s": 1.0})
    task.start()
    outcome = run(task, bpy.context)
    return bpy.context.active_object.name, output, outcome


def test_import_makes_a_keyed_rig_from_the_video(imported):
    import bpy

    name, output, outcome = imported
    assert outcome.status == "FINISHED", outcome.message
    motion = read_motion(output)
    assert len(motion.valid) == 30 and motion.valid.sum() >= 27  # 1 s at 30 fps, a person in >= 90%
    armature = bpy.data.objects[name]
    curves = curve_values(armature)
    rotation = curves[('pose.bones["Pelvis"].rotation_quaternion', 0)]
    assert len(rotation) == motion.valid.sum()
    assert f"{np.mean(motion.residual_mm[motion.valid]):.1f} mm" in outcome.message


def test_refine_rewrites_the_same_action_and_reports_residuals(session, imported):
    import bpy

    from ikol_blender.scene.importer import MEAN_RESIDUAL_PROPERTY, MOTION_PROPERTY
    from ikol_blender.ui.tasks import PREVIOUS_RESIDUAL_PROPERTY, RefineTask

    name, output, _ = imported
    armature = bpy.data.objects[name]
    action, before = armature.animation_data.action, curve_values(armature)
    source = Path(armature[MOTION_PROPERTY])
    task = RefineTask(session, armature_name=name, output=source.with_name("refined.npz"),
                      solve={"smoothing": 0.0, "iterations": 2, "arms": 0.2})
    task.start()
    outcome = run(task, bpy.context)
    assert outcome.status == "FINISHED", outcome.message
    after = curve_values(armature)
    assert armature.animation_data.action == action and after.keys() == before.keys()
    changed = max(np.abs(after[key][:, 1] - before[key][:, 1]).max() for key in before)
    assert changed > 0.01  # quaternion components: the pose really changed
    assert all(np.array_equal(after[key][:, 0], before[key][:, 0]) for key in before)  # same frames
    refined = read_motion(task.output)
    assert armature[MOTION_PROPERTY] == str(task.output.resolve()) and source.is_file()
    result = task.job.result
    assert armature[MEAN_RESIDUAL_PROPERTY] == pytest.approx(np.mean(refined.residual_mm[refined.valid]), abs=1e-3)
    assert armature[MEAN_RESIDUAL_PROPERTY] == pytest.approx(result["residual_mm"], abs=1e-3)
    assert armature[PREVIOUS_RESIDUAL_PROPERTY] == pytest.approx(result["previous_residual_mm"], abs=1e-3)
    assert f"{result['previous_residual_mm']:.1f} -> {result['residual_mm']:.1f} mm" in outcome.message
    from ikol_blender.scene.camera import video_camera
    from ikol_blender.scene.importer import CAMERA_PROPERTY

    camera = np.array(bpy.data.objects[armature[CAMERA_PROPERTY]].matrix_world)
    assert np.abs(camera - video_camera(refined).matrix_world).max() < 1e-5  # follows the new floor fit
    assert refined.options["solve"]["fov_deg"] == read_motion(source).options["solve"]["fov_deg"]


def test_contacts_edited_on_the_rig_are_the_ones_a_refine_holds(session, imported):
    import bpy

    from ikol_blender.scene.contacts import CONTACT_PROPERTIES, contact_data_path, edited_contacts, write_with_contacts
    from ikol_blender.scene.importer import MOTION_PROPERTY, blender_frames
    from ikol_blender.ui.tasks import RefineTask
    from blender_curves import fcurves

    name, _, _ = imported
    armature = bpy.data.objects[name]
    source = Path(armature[MOTION_PROPERTY])
    motion = read_motion(source)
    assert motion.contacts is not None and len(CONTACT_PROPERTIES) == motion.contacts.shape[1]
    # The animator marks the left heel resting on its first ten posed frames, free after.
    curve = next(c for c in fcurves(armature) if c.data_path == contact_data_path(CONTACT_PROPERTIES[0]))
    for index, key in enumerate(curve.keyframe_points):
        key.co[1] = 1.0 if index < 10 else 0.0
    curve.update()
    wanted = edited_contacts(armature, motion, blender_frames(motion))
    posed = np.flatnonzero(motion.valid)
    assert wanted[posed[:10], 0].all() and not wanted[posed[10:], 0].any()
    output = source.with_name("edited_refined.npz")
    copy = write_with_contacts(motion, wanted, output.with_name("edited_contacts.npz"))
    task = RefineTask(session, armature_name=name, output=output, solve={"keep_contacts": True}, source=copy)
    task.start()
    outcome = run(task, bpy.context)
    assert outcome.status == "FINISHED", outcome.message
    refined = read_motion(output)
    assert np.array_equal(refined.contacts, wanted) and not copy.exists()
    keys = np.array([key.co[1] for key in curve.keyframe_points])
    assert keys[:10].tolist() == [1.0] * 10 and not keys[10:].any()  # the rig shows what was held


def test_cancel_mid_analysis_leaves_the_scene_and_disk_unchanged(session, tmp_path):
    import bpy

    from ikol_blender.engine.jobs import JobPhase
    from ikol_blender.ui.tasks import ImportVideoTask

    before = scene_state()
    output = tmp_path / "cancelled.npz"
    task = ImportVideoTask(session, video=samples.demo_video(), output=output)
    task.start()

    def cancel_once_running(task):
        if task.job.phase is JobPhase.RUNNING and task.fraction > 0.05:
            task.cancel()

    outcome = run(task, bpy.context, cancel_once_running)
    assert outcome.status == "CANCELLED" and outcome.level == "INFO", outcome.message
    assert 0.05 < task.fraction < 0.9  # stopped during the keypoint pass
    assert scene_state() == before
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_bad_video_is_reported_and_changes_nothing(session, tmp_path):
    import bpy

    from ikol_blender.ui.tasks import ImportVideoTask

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    before = scene_state()
    task = ImportVideoTask(session, video=broken, output=tmp_path / "out.npz")
    task.start()
    outcome = run(task, bpy.context)
    assert outcome.status == "CANCELLED" and outcome.level == "ERROR"
    assert "broken.mp4" in outcome.message
    assert scene_state() == before and not (tmp_path / "out.npz").exists()


def test_a_killed_engine_is_reported_and_a_restart_serves_again(session, imported, tmp_path):
    import bpy

    from ikol_blender.ui.tasks import ImportVideoTask, RefineTask

    before = scene_state()
    task = ImportVideoTask(session, video=samples.demo_video(), output=tmp_path / "killed.npz")
    task.start()
    session.client._process.kill()  # as if the engine crashed
    outcome = run(task, bpy.context)
    assert outcome.status == "CANCELLED" and outcome.level == "ERROR"
    assert "the engine stopped (exit code -9)" in outcome.message
    assert session.engine_error.startswith("the engine stopped")
    assert scene_state() == before and not (tmp_path / "killed.npz").exists()

    session.restart()
    assert session.engine_error == ""
    name = imported[0]
    task = RefineTask(session, armature_name=name, output=tmp_path / "after_restart.npz")
    task.start()
    assert run(task, bpy.context).status == "FINISHED"


def _kill_mid_write(session, job, folder: Path) -> bool:
    """Freezes the engine while ``job``'s temporary file exists, then SIGKILLs it; False if
    the write finished before the engine stopped (the job then ran to its end)."""
    process = session.client._process
    deadline = time.monotonic() + TIMEOUT_S
    while not any(".partial-" in name for name in os.listdir(folder)):
        session.pump()
        if job.finished or time.monotonic() > deadline:
            return False
    os.kill(process.pid, signal.SIGSTOP)
    if any(".partial-" in name for name in os.listdir(folder)):
        process.kill()
        return True
    os.kill(process.pid, signal.SIGCONT)
    session.pump_until(job, TIMEOUT_S)
    return False


def test_an_engine_killed_mid_write_leaves_the_file_whole_and_restarts(session, imported, tmp_path):
    from ikol_blender.engine.jobs import JobPhase

    motion = tmp_path / "motion.npz"
    motion.write_bytes(imported[1].read_bytes())
    before = motion.read_bytes()
    for _ in range(10):  # the write takes milliseconds; retry until the kill lands inside it
        # In place: the file being replaced is the only copy of the motion.
        job = session.submit("refine", motion=str(motion), solve={"iterations": 1, "device": "cpu"})
        if _kill_mid_write(session, job, tmp_path):
            break
        assert job.phase is JobPhase.SUCCEEDED, job.message
        before = motion.read_bytes()
    else:
        pytest.fail("no kill landed while the engine was writing")
    assert any(".partial-" in name for name in os.listdir(tmp_path))  # the engine could not clean up
    session.pump_until(job, 30)
    assert job.phase is JobPhase.FAILED and "the engine stopped (exit code -9)" in job.message
    assert session.engine_error.startswith("the engine stopped")
    assert os.listdir(tmp_path) == ["motion.npz"] and motion.read_bytes() == before

    again = session.submit("refine", motion=str(motion), solve={"iterations": 1, "device": "cpu"})
    session.pump_until(again, TIMEOUT_S)
    assert again.phase is JobPhase.SUCCEEDED and session.engine_error == ""
    assert read_motion(motion).options["solve"]["iterations"] == 1


def test_a_request_after_an_unnoticed_death_fails_the_orphans_and_runs(session, imported, tmp_path):
    import bpy

    from ikol_blender.engine.jobs import JobPhase
    from ikol_blender.ui.tasks import ImportVideoTask, RefineTask

    orphan = ImportVideoTask(session, video=samples.demo_video(), output=tmp_path / "orphan.npz")
    orphan.start()
    process = session.client._process
    process.kill()
    process.wait()
    # No pump in between: the next request finds the engine dead before its exit was read.
    task = RefineTask(session, armature_name=imported[0], output=tmp_path / "next.npz")
    task.start()
    assert orphan.job.phase is JobPhase.FAILED and "exit code -9" in orphan.job.message
    assert run(task, bpy.context).status == "FINISHED" and session.engine_error == ""


def test_operators_run_in_place_in_background_mode(session, tmp_path, monkeypatch):
    import bpy

    import ikol_blender
    from ikol_blender import settings
    from ikol_blender.ui import operators

    monkeypatch.setenv("IKOL_ENGINE_PYTHON", sys.executable)
    monkeypatch.setattr(settings, "motion_folder", lambda: tmp_path)
    ikol_blender.register()
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        assert bpy.app.background
        result = bpy.ops.ikol.import_video(filepath=str(samples.demo_video()), end=0.5, iterations=2)
        assert result == {"FINISHED"}
        armature = bpy.context.active_object
        assert armature.type == "ARMATURE" and operators.ikol_armature(bpy.context) == armature
        armature.ikol_refine.smoothing = 0.0
        assert bpy.ops.ikol.refine() == {"FINISHED"}
        assert len(list(tmp_path.glob("*.npz"))) == 2  # the import's file and the refined one
        assert operators.RUNNING == {}
    finally:
        ikol_blender.unregister()


def test_detect_people_then_import_the_one_picked_or_everyone(session, tmp_path, monkeypatch):
    """The People panel's path, headless: Detect People on a two-person clip, pick one, then all."""
    import bpy

    import ikol_blender
    from ikol_blender import settings
    from ikol_blender.scene.importer import CAMERA_PROPERTY, MOTION_PROPERTY
    from ikol_blender.ui.tasks import SHEET_IMAGE
    from two_person_clips import side_by_side

    clip = side_by_side(tmp_path)
    monkeypatch.setenv("IKOL_ENGINE_PYTHON", sys.executable)
    monkeypatch.setattr(settings, "motion_folder", lambda: tmp_path / "motions")
    ikol_blender.register()
    try:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        picker = bpy.context.scene.ikol_people
        picker.video = str(clip.path)
        assert bpy.ops.ikol.detect_people() == {"FINISHED"}
        assert [person.id for person in picker.people] == [1, 2] and picker.person == "auto"
        assert all(person.frames >= 10 and person.label for person in picker.people)
        sheet = bpy.data.images[SHEET_IMAGE]
        assert tuple(sheet.size) == (3 * 640, 2 * round(994 * 640 / clip.width))
        assert Path(sheet.filepath) == tmp_path / "motions" / "side_by_side_people.png"

        picker.person = "2"
        assert bpy.ops.ikol.import_picked() == {"FINISHED"}
        second = bpy.context.active_object
        assert read_motion(second[MOTION_PROPERTY]).options["person"]["id"] == 2
        cameras = len(bpy.data.cameras)

        picker.person = "all"
        assert bpy.ops.ikol.import_picked() == {"FINISHED"}
        everyone = [o for o in bpy.data.objects if o.type == "ARMATURE" and o != second]
        assert len(everyone) == 2 and len(bpy.data.cameras) == cameras + 1  # one camera for both
        assert {o[CAMERA_PROPERTY] for o in everyone} == {everyone[0][CAMERA_PROPERTY]}
        ids = sorted(read_motion(o[MOTION_PROPERTY]).options["person"]["id"] for o in everyone)
        assert ids == [1, 2]
        # Another video chosen after detecting: its ids are not these people's.
        picker.person = "2"
        picker.video = str(clip.halves[0])
        objects = len(bpy.data.objects)
        with pytest.raises(RuntimeError, match="Detect People again"):
            bpy.ops.ikol.import_picked()
        assert len(bpy.data.objects) == objects
    finally:
        ikol_blender.unregister()


def test_modal_operator_shows_progress_cancels_on_esc_and_cleans_up(session, tmp_path):
    """The modal handler itself, fed timer and Esc events as Blender's event loop would."""
    from types import SimpleNamespace

    from ikol_blender.ui import operators
    from ikol_blender.ui.tasks import ImportVideoTask

    calls, reports = [], []
    manager = SimpleNamespace(windows=[], progress_update=lambda value: calls.append(("progress", value)),
                              event_timer_remove=lambda timer: calls.append(("timer removed", timer)),
                              progress_end=lambda: calls.append(("progress end",)))
    context = SimpleNamespace(window_manager=manager,
                              workspace=SimpleNamespace(status_text_set=lambda text: calls.append(("status", text))))
    task = ImportVideoTask(session, video=samples.demo_video(), output=tmp_path / "modal.npz")
    task.start()
    operator = SimpleNamespace(task=task, timer="the timer", kind="import",
                               report=lambda level, message: reports.append((level, message)))
    operator.conclude = lambda outcome: operators._EngineTaskOperator.conclude(operator, outcome)
    operators.RUNNING["import"] = task
    modal = operators._EngineTaskOperator.modal
    timer, esc = SimpleNamespace(type="TIMER", value="NOTHING"), SimpleNamespace(type="ESC", value="PRESS")
    assert modal(operator, context, SimpleNamespace(type="MOUSEMOVE", value="NOTHING")) == {"PASS_THROUGH"}
    deadline = time.monotonic() + TIMEOUT_S
    while task.fraction < 0.05:
        assert modal(operator, context, timer) == {"RUNNING_MODAL"} and time.monotonic() < deadline
        time.sleep(0.05)
    assert modal(operator, context, esc) == {"RUNNING_MODAL"}  # Esc asks; the engine's answer ends it
    while (result := modal(operator, context, timer)) == {"RUNNING_MODAL"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert result == {"CANCELLED"} and reports == [({"INFO"}, "Import cancelled; nothing was changed")]
    progress = [value for kind, *value in calls if kind == "progress" for value in value]
    assert progress == sorted(progress) and 5 <= progress[-1] < 90
    assert any(kind == "status" and text and "Esc to cancel" in text for kind, *rest in calls for text in rest[:1])
    assert calls[-3:] == [("timer removed", "the timer"), ("progress end",), ("status", None)]
    assert operators.RUNNING == {} and not (tmp_path / "modal.npz").exists()


def test_blender_ending_the_modal_cancels_the_job_and_frees_the_next(session, tmp_path):
    """Loading a file or closing the window ends a modal operator with cancel()."""
    from types import SimpleNamespace

    from ikol_blender.ui import operators
    from ikol_blender.ui.tasks import ImportVideoTask

    calls = []
    manager = SimpleNamespace(event_timer_remove=lambda timer: calls.append("timer removed"),
                              progress_end=lambda: calls.append("progress end"))
    context = SimpleNamespace(window_manager=manager,
                              workspace=SimpleNamespace(status_text_set=lambda text: calls.append(("status", text))))
    task = ImportVideoTask(session, video=samples.demo_video(), output=tmp_path / "ended.npz")
    task.start()
    operators.RUNNING["import"] = task
    operator = SimpleNamespace(task=task, timer="the timer", kind="import")
    operators._EngineTaskOperator.cancel(operator, context)
    assert operators.RUNNING == {} and calls == ["timer removed", "progress end", ("status", None)]
    session.pump_until(task.job, TIMEOUT_S)
    assert task.job.finished and task.job.cancel_requested and not (tmp_path / "ended.npz").exists()
