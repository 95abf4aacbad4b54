"""Index tables derived once from a parent list, so the kernels never walk the tree."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import skeleton


@dataclass(frozen=True)
class KinematicTree:
    """A tree of ``num_joints`` rotating joints plus leaf keypoints hanging off them.

    Keypoints ``0..num_joints-1`` are the joints; the rest are leaves (no rotation).
    """

    parents: tuple[int, ...]
    num_joints: int
    # Per depth (root excluded): (keypoints at that depth, their parents,
    # the joints among them, their parents); index tensors, possibly empty.
    levels: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], ...]
    # (J, K): 1 where joint j is a strict ancestor of keypoint k, i.e. j's rotation moves k.
    moves: torch.Tensor

    @property
    def num_keypoints(self) -> int:
        return len(self.parents)

    @classmethod
    def from_parents(cls, parents: tuple[int, ...], num_joints: int) -> "KinematicTree":
        depth = [0] * len(parents)
        for k, p in enumerate(parents):
            if p >= k:
                raise ValueError(f"parents must be topologically ordered; keypoint {k} has parent {p}")
            depth[k] = 0 if p < 0 else depth[p] + 1
        levels = []
        for d in range(1, max(depth) + 1):
            ks = [k for k in range(len(parents)) if depth[k] == d]
            js = [k for k in ks if k < num_joints]
            levels.append(tuple(torch.tensor(ix, dtype=torch.long) for ix in
                                (ks, [parents[k] for k in ks], js, [parents[j] for j in js])))
        moves = torch.zeros(num_joints, len(parents))
        for k in range(len(parents)):
            a = parents[k]
            while a >= 0:
                moves[a, k] = 1.0
                a = parents[a]
        return cls(tuple(parents), num_joints, tuple(levels), moves)

    def to(self, device: torch.device) -> "KinematicTree":
        levels = tuple(tuple(ix.to(device) for ix in level) for level in self.levels)
        return KinematicTree(self.parents, self.num_joints, levels, self.moves.to(device))


SMPL_TREE = KinematicTree.from_parents(skeleton.KEYPOINT_PARENTS, skeleton.NUM_JOINTS)
