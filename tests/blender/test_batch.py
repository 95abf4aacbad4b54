"""Headless conversion on the real sample video: the batch, its exports, exit codes, the CLI command.

The full batch (every export) runs once, in its own process as users run it
(``python -m ikol_blender.batch``): bpy 4.2 as a module crashes at exit once the glTF
exporter has been imported, which would take the test session down with it.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
import pytest
import torch

import ikol_blender
from ikol_blender import batch
from ikol_blender.engine import process as engine_process
from ikol_blender.scene import importer
from blender_curves import fcurves, keys
from ikol_engine import samples, skeleton
from ikol_engine.motion import Motion, read_motion

END_S = 1.0


@dataclass(frozen=True)
class BatchRun:
    result: subprocess.CompletedProcess
    output: Path
    motion: Motion
    stale_blend: bytes


@pytest.fixture(scope="module")
def video() -> Path:
    return samples.demo_video()


@pytest.fixture(scope="module")
def batch_run(video, tmp_path_factory) -> BatchRun:
    """The sample's first second and a corrupt video, with every export, in one batch process."""
    folder = tmp_path_factory.mktemp("batch")
    broken = folder / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).bytes(4096))
    output = folder / "out"
    output.mkdir()
    # An earlier good result of the broken video must survive its failed conversion.
    stale = b"an earlier, good broken.blend"
    (output / "broken.blend").write_bytes(stale)
    result = subprocess.run([sys.executable, "-m", "ikol_blender.batch", str(video), str(broken), "-o", str(output),
                             "--fbx", "--bvh", "--glb", "--preview", "--end", str(END_S),
                             "--engine-python", sys.executable],
                            capture_output=True, text=True, timeout=600)
    return BatchRun(result, output, read_motion(output / "demo.npz"), stale)


def valid_blender_frames(motion: Motion) -> np.ndarray:
    return importer.blender_frames(motion)[motion.valid]


def bone_names(motion: Motion) -> list[str]:
    """The rig's bones: SMPL's 24, and SMPL-H's 30 finger bones where the file has fingers."""
    return list(skeleton.JOINT_NAMES) + (list(motion.hand_joint_names) if motion.has_fingers else [])


def only(objects, kind: str) -> bpy.types.Object:
    (found,) = [obj for obj in objects if obj.type == kind]
    return found


# ---- the batch process ----------------------------------------------------------------

def test_preview_puts_the_body_over_the_person(batch_run, blank):
    """Rows of [video frame | rig over it]: the rig's pixels sit where BlazePose saw the person."""
    from ikol_blender.scene import preview

    motion = batch_run.motion
    picture = preview.read_png(batch_run.output / "demo_preview.png")
    positions = preview.preview_frames(motion)
    rows = len(positions)
    height, width = picture.shape[0] // rows, picture.shape[1] // 2
    assert rows == 4 and abs(width - preview.CELL_WIDTH) <= 20 and picture.shape[0] == rows * height
    scale = width / motion.options["image_size"][0]
    for row, position in enumerate(positions):
        cell = picture[row * height:(row + 1) * height]
        changed = np.abs(cell[:, width:2 * width, :3] - cell[:, :width, :3]).max(-1) > 0.1  # where the body is
        assert 0.002 < changed.mean() < 0.2
        seen = motion.regressor_confidence[position] > 0.8
        pixels = motion.image_keypoints[position][seen] * scale
        inside = [changed[min(int(y), height - 1), min(int(x), width - 1)] for x, y in pixels]
        assert np.mean(inside) > 0.6, np.mean(inside)  # most confident landmarks are covered by the body
        ys, xs = np.nonzero(changed)
        box = (xs.min() - 5, ys.min() - 5, xs.max() + 5, ys.max() + 5)
        assert all(box[0] <= x <= box[2] and box[1] <= y <= box[3] for x, y in pixels)  # and none lie beyond it


