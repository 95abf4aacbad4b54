"""Operators: find the people in a video, import it, refine a rig, restart the engine.

Detect People, Import and Refine run modally: a timer ticks their task (:mod:`.tasks`) while Blender
stays responsive, the status bar and the IKOL panel show progress, and Esc cancels. In
background mode, or called where no window exists, modal code never runs: they then
wait for the engine in place (the headless path is synchronous).
"""
from __future__ import annotations

from pathlib import Path

import bpy

from .. import settings
from ..engine.client import EngineClient, EngineGone
from ..engine.devices import DEVICE_ITEMS
from ..engine.jobs import EngineSession
from ..engine.process import EngineUnavailable, check_person, resolve_engine
from ..engine.link import MotionFileError, read_motion
from ..scene.contacts import edited_contacts, write_with_contacts
from ..scene.importer import MOTION_PROPERTY, blender_frames
from .tasks import DetectPeopleTask, ImportVideoTask, Outcome, RefineTask, motion_path

VIDEO_GLOB = "*.mp4;*.mov;*.avi;*.mkv;*.webm;*.m4v;*.mpg;*.mpeg;*.wmv"
TICK_S = 0.1


def _make_client() -> EngineClient:
    engine = resolve_engine(settings.engine_python())
    return EngineClient(engine.command([], module="ikol_engine.server"), engine.environment())


#: The engine server of this Blender session, started by the first request.
SESSION = EngineSession(make_client=_make_client)
#: Tasks in progress by kind ("import", "refine"), for the panel's progress bars.
RUNNING: dict[str, ImportVideoTask | RefineTask] = {}


def ikol_armature(context: bpy.types.Context) -> bpy.types.Object | None:
    """The active object if it is a rig imported by IKOL."""
    obj = context.active_object
    return obj if obj is not None and obj.type == "ARMATURE" and MOTION_PROPERTY in obj else None


def redraw(context: bpy.types.Context, area_types: frozenset[str] = frozenset({"VIEW_3D", "PROPERTIES"})) -> None:
    """Redraws the areas showing IKOL's state (panels draw only when asked)."""
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in area_types:
                area.tag_redraw()


def begin_modal(operator: bpy.types.Operator, context: bpy.types.Context) -> set[str]:
    """Makes ``operator`` modal, ticked by a timer, with the window's progress indicator on."""
    manager = context.window_manager
    operator.timer = manager.event_timer_add(TICK_S, window=context.window)
    manager.modal_handler_add(operator)
    manager.progress_begin(0, 100)
    return {"RUNNING_MODAL"}


def end_modal(operator: bpy.types.Operator, context: bpy.types.Context) -> None:
    context.window_manager.event_timer_remove(operator.timer)
    context.window_manager.progress_end()


