"""PIXIE's SMPL-X layer: ``smplx.lbs`` plus PIXIE's 145-keypoint assembly.

* 200 shape (``shapedirs[..., :200]``) + 50 expression (``shapedirs[..., 300:350]``) coefficients,
  rotation-matrix poses, flat hand mean, identity eyes, no translation.
* Keypoints (B, 145, 3): the 55 LBS joints, 51 static face landmarks, 17 dynamic contour landmarks
  (chosen by the head's yaw along the chain pelvis→spine→neck→**head**), 22 extra vertex joints
  (``smplx_extra_joints.yaml``), then 14 rows overwritten by the J14 regressor.

LBS, landmark interpolation and the contour look-up are the ``smplx`` package's functions.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from smplx.lbs import (
    blend_shapes,
    find_dynamic_lmk_idx_and_bcoords,
    transform_mat,
    vertices2joints,
    vertices2landmarks,
)
from torch import nn

from .. import constants as C


class ModelFileError(ValueError):
    """A model file exists but does not have the expected content."""


@dataclass(frozen=True)
class SMPLXOutput:
    """Posed body, PIXIE frame, no camera."""

    vertices: torch.Tensor  #: (B, V, 3)
    keypoints: torch.Tensor  #: (B, 145, 3) PIXIE layout, J14 override applied
    landmarks: torch.Tensor  #: (B, 68, 3) 51 static then 17 contour landmarks
    joints: torch.Tensor  #: (B, 55, 3) posed LBS joints
    rest_joints: torch.Tensor  #: (B, 55, 3) rest-pose joints J(betas, expression), y-up SMPL-X frame
    pose_correctives: torch.Tensor  #: (B, V, 3) pose-corrective offsets posedirs . (R - I), rest frame


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only (no arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # protocol-2 pickles written by Python 3 store bytes this way
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def load_pickled_array(path: str | os.PathLike) -> np.ndarray:
    """Read a pickled numpy array (``SMPLX_to_J14.pkl``) without executing arbitrary code."""
    data = Path(path).read_bytes()
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path} is not a pickled numpy array: {e}") from None
    if not isinstance(obj, np.ndarray):
        raise ModelFileError(f"{path} holds a {type(obj).__name__}, expected a numpy array")
    return obj


def load_extra_joints(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``smplx_extra_joints.yaml`` -> face ids (22,) and barycentrics (22, 3), in file order."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        faces = np.array([int(v["face"]) for v in data.values()], dtype=np.int64)
        bcs = np.array([[float(b) for b in v["bc"]] for v in data.values()], dtype=np.float32)
    except Exception as e:  # noqa: BLE001
        raise ModelFileError(f"{path} is not a valid extra-joints file: {e}") from None
    if list(data) != list(C.EXTRA_JOINT_NAMES):
        raise ModelFileError(f"{path}: expected the 22 extra joints {C.EXTRA_JOINT_NAMES}, found {list(data)}")
    return faces, bcs


_NPZ_KEYS = (
    "v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
    "lmk_faces_idx", "lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
)


def load_smplx_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays PIXIE reads from ``SMPLX_NEUTRAL_2020.npz``, shape-checked."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _NPZ_KEYS if k not in z.files]
            if missing:
                raise ModelFileError(f"{path} lacks {missing}; is it an SMPL-X .npz model?")
            arrays = {k: np.asarray(z[k]) for k in _NPZ_KEYS}
    except ModelFileError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt zip, pickled arrays, ...
        raise ModelFileError(f"{path} is not a readable SMPL-X .npz file: {e}") from None
    v = arrays["v_template"].shape[0]
    need = {
        "v_template": (v, 3), "shapedirs": (v, 3, None), "posedirs": (v, 3, C.NUM_POSE_BASIS),
        "J_regressor": (C.NUM_JOINTS, v), "weights": (v, C.NUM_JOINTS), "kintree_table": (2, C.NUM_JOINTS),
        "lmk_faces_idx": (C.NUM_STATIC_LANDMARKS,), "lmk_bary_coords": (C.NUM_STATIC_LANDMARKS, 3),
        "dynamic_lmk_faces_idx": (C.NUM_DYNAMIC_LUT_ROWS, C.NUM_CONTOUR_LANDMARKS),
        "dynamic_lmk_bary_coords": (C.NUM_DYNAMIC_LUT_ROWS, C.NUM_CONTOUR_LANDMARKS, 3),
    }
    for key, shape in need.items():
        got = arrays[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got, strict=True)):
            raise ModelFileError(f"{path}: {key} has shape {got}, expected {shape}")
    if arrays["shapedirs"].shape[2] < C.EXPRESSION_OFFSET + C.NUM_EXPRESSION:
        raise ModelFileError(
            f"{path}: shapedirs has {arrays['shapedirs'].shape[2]} components; PIXIE needs the 2020 "
            "model with 300 shape + 100 expression components (SMPLX_NEUTRAL_2020.npz)"
        )
    return arrays


class PixieSMPLX(nn.Module):
    """SMPL-X as PIXIE evaluates it. Buffers only; move with ``.to(device)``."""

    def __init__(self, arrays: dict[str, np.ndarray], extra_faces: np.ndarray, extra_bcs: np.ndarray,
                 j14: np.ndarray):
        super().__init__()
        f32 = torch.float32
        v = arrays["v_template"].shape[0]
        if j14.shape != (len(C.J14_NAMES), v):
            raise ModelFileError(f"J14 regressor has shape {j14.shape}, expected (14, {v})")
        shapedirs = np.concatenate(
            [arrays["shapedirs"][:, :, : C.NUM_BETAS],
             arrays["shapedirs"][:, :, C.EXPRESSION_OFFSET: C.EXPRESSION_OFFSET + C.NUM_EXPRESSION]], axis=2
        )
        parents = arrays["kintree_table"][0].astype(np.int64)
        parents[0] = -1
        self.register_buffer("v_template", torch.tensor(arrays["v_template"], dtype=f32))
        self.register_buffer("shapedirs", torch.tensor(shapedirs, dtype=f32))
        self.register_buffer(
            "posedirs", torch.tensor(arrays["posedirs"].reshape(-1, C.NUM_POSE_BASIS).T, dtype=f32)
        )
        self.register_buffer("J_regressor", torch.tensor(arrays["J_regressor"], dtype=f32))
        self.register_buffer("parents", torch.tensor(parents))
        #: the kinematic tree as Python ints, for the per-joint loop (no device sync per joint on a GPU)
        self.parent_list: list[int] = [int(p) for p in parents]
        self.register_buffer("lbs_weights", torch.tensor(arrays["weights"], dtype=f32))
        self.register_buffer("faces", torch.tensor(arrays["f"].astype(np.int64)))
        self.register_buffer("lmk_faces_idx", torch.tensor(arrays["lmk_faces_idx"].astype(np.int64)))
        self.register_buffer("lmk_bary_coords", torch.tensor(arrays["lmk_bary_coords"], dtype=f32))
        self.register_buffer("dyn_lmk_faces_idx", torch.tensor(arrays["dynamic_lmk_faces_idx"].astype(np.int64)))
        self.register_buffer("dyn_lmk_bary_coords", torch.tensor(arrays["dynamic_lmk_bary_coords"], dtype=f32))
        self.register_buffer("head_chain", torch.tensor(C.HEAD_CHAIN, dtype=torch.long))
        self.register_buffer("extra_vertex_ids", torch.tensor(arrays["f"].astype(np.int64)[extra_faces]))
        self.register_buffer("extra_bcs", torch.tensor(extra_bcs, dtype=f32))
        self.register_buffer("j14_regressor", torch.tensor(j14, dtype=f32))
        self.register_buffer("j14_rows", torch.tensor(C.J14_TARGET_ROWS, dtype=torch.long))

    @classmethod
    def from_files(cls, smplx_npz: str | os.PathLike, extra_joints_yaml: str | os.PathLike,
                   j14_pkl: str | os.PathLike) -> PixieSMPLX:
        arrays = load_smplx_npz(smplx_npz)
        faces, bcs = load_extra_joints(extra_joints_yaml)
        if faces.max() >= arrays["f"].shape[0]:
            raise ModelFileError(f"{extra_joints_yaml} refers to triangle {faces.max()}, the model has "
                                 f"{arrays['f'].shape[0]}: files from different models?")
        return cls(arrays, faces, bcs, load_pickled_array(j14_pkl).astype(np.float32))

    @property
    def num_vertices(self) -> int:
        return self.v_template.shape[0]

    def rest_joints(self, betas: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Rest-pose joints ``J(betas, expression)``: (B, 55, 3), y-up SMPL-X frame (the rest joints
        :meth:`forward` computes, without posing anything)."""
        coeffs = torch.cat([betas, expression], dim=1)
        return vertices2joints(self.J_regressor, self.v_template + blend_shapes(coeffs, self.shapedirs))

    def forward(self, betas: torch.Tensor, expression: torch.Tensor, full_pose: torch.Tensor) -> SMPLXOutput:
        """
        Args:
            betas: (B, 200).
            expression: (B, 50).
            full_pose: (B, 55, 3, 3) relative rotations in SMPL-X joint order.
        """
        b = betas.shape[0]
        coeffs = torch.cat([betas, expression], dim=1)
        verts, joints, rest_joints, correctives = _lbs(coeffs, full_pose, self.v_template, self.shapedirs,
                                                       self.posedirs, self.J_regressor, self.parents,
                                                       self.lbs_weights, self.parent_list)
        dyn_idx, dyn_bary = find_dynamic_lmk_idx_and_bcoords(
            verts, full_pose, self.dyn_lmk_faces_idx, self.dyn_lmk_bary_coords, self.head_chain, pose2rot=False
        )
        lmk_idx = torch.cat([self.lmk_faces_idx.expand(b, -1), dyn_idx], dim=1)
        lmk_bary = torch.cat([self.lmk_bary_coords.expand(b, -1, -1), dyn_bary], dim=1)
        landmarks = vertices2landmarks(verts, self.faces, lmk_idx, lmk_bary)
        extra = (verts[:, self.extra_vertex_ids] * self.extra_bcs[None, :, :, None]).sum(dim=2)
        keypoints = torch.cat([joints, landmarks, extra], dim=1)
        j14 = torch.einsum("jv,bvk->bjk", self.j14_regressor, verts)
        keypoints = keypoints.index_copy(1, self.j14_rows, j14)
        return SMPLXOutput(vertices=verts, keypoints=keypoints, landmarks=landmarks, joints=joints,
                           rest_joints=rest_joints, pose_correctives=correctives)


