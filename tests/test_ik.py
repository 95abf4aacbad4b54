"""The IK layer recovers known poses, degrades gracefully, and refuses bad input."""
import pytest
import torch

from ikol_engine import skeleton
from ikol_engine.ik import fit_shape, solve
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.samples.synthetic import random_betas, random_pose
from ikol_engine.skeleton.tree import SMPL_TREE
from ik_cases import degrees, make_case

MM = 1e-3


@pytest.fixture
def case(body, generator):
    batch = 512
    return make_case(body, random_pose(batch, generator), random_betas(batch, body.num_betas, generator),
                     torch.randn(batch, 3, generator=generator))


def test_fk_joints_match_smplx(body, case):
    out = body.smpl(betas=case.betas, global_orient=case.rotations[:, :1], body_pose=case.rotations[:, 1:],
                    transl=case.translation, pose2rot=False)
    error = (out.joints[:, :24] - case.keypoints[:, :24]).norm(dim=-1)
    assert error.max() < 0.01 * MM


@pytest.mark.parametrize("iterations", [0, 5])
def test_recovers_pose_with_twist(body, case, iterations):
    result = solve(case.keypoints, case.confidence, case.betas, case.twist, iterations=iterations, body=body,
                   device="cpu")
    assert (result.keypoints - case.keypoints).norm(dim=-1).max() < 1 * MM
    assert degrees(result.rotations, case.rotations).max() < 1.0
    assert (result.translation - case.translation).norm(dim=-1).max() < 1 * MM
    assert result.residual.max() < 1 * MM


def test_without_twist_recovers_everything_keypoints_observe(body, case):
    result = solve(case.keypoints, case.confidence, case.betas, iterations=5, body=body, device="cpu")
    assert (result.keypoints - case.keypoints).norm(dim=-1).max() < 1 * MM
    # Pelvis and Spine3 have several children: their whole orientation, twist included, is observed.
    solved_globals, _ = forward_kinematics(result.rotations, rest_offsets(body.rest_keypoints(case.betas), SMPL_TREE),
                                           result.translation, SMPL_TREE)
    for joint in skeleton.MULTI_CHILD_JOINTS:
        assert degrees(solved_globals[:, joint], case.globals[:, joint]).max() < 1.0, skeleton.JOINT_NAMES[joint]
    # Every other bone's direction is observed; only the roll about it is left to the prior.
    children = list(skeleton.BONE_CHILD)
    direction = lambda k: torch.nn.functional.normalize(k[:, children] - k[:, :24], dim=-1)  # noqa: E731
    cosine = (direction(result.keypoints) * direction(case.keypoints)).sum(-1).clamp(-1, 1)
    assert torch.rad2deg(torch.acos(cosine)).max() < 1.0


@pytest.fixture(scope="module")
def mocap(body):
    """Every DeepMimic clip (real mocap), every 4th frame, on random shapes, through FK."""
    from ikol_engine.samples.deepmimic import load_deepmimic
    from ikol_engine.samples import DEEPMIMIC_CLIPS

    rotations = torch.cat([load_deepmimic(name).rotations[::4] for name in DEEPMIMIC_CLIPS])
    generator = torch.Generator().manual_seed(7)
    betas = random_betas(len(rotations), body.num_betas, generator)
    return make_case(body, rotations, betas, torch.randn(len(rotations), 3, generator=generator))


def test_real_mocap_solved_back(body, mocap):
    assert len(mocap.rotations) > 400
    with_twist = solve(mocap.keypoints, mocap.confidence, mocap.betas, mocap.twist, body=body, device="cpu")
    assert (with_twist.keypoints - mocap.keypoints).norm(dim=-1).max() < 1 * MM
    assert degrees(with_twist.rotations, mocap.rotations).max() < 1.0
    without = solve(mocap.keypoints, mocap.confidence, mocap.betas, body=body, device="cpu")
    assert (without.keypoints - mocap.keypoints).norm(dim=-1).max() < 1 * MM


def test_iterations_fix_a_bad_start(body, case, generator):
    """Gauss-Newton, not the closed form, does the work when started elsewhere."""
    start = random_pose(len(case.rotations), generator)
    solved = solve(case.keypoints, case.confidence, case.betas, case.twist, init=start, iterations=10, body=body,
                   device="cpu")
    errors = [(solve(case.keypoints, case.confidence, case.betas, case.twist, init=start, iterations=n, body=body,
                     device="cpu").keypoints - case.keypoints).norm(dim=-1).mean() for n in (0, 1, 3)]
    assert errors[0] > errors[1] > errors[2]
    assert (solved.keypoints - case.keypoints).norm(dim=-1).median() < 1 * MM


