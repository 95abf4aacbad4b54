"""The batch on a Ray cluster (:mod:`ikol_blender.cluster`) and the batch's resume, on clips cut from the sample.

Every batch runs in its own process, as users run it. The runs that join a cluster share
one Ray instance of 2 CPUs started by this module (Ray's start-up takes seconds); one run
starts its own with ``--ray local``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

import ikol_blender
from ikol_blender import batch, batch_manifest
from ikol_engine import samples
from ikol_engine.motion import Motion, read_motion

ray = pytest.importorskip("ray")
if not Path("/proc/self/stat").exists():
    pytest.skip("finds the engine and Ray worker processes through /proc", allow_module_level=True)

#: Two different clips: the jump off the box and the landing, at half the sample's size.
CLIPS = {"jump": (0, 20), "land": (60, 20)}
ENGINE = ("--engine-python", sys.executable)


@dataclass(frozen=True)
class Run:
    result: subprocess.CompletedProcess
    output: Path

    def motion(self, stem: str) -> Motion:
        return read_motion(self.output / f"{stem}.npz")


def run_batch(*arguments, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ikol_blender.batch", *map(str, arguments), *ENGINE],
                          capture_output=True, text=True, timeout=timeout)


def cut(frames: list[np.ndarray], first: int, count: int, path: Path) -> Path:
    """frames: (H, W, 3) uint8 BGR each; writes frames[first:first + count] at half size."""
    height, width = frames[0].shape[:2]
    size = (width // 2, height // 2)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for frame in frames[first:first + count]:
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    writer.release()
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    capture = cv2.VideoCapture(str(samples.demo_video()))
    frames = []
    while len(frames) < max(first + count for first, count in CLIPS.values()):
        ok, frame = capture.read()
        assert ok
        frames.append(frame)
    capture.release()
    for stem, (first, count) in CLIPS.items():
        cut(frames, first, count, folder / f"{stem}.mp4")
    return folder


@pytest.fixture(scope="module")
def plain(clips, tmp_path_factory) -> Run:
    output = tmp_path_factory.mktemp("plain")
    return Run(run_batch(clips, "-o", output), output)


@pytest.fixture(scope="module")
def on_local_cluster(clips, tmp_path_factory) -> Run:
    """The two clips and a corrupt one, from one folder, on a cluster started for the run."""
    folder = tmp_path_factory.mktemp("with-broken")
    for clip in clips.iterdir():
        shutil.copy(clip, folder / clip.name)
    (folder / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    output = folder / "out"
    return Run(run_batch(folder, "-o", output, "--ray", "local"), output)


@pytest.fixture(scope="module")
def cluster_address() -> str:
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()


def assert_same_motion(got: Motion, expected: Motion) -> None:
    for field in dataclasses.fields(Motion):
        ours, theirs = getattr(got, field.name), getattr(expected, field.name)
        if field.name in ("mesh_vertices", "rest_joints"):
            # The rest body's float32 sums differ in the last bit with the threads torch
            # runs on (Ray gives a one-CPU task one, and OMP_NUM_THREADS=1): within a micrometre.
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6, err_msg=field.name)
        elif isinstance(ours, np.ndarray) and ours.dtype.kind == "f":
            # The IK's iterations carry those last bits on, and a frame's step taken or
            # refused on a near tie moves it within the pass's stopping tolerance:
            # measured on an AMD EPYC 2-core machine, up to 1.6e-3 in quaternion
            # components (0.2 degrees), 4e-4 in twist radians, 1e-6 m in translation,
            # 1e-3 mm in residuals. A clip solved differently is off by far more: on the
            # sample, twist_weight 10% higher moved quaternion components by up to 0.066.
            assert ours.dtype == theirs.dtype, field.name
            atol = 5e-3 if field.name == "rotations" else 1e-3
            np.testing.assert_allclose(ours, theirs, rtol=0, atol=atol, equal_nan=True, err_msg=field.name)
        elif isinstance(ours, np.ndarray):
            assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), field.name
        else:
            assert ours == theirs, field.name


def engine_processes(video: Path) -> list[int]:
    """The ids of the running ``ikol_engine.cli analyze VIDEO`` processes."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:  # ended meanwhile
            continue
        if b"ikol_engine.cli" in command and b"analyze" in command and str(video.resolve()).encode() in command:
            found.append(int(entry.name))
    return found


