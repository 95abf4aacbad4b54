"""Cholesky factor and solve for the IK's tree-shaped normal equations.

A joint's rotation only moves keypoints below it, so block (a, b) of ``J^T W J`` is
non-zero only when one joint is an ancestor of the other; the root translation moves
everything, like an extra ancestor of the root. Eliminating the deepest joints first
creates no fill-in, so the factor has the same few 3x3 blocks as the matrix
(~135 of the 625 of a dense 75x75), and a whole depth of the tree is eliminated at
once in a handful of batched tensor operations instead of one LAPACK call per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EliminationLevel:
    """Nodes of one depth, eliminated together (no two are ancestor and descendant).

    Attributes:
        nodes: (n,) node ids; diagonal: (n,) their (j, j) block ids.
        links: (Q,) block ids of (a, j), a a strict ancestor of node j of this level;
        link_owner: (Q,) position of j in ``nodes``; link_node: (Q,) the ancestor a.
        update_target: (T,) block (c, a) that the product of links (c, j), (a, j) updates;
        update_left, update_right: (T,) positions in ``links`` of (c, j) and (a, j).
    """

    nodes: torch.Tensor
    diagonal: torch.Tensor
    links: torch.Tensor
    link_owner: torch.Tensor
    link_node: torch.Tensor
    update_target: torch.Tensor
    update_left: torch.Tensor
    update_right: torch.Tensor

    def to(self, device: torch.device) -> "EliminationLevel":
        return EliminationLevel(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class BlockPattern:
    """Which 3x3 blocks of a symmetric matrix over a tree's nodes can be non-zero.

    Block ``p`` holds rows of node ``upper[p]`` and columns of node ``lower[p]``,
    where ``upper[p]`` is an ancestor of ``lower[p]`` or the node itself. Nodes need
    not be numbered root first.
    """

    num_nodes: int
    upper: torch.Tensor
    lower: torch.Tensor
    diagonal: torch.Tensor
    levels: tuple[EliminationLevel, ...]  # deepest first

    @property
    def num_blocks(self) -> int:
        return len(self.upper)

    @classmethod
    def from_parents(cls, parents: tuple[int, ...]) -> "BlockPattern":
        ancestors: list[list[int]] = []
        for node in range(len(parents)):
            chain, parent = [], parents[node]
            while parent >= 0:
                if len(chain) > len(parents):
                    raise ValueError("parents must form a tree")
                chain.append(parent)
                parent = parents[parent]
            ancestors.append(chain)
        pairs = [(a, b) for b in range(len(parents)) for a in [b] + ancestors[b]]
        block = {pair: i for i, pair in enumerate(pairs)}
        depth = [len(a) for a in ancestors]
        levels = []
        for d in sorted(set(depth), reverse=True):
            nodes = [j for j in range(len(parents)) if depth[j] == d]
            links = [(a, j, owner) for owner, j in enumerate(nodes) for a in ancestors[j]]
            position = {(a, j): q for q, (a, j, _) in enumerate(links)}
            # a, then c = a or one of a's ancestors: block (c, a) loses L_cj L_aj^T.
            updates = [(block[(c, a)], position[(c, j)], position[(a, j)])
                       for j in nodes for i, a in enumerate(ancestors[j]) for c in ancestors[j][i:]]
            t = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
            levels.append(EliminationLevel(
                nodes=t(nodes), diagonal=t([block[(j, j)] for j in nodes]),
                links=t([block[(a, j)] for a, j, _ in links]), link_owner=t([o for _, _, o in links]),
                link_node=t([a for a, _, _ in links]),
                update_target=t([u[0] for u in updates]), update_left=t([u[1] for u in updates]),
                update_right=t([u[2] for u in updates])))
        upper, lower = zip(*pairs)
        return cls(len(parents), torch.tensor(upper), torch.tensor(lower),
                   torch.tensor([block[(j, j)] for j in range(len(parents))]), tuple(levels))

    def to(self, device: torch.device) -> "BlockPattern":
        return BlockPattern(self.num_nodes, self.upper.to(device), self.lower.to(device), self.diagonal.to(device),
                            tuple(level.to(device) for level in self.levels))


def _matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(..., 3, k, B) @ (..., k, m, B) with the batch last, where it vectorises."""
    return (x[..., :, :, None, :] * y[..., None, :, :, :]).sum(-3)


