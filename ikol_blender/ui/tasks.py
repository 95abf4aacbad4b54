"""The UI's long jobs (finding the people in a video, importing it, refining a rig) as objects a caller ticks.

Each task sends its request through the :class:`~ikol_blender.engine.jobs.EngineSession`, is ticked
(from a modal operator's timer, or in a loop where no window exists), and on its job's
last event does its one change to the scene on the main thread, or none: a failed or
cancelled job leaves the scene exactly as it was. Ticking returns None while the engine
works, then an :class:`Outcome` for the operator to report.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import bpy

from ..engine.jobs import EngineJob, EngineSession, JobPhase
from ..engine.link import MotionFileError, read_motion
from ..scene.importer import MOTION_PROPERTY, import_motion, import_motions, rekey_motion, video_note

PREVIOUS_RESIDUAL_PROPERTY = "ikol_previous_residual_mm"
#: The image holding the last Detect People contact sheet (replaced by the next).
SHEET_IMAGE = "IKOL People"
_STATUS = {"people": "finding the people", "regress": "following the person", "solve": "solving IK"}


class Outcome(NamedTuple):
    """What an operator returns and reports: ``status`` "FINISHED" or "CANCELLED",
    ``level`` "INFO", "WARNING" or "ERROR", and the message."""

    status: str
    level: str
    message: str


def motion_path(folder: Path, stem: str) -> Path:
    """A new motion file name in ``folder``: never an existing file, so no result is lost."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        path = folder / (f"{stem}_{stamp}.npz" if attempt == 0 else f"{stem}_{stamp}_{attempt}.npz")
        if not path.exists():
            return path
    raise FileExistsError(f"no free motion file name for {stem} in {folder}")


@dataclass
class _Task:
    session: EngineSession
    job: EngineJob | None = field(default=None, init=False)

    @property
    def fraction(self) -> float:
        return self.job.fraction if self.job else 0.0

    @property
    def status(self) -> str:
        if self.job is None:
            return "starting"
        if self.job.phase is JobPhase.CANCELLING:
            return "cancelling..."
        return _STATUS.get(self.job.stage, "starting the engine")

    def cancel(self) -> None:
        if self.job is not None:
            self.session.cancel(self.job)

    def tick(self, context: bpy.types.Context) -> Outcome | None:
        """Hands the engine's events on; the outcome once the job is over, else None."""
        self.session.pump()
        if self.job is None or not self.job.finished:
            return None
        job = self.job
        if job.phase is JobPhase.SUCCEEDED and job.cancel_requested:
            # The engine finished before it saw the cancel: the user still wants nothing.
            self.discard(job.result)
            return Outcome("CANCELLED", "INFO", f"{self.label} cancelled; nothing was changed")
        if job.phase is JobPhase.CANCELLED:
            return Outcome("CANCELLED", "INFO", f"{self.label} cancelled; nothing was changed")
        if job.phase is JobPhase.FAILED:
            return Outcome("CANCELLED", "ERROR", f"{self.label} failed: {job.message}")
        try:
            return self.apply(context, job.result)
        except (MotionFileError, ValueError, RuntimeError) as error:
            return Outcome("CANCELLED", "ERROR", f"{self.label} failed: {error}")

    def discard(self, result: dict[str, Any]) -> None:
        """Deletes what the engine wrote for a job the user cancelled too late."""
        Path(self.output).unlink(missing_ok=True)


@dataclass
class DetectPeopleTask(_Task):
    """Video -> the people in it, listed and drawn numbered on a contact sheet (engine) ->
    ``scene.ikol_people`` (the picker) and the sheet as the image :data:`SHEET_IMAGE`."""

    video: Path = Path()
    output: Path = Path()  # the contact sheet (PNG)
    options: dict[str, Any] = field(default_factory=dict)  # start_s, end_s, fps
    label: str = "Detect People"

    def start(self) -> None:
        self.job = self.session.submit("people", video=str(self.video), sheet=str(self.output), **self.options)

    def apply(self, context: bpy.types.Context, result: dict[str, Any]) -> Outcome:
        picker = context.scene.ikol_people
        picker.video = picker.detected_for = str(self.video)
        picker.people.clear()
        for person in result["people"]:
            item = picker.people.add()
            item.id, item.frames, item.label = person["id"], person["frames"], person["description"]
        picker.person = "auto"
        old = bpy.data.images.get(SHEET_IMAGE)
        if old is not None:
            bpy.data.images.remove(old)
        image = bpy.data.images.load(str(self.output), check_existing=False)
        image.name = SHEET_IMAGE
        count = len(result["people"])
        if count == 0:
            return Outcome("FINISHED", "WARNING", f"Nobody was found in {self.video.name}")
        return Outcome("FINISHED", "INFO", f"{count} {'person' if count == 1 else 'people'} in {self.video.name}; "
                                           "pick one (or all) under People, then Import")


