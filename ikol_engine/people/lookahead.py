"""The people found on the frames decoded for the regressor: one decoding pass, not two.

Analyze has to know whom to follow before the regressor sees a frame, and finding
everyone first costs a decoding pass of its own. Here the scan runs on the frames the
regressor gets anyway, ahead of it: :func:`scanned` hands each frame on once the detector
has run :func:`lookahead_frames` frames past it, with the people found by then. That lag
outlasts both the time a person may go undetected and keep their id and the detections a
track needs to be kept, so the people known at a frame are those the whole scan finds
there, but for a track kept only late, or where the waiting frames would have filled
:data:`MAX_WAITING_BYTES` (4K frames: a lag of 21 frames).

:class:`ProvisionalFollow` applies the choice to the people found so far, at the first
frame where it picks anyone, and keeps that person; at the end the whole scan's choice is
compared (:meth:`ProvisionalFollow.follows`), and the pipeline regresses again only where
it picked someone else.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from ..video.decode import Frame
from .follow import FollowPlan
from .scan import Scanner
from .selection import PeopleError, PersonChoice, select_people
from .tracker import Track

__all__ = ["MAX_WAITING_BYTES", "ProvisionalFollow", "lookahead_frames", "scanned"]

#: Decoded frames waiting for the detector to run past them take at most this much memory
#: (a 4K frame is 25 MB), unless a lag of the detections a track needs takes more.
MAX_WAITING_BYTES = 512 * 2**20


def lookahead_frames(scanner: Scanner) -> int:
    """Frames the detector runs ahead of the frames handed on (see the module's text)."""
    least = scanner.step * scanner.min_hits
    wanted = scanner.max_gap + least
    frame_bytes = scanner.info.width * scanner.info.height * 3
    return max(least, min(wanted, MAX_WAITING_BYTES // frame_bytes))


def scanned(frames: Iterable[Frame], scanner: Scanner, lag: int) -> Iterator[tuple[Frame, dict[int, Track]]]:
    """Each frame, once the scanner has seen ``lag`` frames past it (or the last frame),
    with the people kept by then (:meth:`.scan.Scanner.kept`, their detections from the
    longest gap a track bridges before the frame on: all that places anyone at it).

    Args:
        frames: increasing frames, holding every frame the scanner is due to see.
    """
    waiting: deque[Frame] = deque()
    reach = scanner.max_gap + scanner.step

    def snapshot() -> dict[int, Track]:
        return scanner.kept(since=waiting[0].index - reach)

    for frame in frames:
        waiting.append(frame)
        if scanner.due(frame.index):
            scanner.see(frame.index, frame.image)
            if waiting[0].index + lag <= frame.index:
                people = snapshot()
                while waiting and waiting[0].index + lag <= frame.index:
                    yield waiting.popleft(), people
    if waiting:
        people = snapshot()
        while waiting:
            yield waiting.popleft(), people


class ProvisionalFollow:
    """One person picked among the people found so far, then kept: what the regressor sees.

    Args:
        choice: a single-person choice (not ``all``).
        step, start, end: the scan's detection step and frame range (see :class:`.follow.FollowPlan`).

    Raises:
        ValueError: ``choice`` is ``all``.
    """

    def __init__(self, choice: PersonChoice, step: int, start: int, end: int) -> None:
        if choice.mode == "all":
            raise ValueError("one person is followed at a time; 'all' follows each in turn")
        self.choice, self.step, self.start, self.end = choice, step, start, end
        self.serial: int | None = None  # the tracker's number of the person followed
        self._people: dict[int, Track] | None = None
        self._plan: FollowPlan | None = None
        self._gave_up = False

    def view(self, frame: Frame, people: dict[int, Track]) -> np.ndarray | None:
        """The frame as the regressor sees it (the others blacked out, see
        :meth:`.follow.FollowPlan.view`), or None where the person is not followed.

        Args:
            people: as :func:`scanned` gives with the frame.
        """
        if people is not self._people:
            self._people = people
            self._plan = self._plan_for(people)
        if self._plan is None or not self._plan.covers(frame.index):
            return None
        return self._plan.view(frame.index, frame.image)

    def follows(self, track_serial: int) -> bool:
        """Whether the person followed is the one the tracker numbered ``track_serial``."""
        return self.serial == track_serial

    def _plan_for(self, people: dict[int, Track]) -> FollowPlan | None:
        if self.serial is None:
            if self._gave_up or not people:
                return None
            try:
                [picked] = select_people(list(people.values()), self.choice)
            except PeopleError:
                # Where nobody has the id yet, they may come; a pixel picks among the people
                # of the first frame anyone is seen, who are all in the first people found.
                self._gave_up = self.choice.mode == "point"
                return None
            self.serial = next(serial for serial, track in people.items() if track is picked)
        track = people.get(self.serial)
        if track is None:  # gone for longer than a person keeps their id
            return None
        return FollowPlan.make(track, list(people.values()), self.step, self.start, self.end)
