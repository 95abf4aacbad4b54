"""The IK's functional kernels against brute force: dense linear algebra and finite differences."""
import roma
import torch

from ikol_engine import skeleton
from ikol_engine.ik.block_cholesky import BlockPattern, solve_blocks
from ikol_engine.ik.normal_equations import keypoint_normal_equations, smpl_layout
from ikol_engine.ik.rotations import swing_between, twist_angle, twist_rotation
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.samples.synthetic import random_betas, random_pose
from ikol_engine.skeleton.tree import SMPL_TREE

F64 = torch.float64


def dense_from_blocks(blocks: torch.Tensor, pattern: BlockPattern) -> torch.Tensor:
    batch, n = blocks.shape[0], pattern.num_nodes
    dense = blocks.new_zeros(batch, n, 3, n, 3)
    dense[:, pattern.upper, :, pattern.lower, :] = blocks.transpose(0, 1)
    dense[:, pattern.lower, :, pattern.upper, :] = blocks.transpose(-1, -2).transpose(0, 1)
    return dense.reshape(batch, 3 * n, 3 * n)


def test_block_cholesky_solves_like_dense(generator):
    layout = smpl_layout(torch.device("cpu"))
    pattern = layout.pattern
    # A random SPD matrix with exactly the tree's sparsity: J^T J with J[k, a] != 0 only
    # where node a is an ancestor of node k (or k itself), plus a small ridge.
    n = pattern.num_nodes
    allowed = torch.zeros(n, n, dtype=torch.bool)
    allowed[pattern.lower, pattern.upper] = True
    mask = allowed.repeat_interleave(3, 0).repeat_interleave(3, 1)
    jac = torch.randn(16, 3 * n, 3 * n, generator=generator, dtype=F64) * mask
    dense = jac.transpose(1, 2) @ jac + 0.1 * torch.eye(3 * n, dtype=F64)
    blocks = dense.view(16, n, 3, n, 3)[:, pattern.upper, :, pattern.lower, :].transpose(0, 1)
    in_pattern = dense_from_blocks(torch.ones_like(blocks), pattern) != 0
    assert torch.count_nonzero(dense[~in_pattern]) == 0  # the pattern holds every non-zero block
    rhs = torch.randn(16, n, 3, generator=generator, dtype=F64)
    solution = solve_blocks(blocks, rhs, pattern)
    expected = torch.linalg.solve(dense, rhs.reshape(16, -1)).reshape(16, n, 3)
    assert (solution - expected).abs().max() < 1e-9 * expected.abs().max()


def test_normal_equations_match_finite_difference_jacobian(body, generator):
    batch = 3
    rotations = random_pose(batch, generator, F64)
    offsets = rest_offsets(body.rest_keypoints(random_betas(batch, body.num_betas, generator, F64)), SMPL_TREE)
    translation = torch.randn(batch, 3, generator=generator, dtype=F64)
    globals_, positions = forward_kinematics(rotations, offsets, translation, SMPL_TREE)
    targets = positions + 0.05 * torch.randn(positions.shape, generator=generator, dtype=F64)
    weights = torch.rand(batch, skeleton.NUM_KEYPOINTS, generator=generator, dtype=F64)

    eps, dofs = 1e-6, 3 * skeleton.NUM_JOINTS + 3
    jacobian = torch.zeros(batch, 3 * skeleton.NUM_KEYPOINTS, dofs, dtype=F64)
    for column in range(dofs):
        delta = torch.zeros(batch, dofs, dtype=F64)
        delta[:, column] = eps
        # A world-frame turn of G_a is the local turn G_a^T delta of R_a.
        local = (globals_.transpose(-1, -2) @ delta[:, :-3].reshape(batch, -1, 3, 1))[..., 0]
        moved = rotations @ roma.rotvec_to_rotmat(local)
        _, shifted = forward_kinematics(moved, offsets, translation + delta[:, -3:], SMPL_TREE)
        jacobian[..., column] = ((shifted - positions) / eps).reshape(batch, -1)
    w = weights.repeat_interleave(3, dim=1)
    expected_normal = jacobian.transpose(1, 2) @ (w[..., None] * jacobian)
    expected_gradient = jacobian.transpose(1, 2) @ (w * (positions - targets).reshape(batch, -1))[..., None]

    layout = smpl_layout(torch.device("cpu"))
    blocks, gradient = keypoint_normal_equations(positions, positions - targets, weights, SMPL_TREE, layout)
    normal = dense_from_blocks(blocks, layout.pattern)
    scale = expected_normal.abs().max()
    assert (normal - expected_normal).abs().max() < 1e-5 * scale
    assert (gradient.reshape(batch, -1) - expected_gradient[..., 0]).abs().max() < 1e-5 * scale


def test_twist_angle_and_its_derivative(generator):
    rotations = roma.random_rotmat(64, generator=generator, dtype=F64)
    axes = torch.nn.functional.normalize(torch.randn(64, 3, generator=generator, dtype=F64), dim=-1)
    angle, derivative = twist_angle(roma.rotmat_to_unitquat(rotations), axes)
    delta = 1e-7 * torch.randn(64, 3, generator=generator, dtype=F64)
    moved, _ = twist_angle(roma.rotmat_to_unitquat(rotations @ roma.rotvec_to_rotmat(delta)), axes)
    step = torch.atan2(torch.sin(moved - angle), torch.cos(moved - angle))
    assert (step - (derivative * delta).sum(-1)).abs().max() < 1e-12


def test_swing_then_twist_round_trip(generator):
    source = torch.randn(64, 3, generator=generator, dtype=F64)
    target = torch.randn(64, 3, generator=generator, dtype=F64)
    phi = (torch.rand(64, generator=generator, dtype=F64) * 2 - 1) * 3.1
    axis = torch.nn.functional.normalize(source, dim=-1)
    rotation = swing_between(source, target) @ twist_rotation(axis, phi)
    recovered, _ = twist_angle(roma.rotmat_to_unitquat(rotation), axis)
    assert (recovered - phi).abs().max() < 1e-9
    pointed = (rotation @ axis[..., None])[..., 0]
    assert (pointed - torch.nn.functional.normalize(target, dim=-1)).abs().max() < 1e-12
    opposite = swing_between(axis, -axis)  # the 180-degree case still gives a rotation onto -axis
    assert ((opposite @ axis[..., None])[..., 0] + axis).abs().max() < 1e-9
