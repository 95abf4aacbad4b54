"""The body model: SMPL's tree, shape space and mesh, over ``smplx.SMPL``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import smplx
import torch
from smplx.utils import Struct

from .. import skeleton
from ..skeleton import hands
from .model_file import BodyArrays, BodyModelError, read_body_arrays

# How many shape coefficients an SMPL file is used with unless asked otherwise (smplx's default).
SMPL_NUM_BETAS = 10


def _hand_regressor(arrays: BodyArrays, side: int) -> np.ndarray:
    """(21, V) vertex weights of one hand's keypoints: wrist, 15 finger joints, 5 fingertips."""
    count = hands.NUM_FINGER_JOINTS
    tips = np.zeros((len(hands.FINGERS), len(arrays.v_template)), arrays.j_regressor.dtype)
    prefix = hands.SIDES[side][0]  # smplx's fingertip landmark names: "lindex", "rthumb", ...
    tips[np.arange(len(hands.FINGERS)), [arrays.landmarks[prefix + finger] for finger in hands.FINGERS]] = 1.0
    return np.concatenate([arrays.j_regressor[hands.WRISTS[side]][None],
                           arrays.hand_j_regressor[side * count:(side + 1) * count], tips])


class BodyModel:
    """An SMPL-layout body: rest keypoints for given shapes, and the skinned mesh.

    The IK layer needs only the 29 rest keypoints as a linear function of the shape
    coefficients (betas); the full mesh goes through ``smplx.SMPL``.

    Args:
        path: an official SMPL ``.pkl``, an SMPL-layout ``.npz``, or ``None`` for the
            bundled licence-clean default body.
        num_betas: shape directions to use (at most what the file holds); ``None``: all
            of a body with skeleton directions (the bundled one), else SMPL's usual 10.
    """

    joint_names = skeleton.JOINT_NAMES
    parents = skeleton.PARENTS
    keypoint_names = skeleton.KEYPOINT_NAMES
    keypoint_parents = skeleton.KEYPOINT_PARENTS

    def __init__(self, path: str | Path | None = None, num_betas: int | None = None) -> None:
        self.arrays: BodyArrays = read_body_arrays(path)
        self.path = self.arrays.path
        held = self.arrays.shapedirs.shape[-1]
        if num_betas is None:
            num_betas = held if self.arrays.skeleton_directions else SMPL_NUM_BETAS
        self.num_betas = min(num_betas, held)
        a = self.arrays
        # Rest keypoints are linear in betas: joints through the regressor, leaves are vertices.
        leaves = a.leaf_vertices
        template = np.concatenate([a.j_regressor @ a.v_template, a.v_template[leaves]])
        dirs = a.shapedirs[..., : self.num_betas]
        shape_dirs = np.concatenate([np.einsum("jv,vcn->jcn", a.j_regressor, dirs), dirs[leaves]])
        self._keypoint_template = torch.from_numpy(template.astype(np.float32))
        self._keypoint_dirs = torch.from_numpy(shape_dirs.astype(np.float32))
        self._hand_template: torch.Tensor | None = None
        self._hand_dirs: torch.Tensor | None = None
        if a.hand_j_regressor is not None:
            regressor = np.stack([_hand_regressor(a, side) for side in range(len(hands.SIDES))])  # (2, 21, V)
            self._hand_template = torch.from_numpy(np.einsum("skv,vc->skc", regressor, a.v_template).astype(np.float32))
            self._hand_dirs = torch.from_numpy(np.einsum("skv,vcn->skcn", regressor, dirs).astype(np.float32))
        self._smpl: smplx.SMPL | None = None

    def __repr__(self) -> str:
        return f"BodyModel({str(self.path)!r}, vertices={len(self.arrays.v_template)}, num_betas={self.num_betas})"

    @property
    def faces(self) -> np.ndarray:
        """(F, 3) triangle vertex indices."""
        return self.arrays.faces

    @property
    def template_vertices(self) -> np.ndarray:
        """(V, 3) rest vertices for mean shape, metres, y-up."""
        return self.arrays.v_template

    @property
    def skin_weights(self) -> np.ndarray:
        """(V, 24) skinning weights."""
        return self.arrays.weights

    def rest_keypoints(self, betas: torch.Tensor) -> torch.Tensor:
        """Rest positions of the 24 joints and 5 leaf points.

        Args:
            betas: (B, N) shape coefficients, N <= num_betas (missing ones are zero).
        Returns:
            (B, 29, 3) positions in metres.
        """
        template = self._keypoint_template.to(betas.device, betas.dtype)
        dirs = self._keypoint_dirs[..., : betas.shape[-1]].to(betas.device, betas.dtype)
        return template + torch.einsum("kcn,bn->bkc", dirs, betas)

    @property
    def has_hands(self) -> bool:
        """Whether the body has SMPL-H's finger joints (the bundled one does; SMPL has none)."""
        return self._hand_template is not None

    def rest_hand_keypoints(self, betas: torch.Tensor) -> torch.Tensor:
        """Rest positions of each hand's 21 keypoints (skeleton.hands.HAND_KEYPOINT_NAMES).

        Args:
            betas: (B, N) shape coefficients, N <= num_betas.
        Returns:
            (B, 2, 21, 3) metres, the left hand then the right.
        Raises:
            BodyModelError: the body has no finger joints.
        """
        if self._hand_template is None:
            raise BodyModelError(f"{self.path}: this body has no finger joints (an SMPL body has none)")
        template = self._hand_template.to(betas.device, betas.dtype)
        dirs = self._hand_dirs[..., : betas.shape[-1]].to(betas.device, betas.dtype)
        return template + torch.einsum("skcn,bn->bskc", dirs, betas)

    def rest_finger_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 30, 3) rest positions of SMPL-H's finger joints (skeleton.hands.HAND_JOINT_NAMES)."""
        finger_joints = slice(1, hands.HAND_NUM_JOINTS)
        return self.rest_hand_keypoints(betas)[:, :, finger_joints].flatten(1, 2)

    @property
    def skin_weights_with_fingers(self) -> np.ndarray:
        """(V, 54) skin weights over the 24 joints then the 30 finger joints.

        SMPL's hand joints keep no skin of their own: the finger joints move it.

        Raises:
            BodyModelError: the body has no finger joints.
        """
        if self.arrays.smplh_weights is None:
            raise BodyModelError(f"{self.path}: this body has no finger joints (an SMPL body has none)")
        smplh = self.arrays.smplh_weights
        body = hands.SMPLH_NUM_BODY_JOINTS
        hand_joints = np.zeros((len(smplh), skeleton.NUM_JOINTS - body), smplh.dtype)
        return np.concatenate([smplh[:, :body], hand_joints, smplh[:, body:]], axis=1)

    def rest_joints(self, betas: torch.Tensor) -> torch.Tensor:
        """(B, 24, 3) rest joint positions for betas (B, N)."""
        return self.rest_keypoints(betas)[:, : skeleton.NUM_JOINTS]

    @property
    def smpl(self) -> smplx.SMPL:
        """The ``smplx.SMPL`` module over the same arrays (built on first use)."""
        if self._smpl is None:
            a = self.arrays
            shapedirs = a.shapedirs[..., : self.num_betas]
            if self.num_betas > SMPL_NUM_BETAS:
                # smplx keeps only 10 coefficients of a file with fewer than its full
                # SHAPE_SPACE_DIM; zero columns up to it keep all of ours.
                missing = smplx.SMPL.SHAPE_SPACE_DIM - self.num_betas
                shapedirs = np.concatenate([shapedirs, np.zeros((*shapedirs.shape[:2], missing), shapedirs.dtype)], -1)
            struct = Struct(v_template=a.v_template, f=a.faces, J_regressor=a.j_regressor,
                            weights=a.weights, shapedirs=shapedirs, posedirs=a.posedirs,
                            kintree_table=np.stack([np.array(skeleton.PARENTS), np.arange(skeleton.NUM_JOINTS)]))
            self._smpl = smplx.SMPL(model_path=str(self.path), data_struct=struct, num_betas=self.num_betas,
                                    vertex_ids=a.smplx_vertex_ids)
        return self._smpl

    def vertices(self, rotations: torch.Tensor, betas: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
        """Posed mesh vertices through smplx (linear blend skinning + correctives).

        Args:
            rotations: (B, 24, 3, 3) local rotations.
            betas: (B, N) shape coefficients.
            translation: (B, 3) root translation.
        Returns:
            (B, V, 3) vertices.
        """
        # The cached module stays float32 (Module.to works in place, and it is shared):
        # inputs are cast to it and the result back.
        smpl = self.smpl.to(rotations.device)
        f32 = dict(dtype=torch.float32)
        betas = torch.nn.functional.pad(betas, (0, self.num_betas - betas.shape[-1])).to(**f32)
        out = smpl(betas=betas, global_orient=rotations[:, :1].to(**f32), body_pose=rotations[:, 1:].to(**f32),
                   transl=translation.to(**f32), pose2rot=False)
        return out.vertices.to(rotations.dtype)