@dataclass
class ImportVideoTask(_Task):
    """Video -> motion file (engine) -> new rig in the scene (Blender)."""

    video: Path = Path()
    output: Path = Path()
    options: dict[str, Any] = field(default_factory=dict)
    solve: dict[str, Any] = field(default_factory=dict)
    body: str | None = None
    label: str = "Import"

    @property
    def everyone(self) -> bool:
        """``person`` "all": ``output`` is then a folder, with one motion file per person."""
        return self.options.get("person") == "all"

    def start(self) -> None:
        """Sends the analysis (raises EngineGone/EngineUnavailable if no engine runs)."""
        self.job = self.session.submit("analyze", video=str(self.video), output=str(self.output),
                                       options=self.options, solve=self.solve, body=self.body)

    def apply(self, context: bpy.types.Context, result: dict[str, Any]) -> Outcome:
        if self.everyone:
            paths = [Path(person["output"]) for person in result["people"]]
            armatures = import_motions(context, paths, video=self.video)
            posed = ", ".join(f"{a.name} ({p['valid']} of {p['frames']} frames)"
                              for a, p in zip(armatures, result["people"]))
            message = f"Imported {len(armatures)} people from {self.video.name}, one camera: {posed}"
        else:
            paths = [Path(self.output)]
            armature = import_motion(context, self.output, video=self.video)
            message = (f"Imported {self.video.name} as {armature.name}: {result['valid']} of {result['frames']} "
                       f"frames posed, mean IK residual {result['residual_mm']:.1f} mm")
        if note := video_note(read_motion(paths[0])):
            return Outcome("FINISHED", "WARNING", f"{message}; {note}")
        return Outcome("FINISHED", "INFO", message)

    def discard(self, result: dict[str, Any]) -> None:
        if not self.everyone:
            super().discard(result)
            return
        for person in result.get("people", []):
            Path(person["output"]).unlink(missing_ok=True)


@dataclass
class RefineTask(_Task):
    """A rig's motion file re-solved with new settings (engine) -> its keys rewritten (Blender).

    The re-solved motion goes to a new file beside the old, so undoing the refine (which
    restores the keys and the rig's pointer to its file) finds the old file intact.

    Attributes:
        source: the file to refine instead of the rig's own: a copy of it with the
            animator's contacts, which only the engine reads; it is deleted once the job
            is over (or could not be sent). None refines the rig's file.
    """

    armature_name: str = ""
    output: Path = Path()
    solve: dict[str, Any] = field(default_factory=dict)
    body: str | None = None
    source: Path | None = None
    label: str = "Refine"

    def start(self) -> None:
        source = self.source if self.source is not None else bpy.data.objects[self.armature_name][MOTION_PROPERTY]
        try:
            self.job = self.session.submit("refine", motion=str(source), output=str(self.output),
                                           solve=self.solve, body=self.body)
        except BaseException:
            self._remove_source()
            raise

    def tick(self, context: bpy.types.Context) -> Outcome | None:
        outcome = super().tick(context)
        if outcome is not None:
            self._remove_source()
        return outcome

    def _remove_source(self) -> None:
        if self.source is not None:
            Path(self.source).unlink(missing_ok=True)

    def apply(self, context: bpy.types.Context, result: dict[str, Any]) -> Outcome:
        armature = bpy.data.objects.get(self.armature_name)
        if armature is None:
            Path(self.output).unlink(missing_ok=True)
            raise ValueError(f"the rig {self.armature_name} was deleted while the engine worked")
        rekey_motion(armature, self.output)
        before, after = result["previous_residual_mm"], result["residual_mm"]
        armature[PREVIOUS_RESIDUAL_PROPERTY] = before
        return Outcome("FINISHED", "INFO", f"Refined {armature.name}: mean IK residual {before:.1f} -> "
                                           f"{after:.1f} mm")
