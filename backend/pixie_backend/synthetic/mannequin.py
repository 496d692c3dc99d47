"""A deterministic synthetic SMPL-X body ("mannequin") with the arrays of the official files.

``build_body_model()`` returns every array of ``SMPLX_NEUTRAL_2020.npz`` (keys and shapes of
``environment.md`` section 3.1) plus the UVs of ``smplx_tex.obj``, the 22 extra joints of
``smplx_extra_joints.yaml`` and the J14 regressor of ``SMPLX_to_J14.pkl``. Nothing here comes
from the licensed model: the body is box-modelled, refined with Catmull-Clark and rigged
procedurally.

Frame and pose are those of the SMPL-X template: metres, y up, facing +z, the person's left at
+x, T-pose with palms down, about 1.7 m tall, pelvis joint near ``(0, -0.35, 0.01)``.

Variants:

* ``"full"``: exactly 10475 vertices and 20908 triangles (the real model's counts) and
  ``2V - F = 42`` (two eyeballs, two eye openings and a mouth slit).
* ``"small"``: the same keys and trailing dimensions on a coarse mesh (about 2600 vertices) for
  fast tests.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ..constants import NUM_JOINTS, SMPLX_PARENTS
from . import blendshapes as bs
from . import landmarks as lm
from . import skinning as skn
from .body_mesh import build_body_mesh
from .meshops import snap, unique_edges, vertex_normals
from .skeleton import rest_joints
from .uv import uv_layout

#: Variant name -> (Catmull-Clark levels, eyeball cells per cube face, exact vertex count).
VARIANTS: dict[str, tuple[int, int, int | None]] = {
    "full": (2, 5, 10475),
    "small": (1, 2, None),
}
#: ``kintree_table[0, 0]``: the "no parent" value of the official files (smplx sets it to -1).
ROOT_PARENT = 2 ** 32 - 1

#: Keys of ``SMPLX_NEUTRAL_2020.npz``, in the order they are written.
NPZ_KEYS: tuple[str, ...] = (
    "v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table",
    "hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr",
    "lmk_faces_idx", "lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
)


@dataclass(frozen=True)
class BodyModel:
    """All arrays of the synthetic body. ``V`` vertices, ``F`` triangles, ``T`` UV vertices."""

    v_template: np.ndarray
    """``(V, 3)`` float64: rest vertices, m."""
    f: np.ndarray
    """``(F, 3)`` uint32: triangles, counter-clockwise seen from outside."""
    shapedirs: np.ndarray
    """``(V, 3, 400)`` float64: 300 shape then 100 expression directions, m per unit."""
    posedirs: np.ndarray
    """``(V, 3, 486)`` float64: pose correctives, m per unit of ``R_j - I`` (54 joints x 9)."""
    J_regressor: np.ndarray
    """``(55, V)`` float64: non-negative rows summing to one."""
    weights: np.ndarray
    """``(V, 55)`` float64: skin weights, at most 4 non-zeros per row, rows sum to one."""
    kintree_table: np.ndarray
    """``(2, 55)`` int64: parents (root ``ROOT_PARENT``) and joint ids."""
    hands_componentsl: np.ndarray
    """``(45, 45)`` float64: left-hand pose PCA, orthonormal rows."""
    hands_componentsr: np.ndarray
    """``(45, 45)`` float64: right-hand pose PCA."""
    hands_meanl: np.ndarray
    """``(45,)`` float64: mean left-hand pose, axis-angle."""
    hands_meanr: np.ndarray
    """``(45,)`` float64: mean right-hand pose, axis-angle."""
    lmk_faces_idx: np.ndarray
    """``(51,)`` int64: triangles of the static face landmarks (iBUG points 17..67)."""
    lmk_bary_coords: np.ndarray
    """``(51, 3)`` float64: their barycentric coordinates."""
    dynamic_lmk_faces_idx: np.ndarray
    """``(79, 17)`` int64: contour landmark triangles per head-yaw row."""
    dynamic_lmk_bary_coords: np.ndarray
    """``(79, 17, 3)`` float64: their barycentric coordinates."""
    vt: np.ndarray
    """``(T, 2)`` float64: UV coordinates in [0, 1] (``smplx_tex.obj``)."""
    ft: np.ndarray
    """``(F, 3)`` uint32: UV indices of each triangle, same order as ``f``."""
    extra_joint_faces: np.ndarray
    """``(22,)`` int64: triangles of the extra joints, ``constants.EXTRA_JOINT_NAMES`` order."""
    extra_joint_bary: np.ndarray
    """``(22, 3)`` float64: their barycentric coordinates."""
    j14_regressor: np.ndarray
    """``(14, V)`` float64: LSP-style joints, ``constants.J14_NAMES`` row order."""
    joints: np.ndarray
    """``(55, 3)`` float64: rest joints, equal to ``J_regressor @ v_template``."""

    def npz_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of ``SMPLX_NEUTRAL_2020.npz``, keyed as in the official file."""
        return {k: getattr(self, k) for k in NPZ_KEYS}

    def __eq__(self, other: object) -> bool:  # arrays: compare contents
        if not isinstance(other, BodyModel):
            return NotImplemented
        return all(np.array_equal(getattr(self, f.name), getattr(other, f.name))
                   for f in fields(self))

    __hash__ = None  # type: ignore[assignment]