def test_batch_reports_the_bad_video_and_converts_the_good_one(batch_run):
    result = batch_run.result
    assert result.returncode == 1, result.stderr
    (failure,) = [line for line in result.stderr.splitlines() if ": failed: " in line]
    assert failure.startswith("[2/2] broken.mp4: failed: ") and "is not a video" in failure
    lines = result.stdout.splitlines()
    keypoint_percents = [int(line.rsplit(" ", 1)[1].rstrip("%")) for line in lines
                         if line.startswith("[1/2] demo.mp4: keypoints ")]
    assert keypoint_percents[-1] == 100 and keypoint_percents == sorted(keypoint_percents)
    assert "[1/2] demo.mp4: wrote demo.npz, demo.blend, demo.fbx, demo.bvh, demo.glb, demo_preview.png" in lines
    assert lines[-1] == f"converted 1 of 2 videos into {batch_run.output.resolve()}; failed: broken.mp4"


def test_outputs_are_complete_and_nothing_half_written_is_left(batch_run):
    names = sorted(path.name for path in batch_run.output.iterdir())
    assert names == ["broken.blend", "demo.blend", "demo.bvh", "demo.fbx", "demo.glb", "demo.ikol.json", "demo.npz",
                     "demo_preview.png"]
    assert (batch_run.output / "broken.blend").read_bytes() == batch_run.stale_blend
    assert batch_run.motion.source_video == "demo.mp4"
    assert len(batch_run.motion.frame_indices) == round(END_S * batch_run.motion.fps)
    assert batch_run.motion.valid.sum() > len(batch_run.motion.valid) // 2


def test_blend_reopens_with_the_keyed_rig(batch_run, blank):
    motion = batch_run.motion
    bpy.ops.wm.open_mainfile(filepath=str(batch_run.output / "demo.blend"))
    armature = only(bpy.data.objects, "ARMATURE")
    bones = len(bone_names(motion))
    assert len(armature.data.bones) == bones
    mesh = only(armature.children, "MESH")
    assert len(mesh.data.vertices) == len(motion.mesh_vertices)
    scene = bpy.context.scene
    frames = importer.blender_frames(motion)
    assert (scene.frame_start, scene.frame_end) == (frames[0], frames[-1])
    curves = fcurves(armature)
    assert len(curves) == 4 * bones + 3 + 1 + 4  # rotations, root location, residual, foot contacts
    for curve in curves:
        assert np.array_equal(keys(curve)[:, 0], valid_blender_frames(motion))


def test_bvh_has_every_bone_and_frame(batch_run, blank):
    motion = batch_run.motion
    bones = len(bone_names(motion))
    text = (batch_run.output / "demo.bvh").read_text()
    hierarchy, frames_part = text.split("MOTION\n")
    assert sum(line.split()[0] in ("ROOT", "JOINT") for line in hierarchy.splitlines() if line.strip()) == bones
    header, time_line, *rows = frames_part.splitlines()
    assert header == f"Frames: {len(motion.frame_indices)}" and len(rows) == len(motion.frame_indices)
    assert float(time_line.split()[-1]) == pytest.approx(1 / motion.fps, abs=1e-6)
    assert {len(row.split()) for row in rows} == {6 * bones}
    bpy.ops.import_anim.bvh(filepath=str(batch_run.output / "demo.bvh"))
    armature = bpy.context.object
    assert len(armature.data.bones) == bones
    assert armature.animation_data.action.frame_range[:] == (1.0, float(len(motion.frame_indices)))


def test_fbx_reimports_with_rig_mesh_and_baked_keys(batch_run, blank):
    motion = batch_run.motion
    bpy.ops.import_scene.fbx(filepath=str(batch_run.output / "demo.fbx"))
    armature = only(bpy.data.objects, "ARMATURE")
    assert sorted(bone.name for bone in armature.data.bones) == sorted(bone_names(motion))
    assert len(only(bpy.data.objects, "MESH").data.vertices) == len(motion.mesh_vertices)
    frames = valid_blender_frames(motion)
    baked = int(frames[-1] - frames[0]) + 1  # one key a frame over the keyed range
    counts = {len(curve.keyframe_points) for curve in fcurves(armature)}
    assert counts == {baked}


