"""The ``ikol-engine`` command line."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from . import __version__
from .common.library_output import library_output_to
from .motion import CONTACT_NAMES
from .regressors.base import RegressorError
from .track.options import SolveOptions


def _info(args: argparse.Namespace) -> int:
    from .body import BodyModel
    from .common.devices import resolve_device

    body = BodyModel(args.body)
    device = resolve_device(args.device)
    info = {
        "engine": __version__,
        "torch": torch.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "body": str(body.path),
        "vertices": int(len(body.template_vertices)),
        "num_betas": body.num_betas,
    }
    print(json.dumps(info, indent=2))
    return 0


class ProgressBar:
    """Progress on stderr: a bar redrawn in place on a terminal, a line per tenth otherwise."""

    _LABELS = {"people": "people", "regress": "keypoints", "solve": "inverse kinematics"}

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr  # looked up now: the library-output redirect replaces it
        self.live = self.stream.isatty()
        self.stage: str | None = None
        self.last_tenth = -1

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            if self.stage is not None and self.live:
                self.stream.write("\n")
            self.stage, self.last_tenth = stage, -1
        fraction = done / total if total else 1.0
        label = self._LABELS.get(stage, stage)
        if self.live:
            filled = int(30 * fraction)
            self.stream.write(f"\r{label:>18} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
            if done >= total:
                self.stream.write("\n")
                self.stage = None
        elif int(10 * fraction) > self.last_tenth:
            self.last_tenth = int(10 * fraction)
            self.stream.write(f"{label}: {done}/{total} ({100 * fraction:.0f}%)\n")
        self.stream.flush()


def _summary(output: str, motion, solution) -> None:
    valid = solution.valid
    info = solution.info
    residual = float(np.mean(motion.residual_mm[valid])) if valid.any() else float("nan")
    print(f"wrote {output}: {len(valid)} frames at {motion.fps:g} fps, person in {info['detected']}, "
          f"{info['interpolated']} interpolated, {info['held']} held (not keyed), {info['swapped']} left/right "
          f"swaps fixed; mean IK residual {residual:.1f} mm; floor {'found' if info['floor'] else 'not found'}")
    if info["shape_fit_mm"]:
        worst = max(info["shape_fit_mm"], key=lambda name: abs(info["shape_fit_mm"][name]))
        print(f"body shape ({info['shape']}): the clip's bone lengths within {abs(info['shape_fit_mm'][worst]):.1f} mm "
              f"(worst {worst}); every bone in the motion file's options, result.shape_fit_mm")
    camera = info["camera"]
    print(f"camera: {camera['fov_deg']:.1f} degree field of view ({camera['source']}); feet resting in "
          + ", ".join(f"{name} {frames}" for name, frames in zip(CONTACT_NAMES, info["contact_frames"])) + " frames")
    if "hands" in info:
        print("hands: " + "; ".join(
            f"{side} seen in {hand['seen']} frames" + (f", wrist turned {hand['wrist_turn_deg_median']:.0f} degrees "
                                                       f"to it (median)" if hand["seen"] else "")
            for side, hand in info["hands"].items()))


def _analyze(args: argparse.Namespace) -> int:
    from .body import BodyModel
    from .pipeline import AnalyzeOptions, analyze, analyze_people

    # Every setting is checked here, before the video is opened.
    options = AnalyzeOptions(start_s=args.start, end_s=args.end, stride=args.stride,
                             model_complexity=args.model_complexity, regressor=args.regressor,
                             batch_size=args.batch_size, fps=args.fps, person=args.person, hands=args.hands,
                             hand_step=args.hand_step)
    solve_options = SolveOptions(**_solve_changes(args))
    body = BodyModel(args.body) if args.body else None
    if options.choice.mode == "all":
        folder = Path(args.output)
        if folder.suffix.lower() == ".npz" or folder.is_file():
            raise ValueError(f"--person all writes one file per person: -o must be a folder, got {folder}")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot make the output folder {folder}: {error.strerror or error}") from None
        with _library_output(args, str(folder / Path(args.video).stem)):
            written = analyze_people(args.video, folder, options, solve_options, body, ProgressBar())
        for output, motion, solution in written:
            _summary(str(output), motion, solution)
        return 0
    with _library_output(args, args.output):
        motion, solution = analyze(args.video, args.output, options, solve_options, body, ProgressBar())
    _summary(args.output, motion, solution)
    return 0


def _people(args: argparse.Namespace) -> int:
    from .people import people_table
    from .people.scan import scan_people, write_scan_sheet
    from .pipeline import AnalyzeOptions

    AnalyzeOptions(start_s=args.start, end_s=args.end, fps=args.fps)  # checked before the video is opened
    with contextlib.ExitStack() as stack:
        if args.sheet:
            stack.enter_context(_library_output(args, args.sheet))
        elif not args.verbose:  # no output file to put a log beside: the libraries' lines are dropped
            stack.enter_context(library_output_to(Path(stack.enter_context(tempfile.TemporaryDirectory()))
                                                  / "people.log"))
        scan = scan_people(args.video, args.start, args.end, args.fps, ProgressBar())
        if args.sheet:
            write_scan_sheet(args.video, scan, args.sheet, args.fps)
    if args.json:
        print(json.dumps(scan.as_json()))
    else:
        print(f"{len(scan.tracks)} people in frames {scan.start}-{scan.end - 1} of {args.video} "
              f"(detector every {scan.step} frame(s)):")
        for person in scan.as_json():
            print(f"  person {person['id']}: {person['description']}, detected in {person['frames']} frames, "
                  f"first box {person['box']}")
        if not scan.tracks:
            print(people_table(scan.tracks))
    return 0


def _library_output(args: argparse.Namespace, output: str) -> contextlib.AbstractContextManager:
    """The libraries' output into ``<output stem>.log`` beside ``output``, unless ``--verbose``."""
    if args.verbose:
        return contextlib.nullcontext()
    log = Path(output).with_suffix(".log")
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(library_output_to(log))
    except OSError as error:
        raise ValueError(f"cannot write the log file {log}: {error.strerror or error}") from None
    return stack