def test_tolerance_stops_once_steps_stop_paying(body, case, generator, monkeypatch):
    from ikol_engine.ik import gauss_newton

    steps = []
    step = gauss_newton.levenberg_marquardt_step
    monkeypatch.setattr(gauss_newton, "levenberg_marquardt_step", lambda *args: steps.append(1) or step(*args))
    noisy = case.keypoints + 10 * MM * torch.randn(case.keypoints.shape, generator=generator)
    every = solve(noisy, case.confidence, case.betas, case.twist, iterations=20, body=body, device="cpu")
    assert len(steps) == 20
    steps.clear()
    early = solve(noisy, case.confidence, case.betas, case.twist, iterations=20, tolerance=1e-2, body=body,
                  device="cpu")
    assert 1 < len(steps) < 20, len(steps)
    # What the skipped steps would still have given is well under the keypoints' noise.
    assert (early.keypoints - every.keypoints).norm(dim=-1).mean() < 1 * MM
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        solve(noisy, case.confidence, tolerance=-1.0, body=body, device="cpu")


def test_noise_degrades_gracefully(body, case, generator):
    errors = []
    for sigma in (0.0, 5 * MM, 10 * MM, 20 * MM):
        noisy = case.keypoints + sigma * torch.randn(case.keypoints.shape, generator=generator)
        result = solve(noisy, case.confidence, case.betas, case.twist, body=body, device="cpu")
        error = (result.keypoints - case.keypoints).norm(dim=-1).mean()
        raw = (noisy - case.keypoints).norm(dim=-1).mean()
        assert sigma == 0 or error < raw, (sigma, error, raw)  # fitting a skeleton removes noise
        errors.append(float(error))
    assert errors[0] < 0.1 * MM
    assert errors == sorted(errors)


def test_reference_term_pulls_towards_neighbours(body, case, generator):
    noisy = case.keypoints + 20 * MM * torch.randn(case.keypoints.shape, generator=generator)
    alone = solve(noisy, case.confidence, case.betas, case.twist, body=body, device="cpu")
    pulled = solve(noisy, case.confidence, case.betas, case.twist, reference=case.rotations, reference_weight=1e-2,
                   body=body, device="cpu")
    unpulled = solve(noisy, case.confidence, case.betas, case.twist, reference=case.rotations, reference_weight=0.0,
                     body=body, device="cpu")
    assert degrees(unpulled.rotations, alone.rotations).max() < 1e-3
    assert degrees(pulled.rotations, case.rotations).mean() < 0.5 * degrees(alone.rotations, case.rotations).mean()


def test_zero_confidence_ignores_keypoints(body, case):
    confidence = case.confidence.clone()
    confidence[:, [23, 26]] = 0.0  # right hand and fingertip not trusted by the regressor
    wild = case.keypoints.clone()
    wild[:, 23] += 0.5
    wild[:, 26] = float("nan")
    ignored = solve(wild, confidence, case.betas, case.twist, body=body, device="cpu")
    reference = solve(case.keypoints, confidence, case.betas, case.twist, body=body, device="cpu")
    assert torch.isfinite(ignored.rotations).all()
    assert degrees(ignored.rotations, reference.rotations).max() < 1e-3
    seen = confidence > 0
    assert (ignored.keypoints - case.keypoints).norm(dim=-1)[seen].max() < 1 * MM


def test_unobserved_limb_rests_naturally(body, case):
    confidence = case.confidence.clone()
    left_arm = [18, 20, 22, 25]  # elbow, wrist, hand, fingertip
    confidence[:, left_arm] = 0.0
    result = solve(case.keypoints, confidence, case.betas, body=body, device="cpu")
    identity = torch.eye(3).expand(len(case.rotations), 3, 3)
    for joint in (18, 20, 22):
        assert degrees(result.rotations[:, joint], identity).max() < 1.0
    seen = confidence > 0
    assert (result.keypoints - case.keypoints).norm(dim=-1)[seen].max() < 1 * MM


def test_frames_are_independent(body, case):
    batch = solve(case.keypoints[:8], case.confidence[:8], case.betas[:8], case.twist[:8], body=body, device="cpu")
    single = solve(case.keypoints[3:4], case.confidence[3:4], case.betas[3:4], case.twist[3:4], body=body,
                   device="cpu")
    assert degrees(batch.rotations[3], single.rotations[0]).max() < 0.01


def test_betas_shared_across_frames(body, case):
    shared = case.betas[0]
    keypoints = make_case(body, case.rotations, shared.expand_as(case.betas), case.translation).keypoints
    result = solve(keypoints, case.confidence, shared, body=body, device="cpu")
    assert (result.keypoints - keypoints).norm(dim=-1).max() < 1 * MM


