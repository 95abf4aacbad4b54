"""The ``ikol-engine`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import torch

from . import __version__


def _info(args: argparse.Namespace) -> int:
    from .body import BodyModel
    from .devices import resolve_device

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ikol-engine", description="IKOL Mocap engine: video to SMPL motion.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="versions, compute device and body model")
    info.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    info.add_argument("--body", default=None, help="SMPL .pkl or SMPL-layout .npz (default: bundled body)")
    info.set_defaults(run=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:  # bad input: say what, no traceback
        print(f"ikol-engine: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