def _export_onnx(args: argparse.Namespace) -> int:
    from .regressors.hybrik.export import export_checkpoint

    report = export_checkpoint(args.checkpoint, args.output)
    print(f"wrote {report.path}: HybrIK ResNet-34 regressor, dynamic batch; onnxruntime matches torch "
          f"within {report.max_difference:.1e}")
    return 0


def _frames(args: argparse.Namespace) -> int:
    from .video.frames import export_frames

    for path in export_frames(args.video, args.at, args.output, args.max_width):
        print(path)
    return 0


def _refine(args: argparse.Namespace) -> int:
    from .body import BodyModel
    from .pipeline import refine

    body = BodyModel(args.body) if args.body else None
    output = args.output or args.motion
    with _library_output(args, output):
        motion, solution = refine(args.motion, output, _solve_changes(args), body, ProgressBar())
    _summary(output, motion, solution)
    return 0


def _add_solve_arguments(parser: argparse.ArgumentParser, keep_recorded: bool = False) -> None:
    """The IK settings, each stored under its SolveOptions field name.

    With ``keep_recorded`` (refine) an option not given is left out of the namespace, so
    the motion file's own setting stays; otherwise it takes SolveOptions' default.
    """
    defaults = SolveOptions()

    def default(field: str) -> Any:
        return argparse.SUPPRESS if keep_recorded else getattr(defaults, field)

    kept = " (default: as the file's run)" if keep_recorded else " (default %(default)s)"
    group = parser.add_argument_group("inverse kinematics")
    group.add_argument("--iterations", type=int, default=default("iterations"),
                       help="most Gauss-Newton steps per pass" + kept)
    group.add_argument("--smoothing", type=float, default=default("smoothing"),
                       help="temporal smoothing, 0 (off) to about 3" + kept)
    group.add_argument("--beta", type=float, default=default("beta"),
                       help="one-euro speed coefficient: higher keeps fast moves sharper" + kept)
    for name in ("torso", "arms", "legs", "head"):
        group.add_argument(f"--{name}", type=float, default=default(name), help=f"weight of the {name} keypoints" + kept)
    group.add_argument("--twist-weight", dest="twist_weight", type=float, default=default("twist_weight"),
                       help="weight of the twist seen in hands, feet and head" + kept)
    group.add_argument("--fov", dest="fov_deg", type=_fov, default=default("fov_deg"),
                       help="camera's horizontal field of view, degrees, or 'auto' to estimate it from the "
                            "clip" + kept)
    group.add_argument("--focal-mm", dest="focal_mm", type=float, default=default("focal_mm"),
                       help="the lens's focal length, mm (replaces --fov)" + kept)
    group.add_argument("--sensor-mm", dest="sensor_mm", type=float, default=default("sensor_mm"),
                       help="the sensor's width, mm, for --focal-mm (36: full frame)" + kept)
    group.add_argument("--reprojection", type=float, default=default("reprojection"),
                       help="weight of the keypoints' image positions against their 3D ones (0: 3D only)" + kept)
    group.add_argument("--foot-lock", dest="foot_lock", type=float, default=default("foot_lock"),
                       help="how hard resting feet are held where they rest (0: free)" + kept)
    group.add_argument("--contact-speed", dest="contact_speed", type=float, default=default("contact_speed"),
                       help="m/s below which a foot point may rest" + kept)
    group.add_argument("--contact-image-speed", dest="contact_image_speed", type=float,
                       default=default("contact_image_speed"),
                       help="body heights per second in the image below which a foot point may rest" + kept)
    group.add_argument("--contact-height", dest="contact_height", type=float, default=default("contact_height"),
                       help="m above the floor below which a foot point may rest" + kept)
    if keep_recorded:
        group.add_argument("--keep-contacts", dest="keep_contacts", action="store_true", default=argparse.SUPPRESS,
                           help="use the file's foot contacts (e.g. edited in Blender) instead of finding them")
    group.add_argument("--no-floor", dest="level_floor", action="store_false", default=default("level_floor"),
                       help="keep the camera's axes; don't level the floor")
    group.add_argument("--no-hands", dest="hands", action="store_false", default=default("hands"),
                       help="the body alone: no hand landmarks, no fingers, the wrists as the body has them")
    group.add_argument("--device", default=default("device"), help="auto, cpu, cuda or cuda:N" + kept)
    group.add_argument("--body", default=None, help="SMPL .pkl or SMPL-layout .npz (default: bundled body)")
    parser.add_argument("--verbose", action="store_true",
                        help="show the libraries' own messages (TensorFlow Lite, smplx) here rather than in "
                             "the log file beside the output (OUTPUT with .log)")