def _transpose(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-2, -3)


def _inverse_cholesky_3x3(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3, B) SPD blocks -> inverses of their lower Cholesky factors, in closed form."""
    tiny = torch.finfo(m.dtype).tiny
    l11 = m[..., 0, 0, :].clamp(min=tiny).sqrt()
    l21 = m[..., 1, 0, :] / l11
    l31 = m[..., 2, 0, :] / l11
    l22 = (m[..., 1, 1, :] - l21 * l21).clamp(min=tiny).sqrt()
    l32 = (m[..., 2, 1, :] - l31 * l21) / l22
    l33 = (m[..., 2, 2, :] - l31 * l31 - l32 * l32).clamp(min=tiny).sqrt()
    zero = torch.zeros_like(l11)
    inverse = [1 / l11, zero, zero,
               -l21 / (l11 * l22), 1 / l22, zero,
               (l21 * l32 - l22 * l31) / (l11 * l22 * l33), -l32 / (l22 * l33), 1 / l33]
    return torch.stack(inverse, dim=-2).unflatten(-2, (3, 3))


def solve_blocks(blocks: torch.Tensor, rhs: torch.Tensor, pattern: BlockPattern,
                 damping: torch.Tensor | None = None) -> torch.Tensor:
    """Solves ``(A + damping I) x = rhs`` for SPD ``A`` given by its pattern blocks (block Cholesky).

    Args:
        blocks: (B, P, 3, 3) the blocks of A (see BlockPattern).
        rhs: (B, N, 3) right-hand side, node-major.
        damping: (B,) added to A's diagonal, or None.
    Returns:
        (B, N, 3) the solution.
    """
    # Frames last: every 3x3 operation below is then a few vectorised passes over frames.
    # In-place updates below are safe for autograd: every read is a gathered copy.
    work = blocks.permute(1, 2, 3, 0).contiguous()                     # (P, 3, 3, B)
    if damping is not None:
        work[pattern.diagonal] += torch.eye(3, dtype=work.dtype, device=work.device)[..., None] * damping
    factor = torch.zeros_like(work)
    inverse_diagonal = work.new_zeros(pattern.num_nodes, 3, 3, work.shape[-1])
    for level in pattern.levels:                                       # A = L L^T, deepest first
        inverse = _inverse_cholesky_3x3(work[level.diagonal])          # (n, 3, 3, B)
        inverse_diagonal.index_copy_(0, level.nodes, inverse)
        if level.links.numel():
            link = _matmul(work[level.links], _transpose(inverse[level.link_owner]))
            factor.index_copy_(0, level.links, link)
            update = _matmul(link[level.update_left], _transpose(link[level.update_right]))
            work.index_add_(0, level.update_target, update, alpha=-1)

    y = rhs.permute(1, 2, 0)[..., None, :].contiguous()                # (N, 3, 1, B)
    for level in pattern.levels:                                       # L y = rhs
        y_level = _matmul(inverse_diagonal[level.nodes], y[level.nodes])
        y.index_copy_(0, level.nodes, y_level)
        if level.links.numel():
            y.index_add_(0, level.link_node, _matmul(factor[level.links], y_level[level.link_owner]), alpha=-1)
    x = torch.zeros_like(y)
    for level in reversed(pattern.levels):                             # L^T x = y, root first
        residual = y[level.nodes]
        if level.links.numel():
            pulled = _matmul(_transpose(factor[level.links]), x[level.link_node])
            residual.index_add_(0, level.link_owner, pulled, alpha=-1)
        x.index_copy_(0, level.nodes, _matmul(_transpose(inverse_diagonal[level.nodes]), residual))
    return x[..., 0, :].permute(2, 0, 1)