def wait_for_engine(video: Path, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running := engine_processes(video):
            return running[0]
        time.sleep(0.1)
    raise AssertionError(f"no engine started on {video} in {timeout} s")


def parent(pid: int) -> int:
    # /proc/PID/stat: "pid (name) state ppid ..."; the name may hold spaces, so split after it.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def killed_scratch():
    """Removes the scratch folders of tasks whose worker a test killed (nothing else could)."""
    before = set(Path(tempfile.gettempdir()).glob("ikol-task-*"))
    yield
    for folder in set(Path(tempfile.gettempdir()).glob("ikol-task-*")) - before:
        shutil.rmtree(folder, ignore_errors=True)


class WorkerKiller(threading.Thread):
    """Kills, once, the Ray worker running the analysis of ``video`` and its engine, as a
    lost node takes both; remembers what it killed."""

    def __init__(self, video: Path) -> None:
        super().__init__(daemon=True)
        self.video = video
        self.worker_name = ""

    def run(self) -> None:
        engine = wait_for_engine(self.video)
        time.sleep(1.0)  # mid-analysis, not at its start
        worker = parent(engine)
        self.worker_name = Path(f"/proc/{worker}/comm").read_text().strip()
        os.kill(worker, signal.SIGKILL)
        os.kill(engine, signal.SIGKILL)


# ---- a cluster started for the run --------------------------------------------------------

def test_local_cluster_converts_a_folder_like_the_plain_batch(plain, on_local_cluster):
    assert plain.result.returncode == 0, plain.result.stderr
    result = on_local_cluster.result
    assert result.returncode == 1, result.stderr
    (failure,) = [line for line in result.stderr.splitlines() if ": failed: " in line]
    assert failure.startswith("[1/3] broken.mp4: failed: ") and "is not a video" in failure
    for stem in CLIPS:
        motion = on_local_cluster.motion(stem)
        assert len(motion.frame_indices) == CLIPS[stem][1] and motion.valid.sum() > CLIPS[stem][1] // 2
        assert_same_motion(motion, plain.motion(stem))
    progress = [line for line in result.stderr.splitlines() if line.startswith("cluster: ")]
    assert progress[0] == "cluster: 3 videos on 1 node(s), 2 CPUs, 0 GPUs"
    counts = [line.removeprefix("cluster: ").split(" done, ") for line in progress[1:]]
    assert [done for done, _ in counts] == ["1/3", "2/3", "3/3"] and counts[-1][1] == "1 failed"
    lines = result.stdout.splitlines()
    for number, stem in ((2, "jump"), (3, "land")):
        (done,) = [line for line in lines if line.startswith(f"[{number}/3] {stem}.mp4: analysed on ")]
        assert done.endswith(f"; wrote {stem}.npz, {stem}.blend")
    assert lines[-1] == f"converted 2 of 3 videos into {on_local_cluster.output.resolve()}; failed: broken.mp4"
    names = sorted(path.name for path in on_local_cluster.output.iterdir())
    assert names == [f"{stem}{suffix}" for stem in CLIPS for suffix in (".blend", ".ikol.json", ".npz")]


def test_the_videos_differ(plain):
    """The two clips are different work: guards the comparison above against a clip compared with itself."""
    jump, land = plain.motion("jump"), plain.motion("land")
    assert jump.source_sha256 != land.source_sha256
    assert np.abs(jump.translation - land.translation).max() > 0.05  # metres


# ---- resume -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [(), ("--ray", "local")], ids=["plain", "ray"])
def test_a_rerun_skips_what_is_up_to_date(plain, on_local_cluster, clips, mode):
    for run in (plain, on_local_cluster):
        before = {path.name: path.stat().st_mtime_ns for path in run.output.iterdir()}
        result = run_batch(*sorted(clips.iterdir()), "-o", run.output, *mode, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["[1/2] jump.mp4: up to date, skipped",
                                              "[2/2] land.mp4: up to date, skipped",
                                              f"converted 0 of 2 videos into {run.output.resolve()}; "
                                              "2 up to date, skipped"]
        assert "cluster: " not in result.stderr  # no cluster was even started
        assert {path.name: path.stat().st_mtime_ns for path in run.output.iterdir()} == before


def test_manifest_notices_changed_settings_outputs_and_video(plain, clips, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(plain.output, output)
    video = tmp_path / "jump.mp4"
    shutil.copy(clips / "jump.mp4", video)
    settings = batch_manifest.settings(dataclasses.asdict(batch.engine_process.AnalyzeOptions()), [], False)
    document = json.loads((output / "jump.ikol.json").read_text())
    assert document["video_sha256"] == batch_manifest.file_sha256(video) == plain.motion("jump").source_sha256
    assert sorted(document["outputs"]) == ["jump.blend", "jump.npz"]
    assert batch_manifest.is_up_to_date(output, video, settings)
    on_gpu = batch_manifest.settings(dataclasses.asdict(batch.engine_process.AnalyzeOptions(device="cuda")), [],
                                     False)
    assert batch_manifest.is_up_to_date(output, video, on_gpu)  # the device is not a setting
    assert not batch_manifest.is_up_to_date(output, video, {**settings, "exports": ["bvh"]})
    assert not batch_manifest.is_up_to_date(output, video, batch_manifest.settings(
        dataclasses.asdict(batch.engine_process.AnalyzeOptions(end=0.5)), [], False))
    video.write_bytes(video.read_bytes() + b"\0")  # another video under the same name
    assert not batch_manifest.is_up_to_date(output, video, settings)
    shutil.copy(clips / "jump.mp4", video)
    assert batch_manifest.is_up_to_date(output, video, settings)
    with open(output / "jump.blend", "ab") as blend:
        blend.write(b"\0")  # an output changed since
    assert not batch_manifest.is_up_to_date(output, video, settings)
    (output / "jump.blend").unlink()
    assert not batch_manifest.is_up_to_date(output, video, settings)


# ---- faults on a running cluster ----------------------------------------------------------

def test_forced_rerun_with_a_killed_worker_is_retried(plain, clips, cluster_address, tmp_path, killed_scratch):
    """``--force`` redoes an up-to-date video; its task's worker dies once, the retry succeeds."""
    output = tmp_path / "out"
    shutil.copytree(plain.output, output)
    before = (output / "jump.npz").stat().st_mtime_ns
    video = clips / "jump.mp4"
    killer = WorkerKiller(video)
    killer.start()
    result = run_batch(video, "-o", output, "--ray", cluster_address, "--force")
    killer.join(timeout=5)
    assert killer.worker_name.startswith("ray::"), killer.worker_name  # a Ray worker was killed mid-task
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"converted 1 of 1 videos into {output.resolve()}"
    assert (output / "jump.npz").stat().st_mtime_ns > before
    assert_same_motion(read_motion(output / "jump.npz"), plain.motion("jump"))


def test_a_killed_worker_without_retries_fails_its_video(clips, cluster_address, tmp_path, killed_scratch):
    video = clips / "land.mp4"
    killer = WorkerKiller(video)
    killer.start()
    result = run_batch(video, "-o", tmp_path, "--ray", cluster_address, "--max-retries", "0")
    killer.join(timeout=5)
    assert killer.worker_name.startswith("ray::"), killer.worker_name
    assert result.returncode == 1, result.stderr
    (failure,) = [line for line in result.stderr.splitlines() if ": failed: " in line]
    assert failure.startswith("[1/1] land.mp4: failed: WorkerCrashedError: ")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_cancels_the_tasks_and_leaves_no_file(clips, cluster_address, tmp_path):
    driver = subprocess.Popen([sys.executable, "-m", "ikol_blender.batch", str(clips), "-o", str(tmp_path),
                               "--ray", cluster_address, *ENGINE],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    engines = [wait_for_engine(clips / f"{stem}.mp4") for stem in CLIPS]  # both run: 2 CPUs
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 130, stderr
    assert "interrupted; every file written is complete" in stderr
    deadline = time.monotonic() + 20
    while any(map(running, engines)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(running, engines))  # the cancelled tasks stopped their engines
    assert list(tmp_path.iterdir()) == []


# ---- without Ray --------------------------------------------------------------------------

def test_without_ray_says_how_to_install_it(clips, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    for convert in (batch.main, lambda argv: ikol_blender.cli_command(["convert", *argv])):
        assert convert([str(clips), "-o", str(tmp_path / "out"), "--ray", "local", *ENGINE]) == 2
        assert capsys.readouterr().err == f"ikol: error: {ikol_blender.cluster.INSTALL_HINT}\n"
    assert "pip install 'ikol-mocap[cluster]'" in ikol_blender.cluster.INSTALL_HINT
    assert not (tmp_path / "out").exists()


def test_an_address_where_no_cluster_answers_is_a_usage_error(clips, tmp_path, capsys):
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    started = time.monotonic()
    assert batch.main([str(clips), "-o", str(tmp_path / "out"), "--ray", f"127.0.0.1:{port}", *ENGINE]) == 2
    assert capsys.readouterr().err.startswith(f"ikol: error: no Ray cluster answers at 127.0.0.1:{port}: ")
    assert time.monotonic() - started < 10  # Ray's own connect would retry for minutes
    assert batch.main([str(clips), "-o", str(tmp_path / "out"), "--ray", "somewhere", *ENGINE]) == 2
    assert "--ray takes 'local' or a cluster's HOST:PORT" in capsys.readouterr().err
