"""The headless batch on a Ray cluster: each video's analysis is a Ray task.

``python -m ikol_blender.batch ... --ray local`` starts a Ray instance on this machine for
the run and stops it after; ``--ray HOST:PORT`` joins a running cluster. A task runs the
engine as a subprocess on whichever node Ray picks (one GPU a task where the cluster has
GPUs, one CPU otherwise) and hands the motion file back as bytes; the driver writes it
and builds the rig, the .blend and the exports itself, one video at a time, as results
come in (why on the driver: see the README, "Batch conversion on a Ray cluster").

The driver ships its own ``ikol_blender`` (and, from a checkout, ``ikol_engine``) to the
workers, so they run the code the driver runs. The videos and the engine Python must be
at the same path on every node (a shared file system, one image); the outputs need not
be, only the driver writes them.

A worker that dies mid-task is retried up to ``max_retries`` times; an engine failure
(a corrupt video) is not retried and fails that video alone. Ctrl-C cancels every task
still queued or running (the running ones stop their engine) and is re-raised.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .engine import process as engine_process

LOCAL = "local"
# A running task notices a cancel at the engine's next output line, then gives the
# engine up to 5 s to stop.
_CANCEL_GRACE_S = 15.0
_REACH_TIMEOUT_S = 5.0
INSTALL_HINT = "--ray needs Ray in this Python: pip install 'ikol-mocap[cluster]' (ray[default]==2.60.0)"


class ClusterUnavailable(Exception):
    """Ray is not installed in the driver's Python, or the cluster's address does not answer."""


class AnalysisFailed(RuntimeError):
    """The engine failed on one video; the message is the engine's (picklable, unlike EngineError)."""


@dataclass(frozen=True)
class Job:
    """One video to analyse; ``tag`` prefixes its report lines (``[3/10] clip.mp4``)."""

    tag: str
    video: Path


@dataclass(frozen=True)
class Analysis:
    """What a task sends back: the motion file's bytes, where and how long it ran."""

    motion: bytes
    node: str
    seconds: float


#: Builds a video's outputs from its motion file's bytes (on the driver); returns a report line.
Finish = Callable[[Job, bytes], str]


def check_cluster(address: str) -> None:
    """Raises ClusterUnavailable when Ray cannot be imported (with the install line) or
    nothing answers at a ``HOST:PORT`` address (Ray itself would wait for minutes)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ClusterUnavailable(INSTALL_HINT) from None
    if address == LOCAL or "://" in address or address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnavailable(f"--ray takes '{LOCAL}' or a cluster's HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_REACH_TIMEOUT_S).close()
    except OSError as error:
        raise ClusterUnavailable(f"no Ray cluster answers at {address}: {error.strerror or error}") from None


def analyze(engine: engine_process.Engine, video: str, options: engine_process.AnalyzeOptions) -> Analysis:
    """The task body, run on a worker: ``ikol-engine analyze`` into a scratch folder."""
    import ray

    started = time.monotonic()
    if engine.source is not None:  # a vendored engine: the copy shipped to this worker, not the driver's folder
        engine = dataclasses.replace(engine, source=Path(engine_process.__file__).resolve().parent / "vendor")
    with tempfile.TemporaryDirectory(prefix="ikol-task-") as scratch:
        motion = Path(scratch) / f"{Path(video).stem}.npz"
        try:
            engine_process.run_analyze(engine, video, motion, options, log=lambda line: None)
        except engine_process.EngineError as error:
            raise AnalysisFailed(str(error)) from None
        return Analysis(motion.read_bytes(), ray.util.get_node_ip_address(), time.monotonic() - started)


def convert_all(address: str, jobs: Sequence[Job], engine: engine_process.Engine,
                options: engine_process.AnalyzeOptions, finish: Finish, max_retries: int,
                say: Callable[[str], None], report: Callable[[str], None]) -> list[Job]:
    """Analyses every job on the cluster at ``address`` (or ``local``) and finishes each on
    the driver as it completes; returns the jobs that failed.

    ``say`` gets each video's lines (stdout in the batch), ``report`` the cluster's
    progress and each failure (stderr).
    """
    import ray

    _connect(ray, address, engine)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        report(f"cluster: {len(jobs)} videos on {len(ray.nodes())} node(s), {int(resources.get('CPU', 0))} CPUs, "
               f"{gpus} GPUs")
        wants_gpu = gpus > 0 and options.device != "cpu"
        task = ray.remote(analyze).options(num_gpus=1 if wants_gpu else 0, num_cpus=1, max_retries=max_retries,
                                           retry_exceptions=False)
        # Absolute: a worker's working folder is not the driver's.
        running = {task.remote(engine, str(job.video.resolve()), options): job for job in jobs}
        failed: list[Job] = []
        try:
            while running:
                (ref,), _ = ray.wait(list(running), num_returns=1)
                job = running.pop(ref)
                try:
                    line = _finish_one(ray, ref, job, finish)
                except Exception as error:  # one bad video must not stop the others
                    failed.append(job)
                    report(f"{job.tag}: failed: {error}")
                else:
                    say(f"{job.tag}: {line}")
                done = len(jobs) - len(running)
                report(f"cluster: {done}/{len(jobs)} done, {len(failed)} failed")
        except KeyboardInterrupt:
            for ref in running:
                ray.cancel(ref)  # not forced: a running task stops its engine child and drops its scratch folder
            # Leaving at once would end the job, and Ray would kill those workers before they had.
            if running:
                ray.wait(list(running), num_returns=len(running), timeout=_CANCEL_GRACE_S)
            raise
        return failed
    finally:
        ray.shutdown()  # for "local" this also stops the instance started for the run


def _finish_one(ray, ref, job: Job, finish: Finish) -> str:
    try:
        analysis: Analysis = ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        raise RuntimeError(_first_line(cause) if isinstance(cause, AnalysisFailed)
                           else f"{type(cause).__name__}: {_first_line(cause)}") from None
    except ray.exceptions.RayError as error:  # the worker or its node died more often than retried
        raise RuntimeError(f"{type(error).__name__}: {_first_line(error)}") from None
    where = f"analysed on {analysis.node} in {analysis.seconds:.1f} s"
    return f"{where}; {finish(job, analysis.motion)}"


def _connect(ray, address: str, engine: engine_process.Engine) -> None:
    modules = [str(Path(__file__).resolve().parent)]
    if engine.source is None and (spec := importlib.util.find_spec("ikol_engine")) is not None and spec.origin:
        # A checkout: workers get this engine source first on PYTHONPATH, which the
        # engine subprocess inherits; a vendored engine travels inside ikol_blender.
        modules.append(str(Path(spec.origin).parent))
    settings = dict(runtime_env={"py_modules": modules}, logging_level=logging.WARNING, log_to_driver=False,
                    include_dashboard=False)
    if address == LOCAL:
        ray.init(address=LOCAL, num_cpus=_cpu_count(), **settings)
    else:
        settings.pop("include_dashboard")  # only for an instance started here
        ray.init(address=address, **settings)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__

