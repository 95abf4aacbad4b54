"""The shape fit on real skeletons no one here made: SMPL-X's (mean and sampled shapes)
and DeepMimic's humanoid, moving as DeepMimic's mocap does. After one shape fit per clip
every rigid distance the source defines must match within 5 mm and the IK must put the
defined joints within 10 mm on average."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ikol_engine.body import BodyModel
from ikol_engine.ik import fit_shape, shape_fit_report, solve
from ikol_engine.samples.deepmimic import load_deepmimic
from ikol_engine.samples.skeletons import Skeleton, deepmimic_skeleton, pose_skeleton, smplx_skeleton
from ikol_engine.samples.synthetic import random_pose
from ikol_engine.skeleton import KEYPOINT_NAMES
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.skeleton.tree import SMPL_TREE

MM = 1e-3
# Every 4th frame is plenty for one shape per clip and keeps the IK quick.
STRIDE = 4


def _sources() -> list[tuple[str, object]]:
    shapes = np.random.default_rng(7).normal(size=(3, 10))
    return ([("deepmimic", deepmimic_skeleton), ("smplx mean", smplx_skeleton)]
            + [(f"smplx sample {i}", lambda s=s: smplx_skeleton(s)) for i, s in enumerate(shapes)]
            + [("smplx tall", lambda: smplx_skeleton(np.array([2.0] + [0.0] * 9))),
               ("smplx short", lambda: smplx_skeleton(np.array([-2.0, 1.5] + [0.0] * 8)))])


@pytest.fixture(scope="module")
def body() -> BodyModel:
    return BodyModel()


def _observe(bones: Skeleton, clip: str) -> tuple[torch.Tensor, torch.Tensor]:
    keypoints = pose_skeleton(bones, load_deepmimic(clip))[::STRIDE]
    return keypoints, bones.defined.float().expand(len(keypoints), -1).clone()


def _fit_and_solve(body: BodyModel, keypoints: torch.Tensor, confidence: torch.Tensor, defined: torch.Tensor
                   ) -> tuple[float, float]:
    """(worst rigid distance error, mean joint error over the defined keypoints), m."""
    betas = fit_shape(keypoints, confidence, body, device="cpu")
    distances = max(abs(fit.error_m) for fit in shape_fit_report(keypoints, confidence, betas, body))
    result = solve(keypoints, confidence, betas, body=body, iterations=10, device="cpu")
    joints = float((result.keypoints[:, defined] - keypoints[:, defined]).norm(dim=-1).mean())
    return distances, joints


@pytest.mark.parametrize("name,make", _sources(), ids=[name for name, _ in _sources()])
@pytest.mark.parametrize("clip", ["walk", "cartwheel"])
def test_real_skeletons_fit_within_5mm_and_10mm(body, name, make, clip):
    bones = make()
    keypoints, confidence = _observe(bones, clip)
    distances, joints = _fit_and_solve(body, keypoints, confidence, bones.defined)
    print(f"{name} {clip}: worst rigid distance {distances / MM:.2f} mm, mean joint error {joints / MM:.2f} mm")
    assert distances < 5 * MM
    assert joints < 10 * MM


def test_skeleton_directions_are_what_makes_the_fit(body):
    """The 10 phenotype directions alone leave SMPL-X's skeleton centimetres off."""
    bones = smplx_skeleton()
    keypoints, confidence = _observe(bones, "walk")
    phenotypes = BodyModel(num_betas=10)
    assert phenotypes.num_betas == 10 < body.num_betas
    without = _fit_and_solve(phenotypes, keypoints, confidence, bones.defined)
    with_skeleton = _fit_and_solve(body, keypoints, confidence, bones.defined)
    print(f"phenotypes only: {without[0] / MM:.1f} / {without[1] / MM:.1f} mm; "
          f"with skeleton directions: {with_skeleton[0] / MM:.1f} / {with_skeleton[1] / MM:.1f} mm")
    assert without[0] > 20 * MM and without[1] > 15 * MM
    assert with_skeleton[1] < 0.2 * without[1]


def test_noisy_keypoints_reach_no_far_fetched_body(body):
    """With 1 cm of noise per axis on every keypoint in every frame, the prior keeps the
    skeleton betas within 3 standard deviations and the distances within 6 mm of the
    truth (the median of a noisy distance is biased long by about noise^2 / length)."""
    bones = smplx_skeleton(np.array([1.0, -1.0] + [0.0] * 8))
    keypoints, confidence = _observe(bones, "walk")
    noise = 0.01 * torch.randn(keypoints.shape, generator=torch.Generator().manual_seed(3))
    betas = fit_shape(keypoints + noise, confidence, body, device="cpu")
    report = shape_fit_report(keypoints, confidence, betas, body)
    worst = max(abs(fit.error_m) for fit in report)
    mean = float(np.mean([abs(fit.error_m) for fit in report]))
    print(f"largest |beta| {betas.abs().max():.2f}; distances off by {mean / MM:.1f} mm mean, {worst / MM:.1f} worst")
    assert float(betas[10:].abs().max()) < 3.0
    assert mean < 6 * MM


def test_a_foot_no_frame_sees_is_fitted_from_ankle_to_toe(body):
    """BlazePose sees ankles and toes but never the ball of the foot. The fit must then
    match the ankle-to-toe span, or a body with a longer foot folds its toes to reach."""
    names = ["pca"] * 10 + list(body.arrays.skeleton_directions)
    truth = torch.zeros(body.num_betas)
    truth[names.index("Foot.z")] = -1.5  # the ball of the foot 4.5 cm further back: a shorter foot
    frames = 60
    rotations = random_pose(frames, torch.Generator().manual_seed(5))
    feet = [KEYPOINT_NAMES.index(n) for n in ("L_Foot", "R_Foot")]
    rotations[:, feet] = torch.eye(3)  # unseen joints stay at rest, as the IK's prior keeps them
    rest = body.rest_keypoints(truth[None]).expand(frames, -1, -1)
    _, keypoints = forward_kinematics(rotations, rest_offsets(rest, SMPL_TREE), torch.zeros(frames, 3), SMPL_TREE)
    confidence = torch.ones(frames, len(KEYPOINT_NAMES))
    confidence[:, feet] = 0.0
    betas = fit_shape(keypoints, confidence, body, device="cpu")
    report = {fit.name: fit for fit in shape_fit_report(keypoints, confidence, betas, body)}
    mean_body = {fit.name: fit for fit in shape_fit_report(keypoints, confidence, torch.zeros_like(betas), body)}
    for side in ("L", "R"):
        span = f"{side}_Ankle-{side}_BigToe"
        print(f"{span}: fitted {report[span].error_m / MM:+.2f} mm, mean body {mean_body[span].error_m / MM:+.2f} mm")
        assert abs(report[span].error_m) < 2 * MM
        assert abs(mean_body[span].error_m) > 10 * MM