def test_glb_holds_the_skin_and_a_sampled_animation(batch_run):
    data = (batch_run.output / "demo.glb").read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    chunk_length, chunk_type = struct.unpack_from("<I4s", data, 12)
    assert chunk_type == b"JSON"
    document = json.loads(data[20:20 + chunk_length])
    assert len(document["skins"]) == 1 and len(document["skins"][0]["joints"]) == len(bone_names(batch_run.motion))
    (animation,) = document["animations"]
    frames = valid_blender_frames(batch_run.motion)
    times = document["accessors"][animation["samplers"][0]["input"]]
    assert times["count"] == int(frames[-1] - frames[0]) + 1


# ---- exit codes without a conversion ------------------------------------------------------

def test_missing_engine_python_is_a_usage_error(video, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(engine_process.ENVIRONMENT_VARIABLE, raising=False)
    absent = tmp_path / "no-python"
    assert batch.main([str(video), "-o", str(tmp_path / "out"), "--engine-python", str(absent)]) == 2
    assert capsys.readouterr().err == f"ikol: error: engine Python {absent} is not an executable file\n"
    # Nothing set, and this Python lacks (here: pretends to lack) one of the engine's modules.
    monkeypatch.setattr(engine_process, "ENGINE_MODULES", (*engine_process.ENGINE_MODULES, "ikol_no_such_module"))
    assert batch.main([str(video), "-o", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "'Engine Python'" in error and "IKOL_ENGINE_PYTHON" in error and "ikol_no_such_module" in error
    assert not (tmp_path / "out").exists()


def test_bad_arguments_are_usage_errors(video, tmp_path, capsys):
    file = tmp_path / "file"
    file.write_text("")
    assert batch.main(["-o", str(tmp_path)]) == 2  # no video
    assert batch.main([str(video), "-o", str(file)]) == 2
    assert "cannot create the output folder" in capsys.readouterr().err
    twin = tmp_path / "other" / video.name
    assert batch.main([str(video), str(twin), "-o", str(tmp_path / "out")]) == 2
    assert "would both write demo.*" in capsys.readouterr().err
    assert batch.main(["--help"]) == 0


def test_camera_options_reach_the_engine() -> None:
    args = batch.build_parser().parse_args(["clip.mp4", "-o", "out", "--fov", "auto", "--focal-mm", "28"])
    options = engine_process.AnalyzeOptions(fov=args.fov, focal_mm=args.focal_mm)
    options.check()
    arguments = options.arguments()
    assert arguments[arguments.index("--fov") + 1] == "auto"
    assert arguments[arguments.index("--focal-mm") + 1] == "28.0"
    assert "--no-hands" not in arguments


def test_no_hands_reaches_the_engine() -> None:
    args = batch.build_parser().parse_args(["clip.mp4", "-o", "out", "--no-hands"])
    assert engine_process.AnalyzeOptions(hands=args.hands).arguments() == ["--no-hands"]


@pytest.mark.parametrize("arguments, message", [
    (["--fov", "0"], "--fov must be auto or between 1 and 170 degrees"),
    (["--fov", "nan"], "--fov must be auto or between 1 and 170 degrees"),
    (["--focal-mm", "-24"], "--focal-mm must be a focal length in mm > 0"),
    (["--fps", "5000"], "--fps must be between 1 and 1000"),
    (["--device", "bogus"], "unknown device 'bogus'"),
    (["--start", "2", "--end", "1"], "--start 2.0 must come before --end 1.0"),
    (["--iterations", "101"], "--iterations must be from 0 to 100"),
    (["--person", "the tall one"], "--person must be auto, all, a person id"),
    (["--person", "0"], "--person must be auto, all, a person id"),
    (["--person", "all", "--ray", "local"], "--person all converts on this machine"),
])
def test_bad_engine_options_stop_the_batch_before_any_engine_runs(video, tmp_path, monkeypatch, capsys,
                                                                   arguments, message):
    def no_engine(*args, **kwargs):
        raise AssertionError("an engine was run for options the batch can check itself")

    monkeypatch.setattr(engine_process, "resolve_engine", no_engine)
    monkeypatch.setattr(engine_process, "run_engine", no_engine)
    output = tmp_path / "out"
    assert batch.main([str(video), "-o", str(output), *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ikol: error: {message}") and err.count("\n") == 1
    assert not output.exists()


def test_person_all_writes_a_motion_per_person_and_one_blend_with_every_rig(tmp_path, blank):
    from two_person_clips import side_by_side

    clip = side_by_side(tmp_path)
    output = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "ikol_blender.batch", str(clip.path), "-o", str(output),
                             "--person", "all", "--engine-python", sys.executable],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in output.iterdir()) == [
        "side_by_side.blend", "side_by_side.ikol.json", "side_by_side_person1.npz", "side_by_side_person2.npz"]
    ids = [read_motion(output / f"side_by_side_person{i}.npz").options["person"]["id"] for i in (1, 2)]
    assert ids == [1, 2]
    bpy.ops.wm.open_mainfile(filepath=str(output / "side_by_side.blend"))
    armatures = [o for o in bpy.data.objects if o.type == "ARMATURE"]
    assert len(armatures) == 2 and len(bpy.data.cameras) == 1
    assert len({o[importer.CAMERA_PROPERTY] for o in armatures}) == 1  # both seen by the video's one camera


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_an_absent_device_stops_the_batch_before_any_video(video, tmp_path, monkeypatch, capsys):
    analysed = []
    monkeypatch.setattr(engine_process, "run_analyze", lambda *args, **kwargs: analysed.append(args))
    output = tmp_path / "out"
    assert batch.main([str(video), "-o", str(output), "--device", "cuda", "--engine-python", sys.executable]) == 2
    assert "device 'cuda' asked for, but this torch build sees no CUDA GPU" in capsys.readouterr().err
    assert analysed == [] and not output.exists()


def test_interrupt_exits_130_and_writes_nothing(video, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_process, "run_analyze", interrupted)
    output = tmp_path / "out"
    assert batch.main([str(video), "-o", str(output), "--engine-python", sys.executable]) == 130
    assert "[1/1] demo.mp4: interrupted" in capsys.readouterr().err
    assert list(output.iterdir()) == []


# ---- blender -c ikol --------------------------------------------------------------------

def test_registered_cli_command_converts(video, tmp_path, blank, capsys):
    ikol_blender.register()
    try:
        registration = ikol_blender._cli_registration
        output = tmp_path / "out"
        code = registration.function(["convert", str(video), "-o", str(output), "--end", "0.4", "--bvh",
                                      "--engine-python", sys.executable])
        assert code == 0, capsys.readouterr().err
        assert sorted(path.name for path in output.iterdir()) == ["demo.blend", "demo.bvh", "demo.ikol.json",
                                                                   "demo.npz"]
        assert "Frames: 12\n" in (output / "demo.bvh").read_text()
        assert registration.function(["export"]) == 2
        assert registration.function(["--help"]) == 0
    finally:
        ikol_blender.unregister()
    assert ikol_blender._cli_registration is None


# ---- the engine subprocess, with a stand-in engine ---------------------------------------

FAKE_CLI = textwrap.dedent("""
    import os, sys, time
    mode = os.environ["FAKE_ENGINE_MODE"]
    print("library chatter", file=sys.stderr, flush=True)
    print("keypoints: 5/10 (50%)", file=sys.stderr, flush=True)
    if mode == "ok":
        print("keypoints: 10/10 (100%)", file=sys.stderr)
        print("wrote:" + "|".join(sys.argv[1:]))
    elif mode == "bad-input":
        print("ikol-engine: error: that is not a video", file=sys.stderr)
        sys.exit(2)
    elif mode == "crash":
        1 / 0
    elif mode == "hang":
        # Written whole, then renamed: the test waits for the file and reads it at once.
        with open(os.environ["FAKE_ENGINE_PID"] + ".tmp", "w") as pid:
            pid.write(str(os.getpid()))
        os.replace(os.environ["FAKE_ENGINE_PID"] + ".tmp", os.environ["FAKE_ENGINE_PID"])
        time.sleep(120)
    elif mode == "killed-mid-write":  # as atomic_path names its temporary file
        output = sys.argv[sys.argv.index("-o") + 1]
        folder, name = os.path.split(output)
        open(os.path.join(folder, "." + name + ".partial-0123456789ab.npz"), "wb").write(b"PK half")
        os.kill(os.getpid(), 9)
""")


@pytest.fixture
def fake_engine(tmp_path) -> engine_process.Engine:
    """This Python with a stand-in ``ikol_engine`` first on its path (as a vendored engine is)."""
    package = tmp_path / "vendor" / "ikol_engine"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(FAKE_CLI)
    return engine_process.Engine(Path(sys.executable), tmp_path / "vendor")


def test_engine_arguments_progress_and_summary(fake_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ENGINE_MODE", "ok")
    progress, log = [], []
    video = tmp_path / "a video $(rm -rf x); 'quoted'.mp4"
    options = engine_process.AnalyzeOptions(start=0.5, end=2.0, iterations=3, device="cpu", fps=25.0)
    summary = engine_process.run_analyze(fake_engine, video, tmp_path / "m.npz", options,
                                         lambda stage, fraction: progress.append((stage, fraction)), log.append)
    # --verbose: the library lines come back on stderr for the batch to filter, not into a log file in OUT_DIR.
    assert summary == "wrote:" + "|".join(["analyze", str(video), "-o", str(tmp_path / "m.npz"), "--start", "0.5",
                                           "--end", "2.0", "--iterations", "3", "--device", "cpu", "--fps", "25.0",
                                           "--verbose"])
    assert progress == [("keypoints", 0.5), ("keypoints", 1.0)]
    assert log == ["library chatter"]


def test_engine_failures_carry_the_engine_error_line(fake_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ENGINE_MODE", "bad-input")
    with pytest.raises(engine_process.EngineError) as bad_input:
        engine_process.run_analyze(fake_engine, "v.mp4", tmp_path / "m.npz", log=lambda line: None)
    assert (str(bad_input.value), bad_input.value.returncode) == ("that is not a video", 2)
    monkeypatch.setenv("FAKE_ENGINE_MODE", "crash")
    with pytest.raises(engine_process.EngineError) as crash:
        engine_process.run_analyze(fake_engine, "v.mp4", tmp_path / "m.npz", log=lambda line: None)
    assert str(crash.value) == "engine failed (exit 1): ZeroDivisionError: division by zero"


def test_an_engine_killed_mid_write_leaves_no_partial_file(fake_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_ENGINE_MODE", "killed-mid-write")
    output = tmp_path / "m.npz"
    output.write_bytes(b"an earlier result")
    with pytest.raises(engine_process.EngineError) as killed:
        engine_process.run_analyze(fake_engine, "v.mp4", output, log=lambda line: None)
    assert killed.value.returncode == -signal.SIGKILL and "exit -9" in str(killed.value)
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "vendor"] and output.read_bytes() == b"an earlier result"


def test_interrupt_stops_the_engine(fake_engine, tmp_path, monkeypatch):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_ENGINE_MODE", "hang")
    monkeypatch.setenv("FAKE_ENGINE_PID", str(pid_file))

    def interrupt_when_running(stage: str, fraction: float) -> None:
        while not pid_file.exists():
            time.sleep(0.01)
        raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        engine_process.run_analyze(fake_engine, "v.mp4", tmp_path / "m.npz", progress=interrupt_when_running,
                                   log=lambda line: None)
    assert time.monotonic() - started < 30
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_vendored_engine_comes_first(fake_engine):
    probe = subprocess.run([sys.executable, "-c", "import ikol_engine; print(ikol_engine.__file__)"],
                           env=fake_engine.environment(), capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()) == fake_engine.source / "ikol_engine" / "__init__.py"
