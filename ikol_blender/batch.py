"""Headless conversion: videos to motion files, .blend files and FBX/BVH/glTF exports.

``python -m ikol_blender.batch VIDEO_OR_FOLDER... -o OUT_DIR [--fbx] [--bvh] [--glb]`` with
bpy as a Python module, or ``blender -b -c ikol convert ...`` (see :func:`ikol_blender.cli_command`);
``--ray local|ADDRESS`` runs the analyses as tasks on a Ray cluster (:mod:`.cluster`).
For each video, in OUT_DIR: ``STEM.npz`` (the engine's motion file), ``STEM.blend`` (a
fresh scene holding the keyed rig, and the video's camera with the video behind it), the
exports asked for, and with ``--preview`` ``STEM_preview.png`` (video frames beside the
rig seen through that camera; see :mod:`.scene.preview`). Every file is written
under a temporary name and renamed when complete, so a failure leaves no half file and
an earlier good file stays as it was. ``STEM.ikol.json`` (:mod:`.batch_manifest`), written
last, lets a rerun skip the videos already converted with the same settings (``--force``
redoes them).

Synchronous: background Blender runs no modal operators or timers.

Every engine option is checked before any video is analysed (the device by asking the
engine once), so a bad one stops the batch at once rather than failing every video.
A video that ends before its container said is converted as far as it decodes, and
its line says so.

Exit codes: 0 every video converted; 1 some failed (each reported in one line, the
others still converted); 2 usage error (bad arguments or options, no engine Python or
device, output folder unusable); 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import addon_utils  # Blender's module, importable once bpy is imported

from . import batch_manifest, cluster, settings
from .engine import process as engine_process
from .engine.link import atomic_path, read_motion
from .scene import importer, preview
from .scene.retarget import apply as retarget, mapping as maps

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")


@dataclass(frozen=True)
class Export:
    """One export format: the flag asking for it, its file suffix, the add-on that provides it."""

    flag: str
    suffix: str
    addon: str
    write: Callable[[Path, bpy.types.Object], set[str]]


def _write_fbx(path: Path, armature: bpy.types.Object) -> set[str]:
    # No curve simplification: every solved frame stays a key. No leaf bones: the SMPL
    # bone names are what other tools retarget from.
    return bpy.ops.export_scene.fbx(filepath=str(path), object_types={"ARMATURE", "MESH"}, bake_anim=True,
                                    bake_anim_simplify_factor=0.0,
                                    add_leaf_bones=False)


def _write_bvh(path: Path, armature: bpy.types.Object) -> set[str]:
    scene = bpy.context.scene
    with bpy.context.temp_override(active_object=armature, object=armature, selected_objects=[armature]):
        return bpy.ops.export_anim.bvh(filepath=str(path), frame_start=scene.frame_start,
                                       frame_end=scene.frame_end)


def _write_glb(path: Path, armature: bpy.types.Object) -> set[str]:
    return bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB", export_animations=True,
                                     export_skins=True)


EXPORTS = (
    Export("fbx", ".fbx", "io_scene_fbx", _write_fbx),
    Export("bvh", ".bvh", "io_anim_bvh", _write_bvh),
    Export("glb", ".glb", "io_scene_gltf2", _write_glb),
)


class UsageError(Exception):
    """The batch cannot start: exit code 2."""


def _fov(text: str) -> float | str:
    """--fov's value: degrees, or "auto"."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected degrees or auto, got {text!r}") from None


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Convert videos of a person into keyframed SMPL rigs: "
                                     "a motion file, a .blend and, if asked, FBX/BVH/glTF exports per video.")
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files, or folders of them")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUT_DIR",
                        help="folder for the outputs (created if missing)")
    for export in EXPORTS:
        parser.add_argument(f"--{export.flag}", action="store_true", help=f"also write STEM{export.suffix}")
    parser.add_argument("--preview", action="store_true",
                        help="also write STEM_preview.png: video frames beside the rig seen through the video's camera")
    parser.add_argument("--force", action="store_true",
                        help="convert every video again, even those whose outputs are up to date")
    rig = parser.add_argument_group("retargeting")
    rig.add_argument("--retarget", metavar="RIG.blend[:OBJECT]",
                     help="also animate this armature (and the meshes it deforms), appended from a .blend into each "
                          "output .blend; the exports then carry it")
    rig.add_argument("--mapping", default="auto", metavar="auto|rigify|mixamo|ue5|smplx|FILE.json",
                     help="SMPL bone to target bone map for --retarget (default: detected from the bone names)")
    on_cluster = parser.add_argument_group("cluster")
    on_cluster.add_argument("--ray", metavar="ADDRESS", help="analyse the videos as tasks on a Ray cluster: "
                            f"'{cluster.LOCAL}' starts one on this machine for the run, HOST:PORT joins a running one")
    on_cluster.add_argument("--max-retries", type=int, default=3, metavar="N",
                            help="with --ray: times a task is retried after its worker died (default 3)")
    engine = parser.add_argument_group("engine")
    engine.add_argument("--start", type=float, help="first second to analyse")
    engine.add_argument("--end", type=float, help="second to stop at")
    engine.add_argument("--iterations", type=int, help="Gauss-Newton steps per IK pass")
    engine.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    engine.add_argument("--fov", type=_fov, metavar="DEG|auto",
                        help="camera's horizontal field of view, degrees, or auto to estimate it from each clip")
    engine.add_argument("--focal-mm", type=float, metavar="MM",
                        help="the lens's focal length on a full-frame (36 mm) sensor, mm (replaces --fov)")
    engine.add_argument("--fps", type=float, help="the videos' real frame rate, for files whose container states "
                        "a wrong one")
    engine.add_argument("--model-complexity", type=int, choices=(0, 1, 2),
                        help="BlazePose model: 0 lite, 1 full, 2 heavy")
    engine.add_argument("--no-hands", dest="hands", action="store_false",
                        help="the body alone: no hand landmarks, no finger bones (faster)")
    engine.add_argument("--person", metavar="auto|ID|X,Y|all",
                        help="whom to follow in each video: auto (present longest, the default), an id from "
                             "`ikol-engine people`, X,Y (whose box holds that pixel in the first frame anyone is "
                             "seen), or all (STEM_personID.npz each, all rigs in STEM.blend sharing the camera)")
    engine.add_argument("--engine-python", metavar="PATH", help="Python with the engine's requirements (default: "
                        f"the add-on preference, ${engine_process.ENVIRONMENT_VARIABLE}, or this Python)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Runs the batch; returns the exit code (shared by ``-m`` and ``blender -c ikol convert``)."""
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on bad arguments; a CLI command must return
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    options = engine_process.AnalyzeOptions(start=args.start, end=args.end, iterations=args.iterations,
                                            device=args.device, fov=args.fov, focal_mm=args.focal_mm,
                                            model_complexity=args.model_complexity, fps=args.fps,
                                            person=args.person, hands=args.hands)
    try:
        options.check()
        if options.person == "all" and (args.ray is not None or args.retarget):
            raise UsageError("--person all converts on this machine onto the SMPL rigs only: "
                             "leave out --ray and --retarget")
        videos = _expand_folders([Path(video) for video in args.videos])
        _check_distinct_stems(videos, args.output)
        if args.ray is not None:
            cluster.check_cluster(args.ray)
        if args.max_retries < 0:
            raise UsageError(f"--max-retries must be 0 or more, got {args.max_retries}")
        exports = [export for export in EXPORTS if getattr(args, export.flag)]
        rig = _retarget_request(args.retarget, args.mapping)
        _enable_exporters(exports)
        engine = engine_process.resolve_engine(args.engine_python or settings.engine_python())
        engine_process.check_device(engine, options.device)
        output = _output_folder(args.output)
    except (UsageError, ValueError, engine_process.EngineUnavailable, cluster.ClusterUnavailable) as error:
        print(f"ikol: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    run_settings = batch_manifest.settings(dataclasses.asdict(options), [export.flag for export in exports], args.preview,
                                       rig.settings() if rig else None)

    def finish(job: cluster.Job, written: list[Path]) -> str:
        motion = read_motion(written[0])
        batch_manifest.write_manifest(output, job.video, motion.source_sha256, run_settings, written)
        note = importer.video_note(motion)
        return f"wrote {', '.join(path.name for path in written)}" + (f"; warning: {note}" if note else "")

    def build_from(job: cluster.Job, motion: bytes) -> str:
        """A cluster task's motion file, written here, then the rest as the plain batch does."""
        try:
            with atomic_path(output / f"{job.video.stem}.npz") as temp:
                temp.write_bytes(motion)
            return finish(job, build(engine, job.video, output, exports, lambda text: _say(f"{job.tag}: {text}"),
                                     with_preview=args.preview, rig=rig))
        except Exception as error:
            raise RuntimeError(_reason(error)) from error

    try:
        jobs = []
        for number, video in enumerate(videos, 1):
            job = cluster.Job(f"[{number}/{len(videos)}] {video.name}", video)
            if not args.force and batch_manifest.is_up_to_date(output, video, run_settings):
                _say(f"{job.tag}: up to date, skipped")
            else:
                jobs.append(job)
        if args.ray is not None and jobs:  # no cluster to start when everything is up to date
            failed = [job.video.name for job in cluster.convert_all(args.ray, jobs, engine, options, build_from,
                                                                    args.max_retries, _say, _report)]
        else:
            failed = _convert_each(jobs, engine, output, exports, options, args.preview, finish, rig)
    except KeyboardInterrupt:
        _report("interrupted; every file written is complete, the ones in progress were dropped")
        return EXIT_INTERRUPTED
    skipped = len(videos) - len(jobs)
    _say(f"converted {len(jobs) - len(failed)} of {len(videos)} videos into {output}"
         + (f"; {skipped} up to date, skipped" if skipped else "")
         + (f"; failed: {', '.join(failed)}" if failed else ""))
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _convert_each(jobs: Sequence[cluster.Job], engine: engine_process.Engine, output: Path,
                  exports: Sequence[Export], options: engine_process.AnalyzeOptions, with_preview: bool,
                  finish: Callable[[cluster.Job, list[Path]], str], rig: RetargetRequest | None) -> list[str]:
    """The plain batch: one video after the other in this process; returns the names that failed."""
    failed = []
    for job in jobs:
        try:
            written = convert(engine, job.video, output, exports, options, lambda text: _say(f"{job.tag}: {text}"),
                              with_preview=with_preview, rig=rig)
            line = finish(job, written)
        except KeyboardInterrupt:
            _report(f"{job.tag}: interrupted")
            raise
        except Exception as error:  # one bad video must not stop the others
            failed.append(job.video.name)
            _report(f"{job.tag}: failed: {_reason(error)}")
        else:
            _say(f"{job.tag}: {line}")
    return failed


def convert(engine: engine_process.Engine, video: Path, output: Path, exports: Sequence[Export],
            options: engine_process.AnalyzeOptions, say: Callable[[str], None], with_preview: bool = False,
            rig: RetargetRequest | None = None) -> list[Path]:
    """One video: motion file, a fresh scene with the rig saved as .blend, the exports, the preview.

    Returns the files written. Replaces the open Blender file with a new empty one.
    """
    if not video.is_file():
        raise FileNotFoundError(f"no such video file: {video}")
    motion = output / f"{video.stem}.npz"
    last_said: dict[str, int] = {}

    def progress(stage: str, fraction: float) -> None:
        percent = int(100 * fraction)
        if last_said.get(stage) != percent:
            last_said[stage] = percent
            say(f"{stage} {percent}%")

    if options.person == "all":
        return build(engine, video, output, exports, say, with_preview, rig,
                     motions=_analyze_everyone(engine, video, output, options, progress))
    engine_process.run_analyze(engine, video, motion, options, progress, log=lambda line: None)
    return build(engine, video, output, exports, say, with_preview, rig)


def _analyze_everyone(engine: engine_process.Engine, video: Path, output: Path,
                      options: engine_process.AnalyzeOptions, progress: Callable[[str, float], None]) -> list[Path]:
    """``--person all``: the engine writes STEM_personID.npz into a scratch folder in
    ``output``; they are moved in (each replacing an older one) only once all are written."""
    with tempfile.TemporaryDirectory(prefix=f".{video.stem}-people-", dir=output) as scratch:
        engine_process.run_analyze(engine, video, scratch, options, progress, log=lambda line: None)
        written = sorted(Path(scratch).glob(f"{video.stem}_person*.npz"),
                         key=lambda path: int(path.stem.rpartition("person")[2]))
        if not written:
            raise RuntimeError("the engine wrote no motion file")
        moved = [output / path.name for path in written]
        for source, target in zip(written, moved):
            os.replace(source, target)
    return moved


def build(engine: engine_process.Engine, video: Path, output: Path, exports: Sequence[Export],
          say: Callable[[str], None], with_preview: bool = False, rig: RetargetRequest | None = None,
          motions: Sequence[Path] | None = None) -> list[Path]:
    """From ``STEM.npz`` in ``output`` (or several people's ``motions``, one rig each
    seen by one camera): the .blend (with the retargeted rig if asked), the exports, the
    preview (of the first rig); returns the files (the motion files first). Replaces the
    open Blender file with a new empty one."""
    motions = list(motions or [output / f"{video.stem}.npz"])
    say("building the rig" if len(motions) == 1 else f"building {len(motions)} rigs")
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
    armature = importer.import_motions(bpy.context, motions, video=video)[0]
    motion = motions[0]
    exported = armature
    if rig is not None:
        say(f"retargeting onto {rig.path.name}")
        exported = retarget.retarget_from_blend(rig.path, rig.object_name, rig.mapping, armature, bpy.context.scene)
    written = [*motions, output / f"{video.stem}.blend"]
    with atomic_path(written[-1]) as temp:
        bpy.ops.wm.save_as_mainfile(filepath=str(temp), copy=True, check_existing=False)
    for export in exports:
        say(f"exporting {export.flag.upper()}")
        written.append(output / f"{video.stem}{export.suffix}")
        with atomic_path(written[-1]) as temp, contextlib.redirect_stdout(io.StringIO()):
            # The exporters' own chatter (timings, info) would bury the progress lines.
            if "FINISHED" not in export.write(temp, exported):
                raise RuntimeError(f"Blender's {export.flag.upper()} exporter cancelled")
    if with_preview:
        say("rendering the preview")
        written.append(write_preview(engine, video, motion, armature, output / f"{video.stem}_preview.png"))
    return written


def write_preview(engine: engine_process.Engine, video: Path, motion_path: Path, armature: bpy.types.Object,
                  path: Path) -> Path:
    """Renders the rig through the video's camera at a few frames and writes them beside
    the video's own frames (which the engine extracts: Blender's Python reads no video)."""
    motion = read_motion(motion_path)
    camera = bpy.data.objects.get(armature.get(importer.CAMERA_PROPERTY, ""))
    positions = preview.preview_frames(motion)
    if camera is None or len(positions) == 0:
        raise RuntimeError(f"{motion_path.name} records no camera or no posed frame; no preview")
    indices = [int(i) for i in motion.frame_indices[positions]]
    renders = preview.render_views(bpy.context.scene, camera,
                                   [round(frame) for frame in importer.blender_frames(motion)[positions]])
    with tempfile.TemporaryDirectory(prefix="ikol-frames-") as scratch:
        engine_process.run_engine(engine, ["frames", str(video), "--at", *map(str, indices), "-o", scratch,
                                           "--max-width", str(renders[0].shape[1])], log=lambda line: None)
        frames = [preview.read_png(Path(scratch) / f"frame_{i:06d}.png") for i in indices]
    return preview.write_png(preview.compose(frames, renders), path)


@dataclass(frozen=True)
class RetargetRequest:
    """``--retarget RIG.blend[:OBJECT]`` with its ``--mapping``, checked before any work."""

    path: Path
    object_name: str | None
    mapping: str | dict[str, str]

    def settings(self) -> dict[str, Any]:
        """What a rerun must match (the rig file by content: an edited rig redoes the video)."""
        return {"rig": batch_manifest.file_sha256(self.path), "object": self.object_name, "mapping": self.mapping}


def _retarget_request(text: str | None, mapping: str) -> RetargetRequest | None:
    """Parses ``--retarget`` and ``--mapping``; a missing file or a bad mapping is a usage error."""
    if text is None:
        if mapping != "auto":
            raise UsageError("--mapping needs --retarget RIG.blend")
        return None
    name, separator, object_name = text.partition(".blend:")
    path = Path(name + ".blend" if separator else text)
    if path.suffix != ".blend" or not path.is_file():
        raise UsageError(f"--retarget: no such .blend file: {path}")
    if mapping.endswith(".json"):
        chosen: str | dict[str, str] = maps.load_mapping(mapping)
    elif mapping == "auto" or mapping in maps.BUILT_IN:
        chosen = mapping
    else:
        raise UsageError(f"--mapping must be auto, {', '.join(sorted(maps.BUILT_IN))} or a .json file, got {mapping!r}")
    try:
        retarget.check_rig_file(path, object_name or None, chosen)
    except (retarget.RetargetError, maps.MappingError) as error:
        raise UsageError(f"--retarget: {error}") from None
    return RetargetRequest(path, object_name or None, chosen)


def _expand_folders(paths: Sequence[Path]) -> list[Path]:
    """Each folder replaced by its videos (by suffix, sorted); files and missing paths kept."""
    videos = []
    for path in paths:
        if path.is_dir():
            found = sorted(child for child in path.iterdir() if child.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise UsageError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in the folder {path}")
            videos.extend(found)
        else:
            videos.append(path)
    return videos


def _check_distinct_stems(videos: Sequence[Path], output: Path) -> None:
    stems: dict[str, Path] = {}
    for video in videos:
        if video.stem in stems:
            raise UsageError(f"{stems[video.stem]} and {video} would both write {video.stem}.* in {output}; "
                             f"rename one or convert them separately")
        stems[video.stem] = video


def _output_folder(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the output folder {path}: {error.strerror or error}") from error
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write into the output folder {path}")
    return path.resolve()


def _enable_exporters(exports: Sequence[Export]) -> None:
    """Blender ships the exporters as core add-ons, enabled by default; a user may have turned one off."""
    for export in exports:
        if not addon_utils.check(export.addon)[1] and addon_utils.enable(export.addon, default_set=True) is None:
            raise UsageError(f"Blender's {export.flag.upper()} exporter (add-on {export.addon}) cannot be enabled")


def _reason(error: Exception) -> str:
    """One line: the message alone for expected failures, with the type for anything else."""
    lines = str(error).strip().splitlines()
    if lines and isinstance(error, (OSError, ValueError, RuntimeError)):  # EngineError is a RuntimeError
        return lines[0]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _say(text: str) -> None:
    print(text, flush=True)


def _report(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _exit(code: int) -> None:
    """Ends the ``python -m`` process with ``code``.

    bpy 4.2 as a module crashes in its exit handlers once the glTF exporter has been
    imported (it frees Python-made UI types after Python has shut down): a finished batch
    would exit with 139. Every output is complete and renamed by now, so 4.2 skips those
    handlers, removing Blender's session temp folder itself.
    """
    if bpy.app.version >= (4, 3):
        sys.exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    shutil.rmtree(bpy.app.tempdir, ignore_errors=True)
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