def test_fit_shape_recovers_bone_lengths(body, generator):
    frames = 200
    betas = random_betas(1, body.num_betas, generator)
    betas[0, 0] = 2.0  # a tall person, far from the mean shape
    case = make_case(body, random_pose(frames, generator), betas.expand(frames, -1), torch.zeros(frames, 3))
    noisy = case.keypoints + 10 * MM * torch.randn(case.keypoints.shape, generator=generator)
    fitted = fit_shape(noisy, case.confidence, body, device="cpu")
    parents = list(skeleton.KEYPOINT_PARENTS[1:])

    def bone_lengths(b):
        rest = body.rest_keypoints(b[None])[0]
        return (rest[1:] - rest[parents]).norm(dim=-1)

    truth = bone_lengths(betas[0])
    fitted_error = (bone_lengths(fitted) - truth).abs().mean()
    mean_shape_error = (bone_lengths(torch.zeros_like(fitted)) - truth).abs().mean()
    print(f"bone length error: fitted {fitted_error / MM:.2f} mm, mean shape {mean_shape_error / MM:.2f} mm")
    assert fitted_error < 3 * MM
    assert fitted_error < 0.3 * mean_shape_error


def test_gradients_match_finite_differences(body, generator):
    torch.manual_seed(0)
    case = make_case(body, random_pose(2, generator, torch.float64).double(),
                     random_betas(2, 4, generator).double(), torch.zeros(2, 3, dtype=torch.float64))
    targets = (case.keypoints + 0.01 * torch.randn(case.keypoints.shape, generator=generator,
                                                   dtype=torch.float64)).requires_grad_()
    twist = case.twist.clone().requires_grad_()
    betas = case.betas.clone().requires_grad_()
    confidence = case.confidence

    def rotations_and_translation(t, tw, b):
        result = solve(t, confidence, b, tw, iterations=2, body=body, device="cpu")
        return result.rotations, result.translation

    assert torch.autograd.gradcheck(rotations_and_translation, (targets, twist, betas), eps=1e-6, atol=1e-5,
                                    fast_mode=True)


def test_gradients_reach_inputs_through_iterations(body, case):
    targets = case.keypoints[:16].clone().requires_grad_()
    result = solve(targets, case.confidence[:16], case.betas[:16], case.twist[:16], iterations=3, body=body,
                   device="cpu")
    result.keypoints.square().sum().backward()
    assert torch.isfinite(targets.grad).all() and targets.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(body, case):
    cpu = solve(case.keypoints, case.confidence, case.betas, case.twist, body=body, device="cpu")
    gpu = solve(case.keypoints.cuda(), case.confidence.cuda(), case.betas.cuda(), case.twist.cuda(), body=body,
                device="cuda")
    assert gpu.rotations.is_cuda
    assert degrees(gpu.rotations.cpu(), cpu.rotations).max() < 0.05


class TestBadInput:
    def args(self, case, **changes):
        base = dict(targets=case.keypoints[:4], confidence=case.confidence[:4], betas=case.betas[:4])
        base.update(changes)
        return base

    def test_nan_targets(self, body, case):
        targets = case.keypoints[:4].clone()
        targets[2, 5, 1] = float("nan")
        with pytest.raises(ValueError, match="NaN.*frames 2"):
            solve(**self.args(case, targets=targets), body=body, device="cpu")

    def test_all_zero_confidence(self, body, case):
        confidence = case.confidence[:4].clone()
        confidence[1] = 0
        with pytest.raises(ValueError, match="no keypoint has confidence > 0 in frames 1"):
            solve(**self.args(case, confidence=confidence), body=body, device="cpu")

    @pytest.mark.parametrize("name, shape", [("targets", (4, 24, 3)), ("confidence", (4, 28)),
                                              ("betas", (4, 3, 2)), ("twist", (4, 24))])
    def test_wrong_shapes(self, body, case, name, shape):
        kwargs = self.args(case)
        kwargs[name] = torch.zeros(shape)
        with pytest.raises(ValueError, match=f"{name} must have shape"):
            solve(**kwargs, body=body, device="cpu")

    def test_too_many_betas(self, body, case):
        with pytest.raises(ValueError, match="coefficients"):
            solve(**self.args(case, betas=torch.zeros(4, body.num_betas + 1)), body=body, device="cpu")

    def test_negative_confidence(self, body, case):
        with pytest.raises(ValueError, match="confidence"):
            solve(**self.args(case, confidence=-case.confidence[:4]), body=body, device="cpu")

    @pytest.mark.parametrize("device", ["tpu", "gpu0", "mps"])
    def test_unknown_device(self, body, case, device):
        with pytest.raises(ValueError, match="device"):
            solve(**self.args(case), body=body, device=device)

    @pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
    def test_cuda_without_gpu(self, body, case):
        with pytest.raises(ValueError, match="no CUDA GPU"):
            solve(**self.args(case), body=body, device="cuda")

    @pytest.mark.parametrize("iterations", [-1, 2.5, True])
    def test_bad_iterations(self, body, case, iterations):
        with pytest.raises(ValueError, match="iterations"):
            solve(**self.args(case), iterations=iterations, body=body, device="cpu")
