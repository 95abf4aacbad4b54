"""The track stage's fingers: hand landmarks as MediaPipe gives them, solved onto the body's hands."""
from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch

from ikol_engine import skeleton
from ikol_engine.skeleton import hands
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.skeleton.tree import SMPL_TREE
from ikol_engine.track.fingers import EASE_S, _ease_to_rest, _turn_wrist, chirality, solve_fingers
from ikol_engine.track.options import SolveOptions
from test_hand_ik import F64, random_hands

FPS = 30.0


@pytest.fixture(scope="module")
def rest(body) -> tuple[np.ndarray, np.ndarray]:
    """The bundled body's rest keypoints (29, 3) and rest hands (2, 21, 3), mean shape."""
    betas = torch.zeros(1, body.num_betas)
    return body.rest_keypoints(betas)[0].double().numpy(), body.rest_hand_keypoints(betas)[0].double().numpy()


def _globals(rotations: np.ndarray) -> np.ndarray:
    local = torch.from_numpy(rotations)
    zeros = torch.zeros(len(local), skeleton.NUM_KEYPOINTS, 3, dtype=F64)
    return forward_kinematics(local, zeros, torch.zeros(len(local), 3, dtype=F64), SMPL_TREE)[0].numpy()


def _body_keypoints(rotations: np.ndarray, rest_keypoints: np.ndarray) -> np.ndarray:
    offsets = rest_offsets(torch.from_numpy(rest_keypoints)[None], SMPL_TREE).expand(len(rotations), -1, -1)
    return forward_kinematics(torch.from_numpy(rotations), offsets, torch.zeros(len(rotations), 3, dtype=F64),
                              SMPL_TREE)[1].numpy()


def test_chirality_tells_a_left_hand_from_a_right_in_any_plausible_pose(rest):
    _, rest_hands = rest
    left, right = chirality(rest_hands)
    assert left == -right != 0
    mirror = np.array([-1.0, 1.0, 1.0])
    assert chirality(rest_hands[0] * mirror) == right
    for side in (0, 1):
        _, posed = random_hands(torch.from_numpy(rest_hands[side]), side, 512, torch.Generator().manual_seed(side))
        posed = posed.numpy()
        assert (chirality(posed) == chirality(rest_hands[side])).all()
        # Depth turned back (as an image cannot tell), the same hand reads as the other side's.
        assert (chirality(posed * np.array([1.0, 1.0, -1.0])) != chirality(rest_hands[side])).all()


def test_unseen_fingers_ease_to_rest_without_a_jump():
    frames, ease = 40, int(round(EASE_S * FPS))
    solved = np.zeros(frames, bool)
    solved[5:15] = True
    turn = roma.rotvec_to_unitquat(torch.tensor([[0.0, 0.0, 1.2]], dtype=F64)).numpy()[:, [3, 0, 1, 2]]
    quaternions = np.tile(turn, (frames, 1, 1))
    eased, easing = _ease_to_rest(quaternions, solved, ease)
    angle = np.degrees(2 * np.arccos(np.clip(np.abs(eased[:, 0, 0]), 0, 1)))
    assert np.allclose(angle[solved], np.degrees(1.2))
    # The clip starts 5 frames before the hand is first seen: those ease in, the 8 after it ease out.
    assert np.flatnonzero(easing).tolist() == list(range(0, 5)) + list(range(15, 15 + ease))
    after = angle[14:15 + ease + 1]
    assert (np.diff(after) < 0).all() and after[-1] == 0.0  # down to rest, a step at a time
    assert np.diff(angle[15:]).min() > -np.degrees(1.2) / ease - 1e-6
    assert (angle[15 + ease:] == 0).all()


def test_a_wrist_turned_to_the_hand_keeps_its_place_and_gives_the_twist_to_the_elbow(rest):
    rest_keypoints, _ = rest
    rng = np.random.default_rng(2)
    rotations = roma.rotvec_to_rotmat(torch.from_numpy(rng.normal(scale=0.4, size=(16, 24, 3)))).numpy()
    keypoints = _body_keypoints(rotations, rest_keypoints)
    turn = roma.rotvec_to_rotmat(torch.from_numpy(rng.normal(scale=0.8, size=(16, 3)))).numpy()
    for side, wrist in enumerate(hands.WRISTS):
        elbow = skeleton.PARENTS[wrist]
        turned = _turn_wrist(rotations, _globals(rotations), keypoints, side, turn)
        before, after = _globals(rotations), _globals(turned)
        assert np.abs(after[:, wrist] - turn @ before[:, wrist]).max() < 1e-9
        moved = _body_keypoints(turned, rest_keypoints)
        assert np.abs(moved[:, :wrist + 1] - keypoints[:, :wrist + 1]).max() < 1e-9  # the arm stays
        # What the elbow took is a turn about the forearm itself.
        elbow_turn = roma.rotmat_to_rotvec(torch.from_numpy(after[:, elbow] @ before[:, elbow].transpose(0, 2, 1)))
        forearm = keypoints[:, wrist] - keypoints[:, elbow]
        forearm /= np.linalg.norm(forearm, axis=-1, keepdims=True)
        off_axis = np.cross(elbow_turn.numpy(), forearm)
        assert np.abs(off_axis).max() < 1e-9 and np.abs(elbow_turn.numpy()).max() > 0.05
        untouched = [j for j in range(24) if j not in (elbow, wrist)]
        assert np.abs(turned[:, untouched] - rotations[:, untouched]).max() == 0