class _EngineTaskOperator:
    """Runs ``self.task`` to its outcome: modal with a window, in place without one."""

    kind = ""

    def busy(self) -> bool:
        """True (and says so) while a task of this kind runs: only one at a time."""
        if self.kind in RUNNING:
            self.report({"ERROR"}, f"an IKOL {self.kind} is already running; wait for it or press Esc")
            return True
        return False

    def run(self, context: bpy.types.Context, task: DetectPeopleTask | ImportVideoTask | RefineTask) -> set[str]:
        if self.busy():
            return {"CANCELLED"}
        try:
            task.start()
        except (EngineGone, EngineUnavailable, OSError) as error:
            self.report({"ERROR"}, f"IKOL engine: {error}")
            return {"CANCELLED"}
        self.task = task
        if bpy.app.background or context.window is None:
            while (outcome := task.tick(context)) is None:
                task.session.pump_until(task.job, TICK_S)
            return self.conclude(outcome)
        RUNNING[self.kind] = task
        return begin_modal(self, context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            self.task.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        outcome = self.task.tick(context)
        manager = context.window_manager
        manager.progress_update(int(100 * self.task.fraction))
        if context.workspace is not None:
            context.workspace.status_text_set(
                f"IKOL {self.kind}: {self.task.status} {100 * self.task.fraction:.0f}% (Esc to cancel)")
        redraw(context)
        if outcome is None:
            return {"RUNNING_MODAL"}
        end_modal(self, context)
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        RUNNING.pop(self.kind, None)
        redraw(context)
        return self.conclude(outcome)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the operator itself (a file loaded, the window closed): the job is
        cancelled, nothing is imported, and the next import or refine may start."""
        self.task.cancel()
        end_modal(self, context)
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        RUNNING.pop(self.kind, None)

    def conclude(self, outcome: Outcome) -> set[str]:
        self.report({outcome.level}, outcome.message)
        return {outcome.status}


_DEVICE_ITEMS = [("PREFERENCE", "Default", "The device set in the add-on's preferences"),
                 *DEVICE_ITEMS]


class IKOL_OT_import_video(_EngineTaskOperator, bpy.types.Operator):
    """Turn a video of a person into a keyframed SMPL rig (runs the IKOL engine)"""

    bl_idname = "ikol.import_video"
    bl_label = "Video Motion (IKOL)"
    bl_options = {"UNDO"}
    kind = "import"

    filepath: bpy.props.StringProperty(name="Video", subtype="FILE_PATH")
    filter_glob: bpy.props.StringProperty(default=VIDEO_GLOB, options={"HIDDEN"})
    start: bpy.props.FloatProperty(name="Start (s)", min=0.0, default=0.0, description="First second to analyse")
    end: bpy.props.FloatProperty(name="End (s)", min=0.0, default=0.0,
                                 description="Second to stop at; 0 analyses to the end")
    device: bpy.props.EnumProperty(name="Device", items=_DEVICE_ITEMS)
    iterations: bpy.props.IntProperty(name="Iterations", min=0, max=100, default=5,
                                      description="Gauss-Newton steps of the IK")
    smoothing: bpy.props.FloatProperty(name="Smoothing", min=0.0, max=3.0, default=1.0,
                                       description="Temporal smoothing: 0 off, 1 default, up to 3")
    model_complexity: bpy.props.EnumProperty(
        name="Keypoint model", default="1",
        items=[("0", "Lite", "BlazePose lite (needs its model file)"), ("1", "Full", "BlazePose full (bundled)"),
               ("2", "Heavy", "BlazePose heavy (needs its model file)")])
    body: bpy.props.StringProperty(name="Body model", subtype="FILE_PATH",
                                   description="SMPL model file; empty uses the preferences' or the bundled body")
    fps: bpy.props.FloatProperty(name="Frame rate", min=0.0, max=1000.0, default=0.0,
                                 description="The video's real frame rate, for a file whose container states a "
                                             "wrong one; 0 uses the container's")
    person: bpy.props.StringProperty(
        name="Person", default="auto",
        description="Whom to follow: auto (present longest), a number from Detect People, X,Y (whose box holds "
                    "that pixel in the first frame anyone is seen), or all (one rig each, one camera)")
    hands: bpy.props.BoolProperty(
        name="Fingers", default=True,
        description="Find the hands too and key finger bones (about half again the time on the CPU); off: the "
                    "body alone")

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        video = Path(bpy.path.abspath(self.filepath))
        if not video.is_file():
            self.report({"ERROR"}, f"no video file at {video}")
            return {"CANCELLED"}
        if self.end and self.end <= self.start:
            self.report({"ERROR"}, "End must come after Start (or be 0 for the whole video)")
            return {"CANCELLED"}
        if self.fps and not 1.0 <= self.fps <= 1000.0:
            self.report({"ERROR"}, f"Frame rate must be 0 (the container's) or from 1 to 1000, got {self.fps:g}")
            return {"CANCELLED"}
        body = bpy.path.abspath(self.body) if self.body else settings.body_model()
        if body and not Path(body).is_file():
            self.report({"ERROR"}, f"no body model file at {body}")
            return {"CANCELLED"}
        person = self.person.strip().lower() or "auto"
        try:
            check_person(person)
        except ValueError as error:
            self.report({"ERROR"}, str(error).replace("--person", "Person"))
            return {"CANCELLED"}
        # The engine checks the rest (the device among them) before it opens the video.
        device = settings.default_device() if self.device == "PREFERENCE" else self.device
        try:
            output = motion_path(settings.motion_folder(), video.stem)
        except OSError as error:
            self.report({"ERROR"}, f"cannot write motion files there (Preferences > Motion files): {error}")
            return {"CANCELLED"}
        if person == "all":  # a new folder, named as the file would have been, for one file per person
            output = output.with_suffix("")
        task = ImportVideoTask(
            SESSION, video=video, output=output,
            options={"start_s": self.start or None, "end_s": self.end or None,
                     "model_complexity": int(self.model_complexity), "fps": self.fps or None, "person": person,
                     "hands": self.hands},
            solve={"iterations": self.iterations, "smoothing": self.smoothing, "device": device, "hands": self.hands},
            body=body)
        return self.run(context, task)


class IKOL_OT_detect_people(_EngineTaskOperator, bpy.types.Operator):
    """Find everyone in the People panel's video: a numbered contact sheet and a picker for Import"""

    bl_idname = "ikol.detect_people"
    bl_label = "Detect People"
    kind = "people"

    def execute(self, context: bpy.types.Context) -> set[str]:
        video = Path(bpy.path.abspath(context.scene.ikol_people.video))
        if not video.is_file():
            self.report({"ERROR"}, f"no video file at {video}; choose one under People")
            return {"CANCELLED"}
        try:
            folder = settings.motion_folder()
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            self.report({"ERROR"}, f"cannot write there (Preferences > Motion files): {error}")
            return {"CANCELLED"}
        return self.run(context, DetectPeopleTask(SESSION, video=video, output=folder / f"{video.stem}_people.png"))


class IKOL_OT_import_picked(bpy.types.Operator):
    """Import the People panel's video, following the person picked there"""

    bl_idname = "ikol.import_picked"
    bl_label = "Import Video"
    bl_options = {"UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(context.scene.ikol_people.video)

    def execute(self, context: bpy.types.Context) -> set[str]:
        picker = context.scene.ikol_people
        video = bpy.path.abspath(picker.video)
        if picker.person not in ("auto", "all") and video != picker.detected_for:
            # Ids are a video's own: another video's person 2 is someone else.
            self.report({"ERROR"}, "the people listed were found in another video: Detect People again")
            return {"CANCELLED"}
        return bpy.ops.ikol.import_video("EXEC_DEFAULT", filepath=video, person=picker.person)


class IKOL_OT_refine(_EngineTaskOperator, bpy.types.Operator):
    """Re-solve the active IKOL rig's IK with the panel's settings and rewrite its keys"""

    bl_idname = "ikol.refine"
    bl_label = "Refine IK"
    bl_options = {"UNDO"}
    kind = "refine"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return ikol_armature(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        if self.busy():  # before any file is written for a refine that would not start
            return {"CANCELLED"}
        armature = ikol_armature(context)
        source = Path(armature[MOTION_PROPERTY])
        if not source.is_file():
            self.report({"ERROR"}, f"the rig's motion file {source} is gone; import the video again")
            return {"CANCELLED"}
        try:
            output = motion_path(source.parent, source.stem.split("_refined")[0] + "_refined")
        except OSError as error:
            self.report({"ERROR"}, f"cannot write the refined motion beside {source}: {error}")
            return {"CANCELLED"}
        refine = armature.ikol_refine
        edited = None
        if refine.keep_contacts:
            # The engine reads contacts from the file it refines: the rig's file, with the curves' contacts.
            try:
                motion = read_motion(source)
                edited = write_with_contacts(motion, edited_contacts(armature, motion, blender_frames(motion)),
                                             output.with_name(f"{output.stem}_contacts.npz"))
            except (MotionFileError, ValueError, OSError) as error:
                self.report({"ERROR"}, f"cannot refine with the edited contacts: {error}")
                return {"CANCELLED"}
        task = RefineTask(SESSION, armature_name=armature.name, output=output,
                          solve=refine.solve_options(settings.default_device()), body=settings.body_model(),
                          source=edited)
        return self.run(context, task)


class IKOL_OT_restart_engine(bpy.types.Operator):
    """Stop the IKOL engine; the next import or refine starts a fresh one"""

    bl_idname = "ikol.restart_engine"
    bl_label = "Restart Engine"

    def execute(self, context: bpy.types.Context) -> set[str]:
        if RUNNING:
            self.report({"ERROR"}, "wait for the running import or refine to end, or press Esc")
            return {"CANCELLED"}
        SESSION.restart()
        self.report({"INFO"}, "IKOL engine stopped; the next request starts it again")
        return {"FINISHED"}


class IKOLRefineSettings(bpy.types.PropertyGroup):
    """The Refine panel's settings, kept on each IKOL rig.

    Each is the engine's ``SolveOptions`` field of the same name, with its default.
    """

    iterations: bpy.props.IntProperty(name="Iterations", min=0, max=100, default=5)
    smoothing: bpy.props.FloatProperty(name="Smoothing", min=0.0, max=3.0, default=1.0)
    torso: bpy.props.FloatProperty(name="Torso", min=0.0, max=10.0, default=1.0)
    arms: bpy.props.FloatProperty(name="Arms", min=0.0, max=10.0, default=1.0)
    legs: bpy.props.FloatProperty(name="Legs", min=0.0, max=10.0, default=1.0)
    head: bpy.props.FloatProperty(name="Head", min=0.0, max=10.0, default=1.0)
    twist_weight: bpy.props.FloatProperty(name="Twist confidence", min=0.0, max=10.0, default=1.0,
                                          description="Weight of the twist seen in hands, feet and head")
    reprojection: bpy.props.FloatProperty(
        name="Image keypoints", min=0.0, max=20.0, default=2.0,
        description="Weight of the keypoints' pixels in the video against their 3D positions: higher keeps the "
                    "rig on the filmed person; 0 uses the 3D keypoints only")
    foot_lock: bpy.props.FloatProperty(
        name="Foot lock", min=0.0, max=1000.0, soft_max=300.0, default=100.0,
        description="How firmly a heel or toe resting on the floor is held where it rests, against foot "
                    "sliding; 0 leaves the feet free")
    contact_speed: bpy.props.FloatProperty(
        name="Contact speed", min=0.0, max=10.0, soft_max=2.0, default=0.35, step=1, precision=2,
        description="Metres per second: a heel or toe moving slower than this (and lower than Contact height) "
                    "starts resting on the floor")
    contact_image_speed: bpy.props.FloatProperty(
        name="Contact image speed", min=0.0, max=10.0, soft_max=1.0, default=0.12, step=1, precision=2,
        description="Body heights per second in the video: a heel or toe moving slower than this in the "
                    "picture starts resting")
    contact_height: bpy.props.FloatProperty(
        name="Contact height", min=0.0, max=1.0, soft_max=0.3, default=0.05, step=1, precision=3,
        description="Metres above the floor: a heel or toe higher than this never rests")
    keep_contacts: bpy.props.BoolProperty(
        name="Use edited contacts", default=False,
        description="Hold the feet where the rig's contact curves (its ikol_contact_* properties, edited in the "
                    "Graph Editor or Dope Sheet) say they rest, instead of detecting the contacts again")

    def solve_options(self, device: str) -> dict[str, float | int | str | bool]:
        """The engine's refine ``solve`` request: every setting of the panel, and ``device``."""
        return {"iterations": self.iterations, "smoothing": self.smoothing, "torso": self.torso, "arms": self.arms,
                "legs": self.legs, "head": self.head, "twist_weight": self.twist_weight,
                "reprojection": self.reprojection, "foot_lock": self.foot_lock, "contact_speed": self.contact_speed,
                "contact_image_speed": self.contact_image_speed, "contact_height": self.contact_height,
                "keep_contacts": self.keep_contacts, "device": device}


class IKOLPerson(bpy.types.PropertyGroup):
    """One person Detect People found."""

    id: bpy.props.IntProperty(name="Id")
    frames: bpy.props.IntProperty(name="Frames", description="Frames the person was detected in")
    label: bpy.props.StringProperty(name="Description")


# Blender keeps no reference to the strings an items callback returns: they must outlive it.
_PERSON_ITEMS: list[tuple[str, str, str]] = []


def _person_items(picker: IKOLPeopleSettings, context: bpy.types.Context | None) -> list[tuple[str, str, str]]:
    _PERSON_ITEMS[:] = [("auto", "Auto", "The person present longest (ties: the larger)"),
                        ("all", "All", "One rig per person, all seen by the video's camera"),
                        *((str(person.id), f"{person.id}: {person.label}", f"Person {person.id} on the sheet")
                          for person in picker.people)]
    return _PERSON_ITEMS


class IKOLPeopleSettings(bpy.types.PropertyGroup):
    """The People panel: a video, the people Detect People found in it, and the pick."""

    video: bpy.props.StringProperty(name="Video", subtype="FILE_PATH")
    people: bpy.props.CollectionProperty(type=IKOLPerson)
    detected_for: bpy.props.StringProperty(name="Detected in", options={"HIDDEN"},
                                           description="The video the people listed were found in")
    person: bpy.props.EnumProperty(name="Person", items=_person_items,
                                   description="Whom Import Video follows")


def menu_import(self, context: bpy.types.Context) -> None:
    self.layout.operator(IKOL_OT_import_video.bl_idname, text="Video Motion (IKOL)")


CLASSES = (IKOLRefineSettings, IKOLPerson, IKOLPeopleSettings, IKOL_OT_detect_people, IKOL_OT_import_video,
           IKOL_OT_import_picked, IKOL_OT_refine, IKOL_OT_restart_engine)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.ikol_refine = bpy.props.PointerProperty(type=IKOLRefineSettings)
    bpy.types.Scene.ikol_people = bpy.props.PointerProperty(type=IKOLPeopleSettings)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    del bpy.types.Object.ikol_refine
    del bpy.types.Scene.ikol_people
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    SESSION.stop()
    RUNNING.clear()