def _fov(text: str) -> float | None:
    """--fov's value: degrees, or None for 'auto'."""
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected degrees or 'auto', got {text!r}") from None


def _solve_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The SolveOptions fields the namespace holds."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(SolveOptions)
            if hasattr(args, field.name)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikol-engine", description="IKOL Mocap engine: video to SMPL motion.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="versions, compute device and body model")
    info.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    info.add_argument("--body", default=None, help="SMPL .pkl or SMPL-layout .npz (default: bundled body)")
    info.set_defaults(run=_info)

    analyze = commands.add_parser("analyze", help="video to motion file")
    analyze.add_argument("video", help="video file (anything OpenCV reads)")
    analyze.add_argument("-o", "--output", required=True, help="motion file to write (.npz)")
    analyze.add_argument("--start", type=float, default=None, help="first second to analyse")
    analyze.add_argument("--end", type=float, default=None, help="second to stop at")
    analyze.add_argument("--stride", type=int, default=1, help="analyse every n-th frame")
    analyze.add_argument("--model-complexity", type=int, choices=(0, 1, 2), default=1,
                         help="BlazePose model: 0 lite, 1 full (bundled), 2 heavy")
    analyze.add_argument("--regressor", default="blazepose",
                         help="blazepose (default), or onnx:PATH for the paper's regressor exported by export-onnx")
    analyze.add_argument("--fps", type=float, default=None,
                         help="the video's real frame rate, for a file whose container states a wrong one "
                              "(frames are then timed by their number)")
    analyze.add_argument("--batch-size", type=int, default=None,
                         help="frames per network run of the onnx regressor (default: 64 on CUDA, 1 on the CPU)")
    analyze.add_argument("--person", default="auto",
                         help="whom to follow: auto (present longest), an id from `people`, X,Y (whose box holds "
                              "that pixel in the first frame anyone is seen), or all (one file per person: -o is "
                              "then a folder of VIDEO-STEM_personID.npz)")
    analyze.add_argument("--hand-step", type=int, default=1,
                         help="look for the hands in every N-th frame, bridged between (2: half the hands' cost, "
                              "jerkier fingers)")
    _add_solve_arguments(analyze)
    analyze.set_defaults(run=_analyze)

    people = commands.add_parser("people", help="list the people in a video (ids for analyze --person)")
    people.add_argument("video", help="video file")
    people.add_argument("--start", type=float, default=None, help="first second to look at")
    people.add_argument("--end", type=float, default=None, help="second to stop at")
    people.add_argument("--fps", type=float, default=None, help="the video's real frame rate (see analyze)")
    people.add_argument("--json", action="store_true",
                        help="print a JSON list of {id, frames, first_frame, last_frame, box, description}")
    people.add_argument("--sheet", default=None, help="write a contact sheet (PNG) with numbered boxes here")
    people.add_argument("--verbose", action="store_true", help="show the libraries' own messages")
    people.set_defaults(run=_people)

    export = commands.add_parser("export-onnx", help="write a HybrIK/IKOL ResNet-34 checkpoint as ONNX")
    export.add_argument("--checkpoint", required=True, help="the released .pth checkpoint (downloaded yourself)")
    export.add_argument("-o", "--output", required=True, help="ONNX file to write")
    export.set_defaults(run=_export_onnx)

    refine = commands.add_parser("refine", help="re-solve a motion file's keypoints with new IK settings")
    refine.add_argument("motion", help="motion file written by analyze")
    refine.add_argument("-o", "--output", default=None, help="motion file to write (default: replace the input)")
    _add_solve_arguments(refine, keep_recorded=True)
    refine.set_defaults(run=_refine)

    frames = commands.add_parser("frames", help="write chosen video frames as PNG files (for previews)")
    frames.add_argument("video", help="video file")
    frames.add_argument("--at", type=int, nargs="+", required=True, metavar="INDEX", help="frame numbers, from 0")
    frames.add_argument("-o", "--output", required=True, help="folder for frame_NNNNNN.png")
    frames.add_argument("--max-width", type=int, default=None, help="scale wider frames down to this width")
    frames.set_defaults(run=_frames)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, RegressorError) as error:  # bad input: say what, no traceback
        print(f"ikol-engine: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nikol-engine: interrupted; nothing was written and any earlier result is untouched",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