def test_landmarks_as_mediapipe_gives_them_solve_to_the_true_fingers_and_wrist(rest):
    """Hands posed and seen through a camera's axes, half of them with their depth turned
    round (MediaPipe's ambiguity), about their centre, on a body whose wrists point 40
    degrees away from the hands: the wrists turn to the hands and the fingers come back."""
    rest_keypoints, rest_hands = rest
    frames = 24
    generator = torch.Generator().manual_seed(7)
    body = np.tile(np.eye(3), (frames, 24, 1, 1))
    landmarks = np.zeros((frames, 2, 21, 3))
    true_fingers, true_wrists = [], []
    for side, wrist in enumerate(hands.WRISTS):
        rotations, posed = random_hands(torch.from_numpy(rest_hands[side]), side, frames, generator)
        rotations, posed = rotations.numpy(), posed.numpy()
        true_fingers.append(rotations[:, 1:])
        true_wrists.append(rotations[:, 0])
        off = roma.rotvec_to_rotmat(torch.tensor([math.radians(40.0), 0.0, 0.0], dtype=F64)).numpy()
        body[:, wrist] = rotations[:, 0] @ off  # the T-pose's arms: global = local
        about = posed - posed.mean(axis=1, keepdims=True)
        camera_axes = about * np.array([1.0, -1.0, -1.0])
        camera_axes[::2, :, 2] *= -1.0
        landmarks[:, side] = camera_axes[:, np.argsort(hands.MEDIAPIPE_TO_HAND)]
    confidence = np.ones((frames, 2, 21))
    keypoints = _body_keypoints(body, rest_keypoints)
    solved = solve_fingers(landmarks, confidence, body, keypoints, np.ones(frames, bool), rest_hands, FPS,
                           SolveOptions(smoothing=0.0))
    assert solved.seen.all()
    wrists = _globals(solved.body_rotations)
    for side, wrist in enumerate(hands.WRISTS):
        wrist_error = roma.rotmat_geodesic_distance(torch.from_numpy(wrists[:, wrist]), torch.from_numpy(true_wrists[side]))
        assert np.degrees(wrist_error.max()) < 1.0
        quat = solved.rotations[:, side * 15:(side + 1) * 15][..., [1, 2, 3, 0]]
        finger_error = roma.rotmat_geodesic_distance(roma.unitquat_to_rotmat(torch.from_numpy(quat).double()),
                                                     torch.from_numpy(true_fingers[side]))
        assert np.degrees(finger_error.max()) < 1.0, np.degrees(finger_error.max())
        assert solved.info[hands.SIDES[side]]["wrist_turn_deg_median"] == pytest.approx(40.0, abs=1.0)
        assert solved.info[hands.SIDES[side]]["wrist_left_deg_median"] < 1.0
        assert solved.residual_mm[:, side].max() < 1.0


def test_a_hand_never_seen_stays_at_rest_and_its_wrist_as_the_body_has_it(rest):
    rest_keypoints, rest_hands = rest
    frames = 10
    body = roma.rotvec_to_rotmat(torch.from_numpy(np.random.default_rng(1).normal(scale=0.3, size=(frames, 24, 3)))).numpy()
    landmarks = np.zeros((frames, 2, 21, 3))
    solved = solve_fingers(landmarks, np.zeros((frames, 2, 21)), body, _body_keypoints(body, rest_keypoints),
                           np.ones(frames, bool), rest_hands, FPS, SolveOptions())
    assert not solved.seen.any() and (solved.rotations[..., 0] == 1.0).all()
    assert np.array_equal(solved.body_rotations, body)


def test_hands_found_alongside_the_regressor_keep_their_order_and_errors():
    from ikol_engine.pipeline import _HandsAlongside
    from ikol_engine.regressors.base import KeypointFrames, RegressorError
    from ikol_engine.regressors.blazepose.hands import HandFrames
    from ikol_engine.regressors.blazepose.landmarks import LANDMARK_NAMES

    class Marking:
        """Writes each image's first pixel into the wrist's x: which frame each result was."""

        def __call__(self, images, body_pixels, body_confidence):
            found = HandFrames.empty(len(images))
            found.image_keypoints[:, 0, 0, 0] = [image[0, 0, 0] for image in images]
            return found

    def body(count: int) -> KeypointFrames:
        r = len(LANDMARK_NAMES)
        return KeypointFrames(LANDMARK_NAMES, np.zeros((count, r, 3)), np.ones((count, r)), np.zeros((count, r, 2)),
                              np.ones(count, bool))

    images = [np.full((4, 4, 3), i, np.uint8) for i in range(9)]
    with _HandsAlongside(Marking(), 2) as hands:
        for first in range(0, 9, 3):
            hands.submit(first, images[first:first + 3], body(3))
        found = hands.found()
    # In order, every other frame looked at (the rest empty).
    assert found.image_keypoints[:, 0, 0, 0].tolist() == [0, 0, 2, 0, 4, 0, 6, 0, 8]

    class Failing:
        def __call__(self, images, body_pixels, body_confidence):
            raise RegressorError("hands failed on image 0")

    with pytest.raises(RegressorError, match="hands failed"), _HandsAlongside(Failing(), 1) as hands:
        hands.submit(0, images[:1], body(1))
        hands.found()