def build_body_model(variant: str = "full", seed: int = 0) -> BodyModel:
    """Build the synthetic SMPL-X body.

    Args:
        variant: ``"full"`` (10475 vertices, 20908 triangles) or ``"small"`` (coarse mesh).
        seed: seed of ``numpy.random.default_rng`` for the random parts of the shape and
            expression bases and of the hand PCA; the geometry does not depend on it.

    Returns:
        The ``BodyModel``; equal seeds give identical arrays.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
    levels, eye_cells, target = VARIANTS[variant]
    rng = np.random.default_rng(seed)
    mesh = build_body_mesh(levels, eye_cells, target)
    v, faces = mesh.vertices, mesh.faces
    joints = rest_joints()

    labels = skn.vertex_labels(v, faces, mesh.face_region, joints, mesh.upper_lip, mesh.lower_lip)
    weights = skn.skin_weights(v, faces, labels, joints, np.concatenate([mesh.upper_lip,
                                                                         mesh.lower_lip]))
    j_reg = skn.joint_regressor(v, faces, labels, joints)
    j14 = skn.j14_regressor(v, faces, labels, joints)

    normals = vertex_normals(v, faces)
    shape = bs.shape_directions(v, normals, unique_edges(faces, len(v)), weights, joints, rng)
    expr = bs.expression_directions(v, normals, weights, mesh.layout, rng)
    posedirs = bs.pose_directions(v, weights, joints)
    comp_l, comp_r, mean_l, mean_r = bs.hand_pca(rng)

    lmk_f, lmk_b = lm.static_landmarks(mesh)
    dyn_f, dyn_b = lm.contour_table(mesh, joints)
    ext_f, ext_b = lm.extra_joints(mesh, joints)
    vt, ft = uv_layout(v, faces, mesh.face_region, mesh.face_patch)

    kintree = np.stack([np.array(SMPLX_PARENTS, dtype=np.int64), np.arange(NUM_JOINTS)])
    kintree[0, 0] = ROOT_PARENT
    # every float array leaves on the snap grid (see meshops.snap): byte-identical files for a
    # seed on any machine and thread count; regressor rows are renormalised after snapping
    j_reg, j14 = _snap_rows(j_reg), _snap_rows(j14)
    return BodyModel(
        v_template=v.astype(np.float64),
        f=faces.astype(np.uint32),
        shapedirs=snap(np.concatenate([shape, expr], axis=2)),
        posedirs=snap(posedirs),
        J_regressor=j_reg,
        weights=weights,
        kintree_table=kintree,
        hands_componentsl=comp_l,
        hands_componentsr=comp_r,
        hands_meanl=snap(mean_l),
        hands_meanr=snap(mean_r),
        lmk_faces_idx=lmk_f.astype(np.int64),
        lmk_bary_coords=_snap_rows(lmk_b),
        dynamic_lmk_faces_idx=dyn_f.astype(np.int64),
        dynamic_lmk_bary_coords=_snap_rows(dyn_b),
        vt=snap(vt),
        ft=ft.astype(np.uint32),
        extra_joint_faces=ext_f.astype(np.int64),
        extra_joint_bary=_snap_rows(ext_b),
        j14_regressor=j14,
        joints=snap(j_reg @ v),
    )


def _snap_rows(w: np.ndarray) -> np.ndarray:
    """Snap convex weights (rows along the last axis) and make each row sum to one again."""
    w = snap(w)
    return w / w.sum(axis=-1, keepdims=True)