def _rigid_transform(rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor,
                     parent_list: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``smplx.lbs.batch_rigid_transform``, the same operations in the same order, with the
    kinematic chain walked over Python ints: upstream indexes a Python list with a tensor element
    at each of the 54 joints, which on a GPU waits for the device every time.

    Args:
        rot_mats: (B, J, 3, 3) relative rotations; joints: (B, J, 3) rest joints;
        parents: (J,) int64 on the joints' device (-1 for the root); parent_list: the same as ints.

    Returns:
        posed joints (B, J, 3) and relative transforms (B, J, 4, 4).
    """
    joints = torch.unsqueeze(joints, dim=-1)
    rel_joints = joints.clone()
    rel_joints[:, 1:] -= joints[:, parents[1:]]
    transforms_mat = transform_mat(rot_mats.reshape(-1, 3, 3), rel_joints.reshape(-1, 3, 1)).reshape(
        -1, joints.shape[1], 4, 4)
    chain = [transforms_mat[:, 0]]
    for i in range(1, len(parent_list)):
        chain.append(torch.matmul(chain[parent_list[i]], transforms_mat[:, i]))
    transforms = torch.stack(chain, dim=1)
    posed_joints = transforms[:, :, :3, 3]
    joints_homogen = F.pad(joints, [0, 0, 0, 1])
    rel_transforms = transforms - F.pad(torch.matmul(transforms, joints_homogen), [3, 0, 0, 0, 0, 0, 0, 0])
    return posed_joints, rel_transforms


def _lbs(coeffs, rotmats, v_template, shapedirs, posedirs, j_regressor, parents, lbs_weights, parent_list=None):
    """``smplx.lbs.lbs(..., pose2rot=False)`` step by step, with the same ``smplx`` functions (the
    rigid transform re-stated in :func:`_rigid_transform`) and the same operations in the same
    order (so the same numbers, checked in ``tests/backend/test_model.py``), also returning the
    rest joints and the pose correctives it computes on the way.

    Args:
        coeffs: (B, 250) betas then expression.
        rotmats: (B, 55, 3, 3) relative rotations.

    Returns:
        vertices (B, V, 3), posed joints (B, 55, 3), rest joints (B, 55, 3), correctives (B, V, 3).
    """
    b = coeffs.shape[0]
    v_shaped = v_template + blend_shapes(coeffs, shapedirs)
    rest_joints = vertices2joints(j_regressor, v_shaped)
    ident = torch.eye(3, dtype=coeffs.dtype, device=coeffs.device)
    pose_feature = rotmats[:, 1:].view(b, -1, 3, 3) - ident
    rot_mats = rotmats.view(b, -1, 3, 3)
    correctives = torch.matmul(pose_feature.view(b, -1), posedirs).view(b, -1, 3)
    v_posed = correctives + v_shaped
    joints, transforms = _rigid_transform(rot_mats, rest_joints, parents,
                                          parent_list if parent_list is not None else parents.tolist())
    weights = lbs_weights.unsqueeze(dim=0).expand([b, -1, -1])
    t = torch.matmul(weights, transforms.view(b, j_regressor.shape[0], 16)).view(b, -1, 4, 4)
    ones = torch.ones([b, v_posed.shape[1], 1], dtype=coeffs.dtype, device=coeffs.device)
    v_homo = torch.matmul(t, torch.unsqueeze(torch.cat([v_posed, ones], dim=2), dim=-1))
    return v_homo[:, :, :3, 0], joints, rest_joints, correctives
