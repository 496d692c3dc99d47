"""Typed, immutable outputs. Rotation matrices are for column vectors and relative to the parent
joint; everything is in the PIXIE frame (x right, y down, z forward) unless stated."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


def _map(obj, fn):
    kwargs = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if torch.is_tensor(v):
            v = fn(v)
        elif hasattr(v, "__dataclass_fields__"):
            v = _map(v, fn)
        kwargs[f.name] = v
    return type(obj)(**kwargs)


class _TensorDataclass:
    def to(self, *args, **kwargs):
        """Copy with every tensor moved/cast like ``Tensor.to``."""
        return _map(self, lambda t: t.to(*args, **kwargs))

    def detach_cpu(self):
        return _map(self, lambda t: t.detach().cpu())

    def map_tensors(self, fn):
        """Copy with ``fn`` applied to every tensor (nested dataclasses included)."""
        return _map(self, fn)

    def index(self, idx):
        """Select batch rows (an int, slice or index tensor)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return _map(self, lambda t: t[idx])


@dataclass(frozen=True)
class RawPrediction(_TensorDataclass):
    """Regressor outputs before decoding (upstream's ``param_dict['body']``), 6D/Euler encoded."""

    body_cam: torch.Tensor  #: (B, 3)
    global_pose: torch.Tensor  #: (B, 6)
    partbody_pose: torch.Tensor  #: (B, 102) 17 joints x 6D
    neck_pose: torch.Tensor  #: (B, 6)
    shape: torch.Tensor  #: (B, 200)
    exp: torch.Tensor  #: (B, 50)
    head_pose: torch.Tensor  #: (B, 6) absolute
    jaw_pose: torch.Tensor  #: (B, 3) Euler x-y-z, radians
    left_wrist_pose: torch.Tensor  #: (B, 6) absolute, right-hand frame (flipped back in decode)
    left_hand_pose: torch.Tensor  #: (B, 90) right-hand frame
    right_wrist_pose: torch.Tensor  #: (B, 6) absolute
    right_hand_pose: torch.Tensor  #: (B, 90)
    tex: torch.Tensor | None = None  #: (B, 50), from the head crop
    light: torch.Tensor | None = None  #: (B, 27), from the head crop


@dataclass(frozen=True)
class PartCrops(_TensorDataclass):
    """The crops the part experts saw, and where they were cut from the 1024² HD body crop.

    The images are None where they were left on the GPU (the batcher copies only the centres and
    sides back from an accelerator)."""

    head: torch.Tensor | None  #: (B, 3, 224, 224)
    left_hand: torch.Tensor | None  #: (B, 3, 224, 224) as cut (not flipped)
    right_hand: torch.Tensor | None  #: (B, 3, 224, 224)
    centers: torch.Tensor  #: (B, 3, 2) head, left, right; HD pixels
    sides: torch.Tensor  #: (B, 3) HD pixels


@dataclass(frozen=True)
class PixieParams(_TensorDataclass):
    """Decoded SMPL-X parameters in the ``smplx`` package's vocabulary (``SMPLXLayer`` shapes)."""

    betas: torch.Tensor  #: (B, 200)
    expression: torch.Tensor  #: (B, 50)
    global_orient: torch.Tensor  #: (B, 1, 3, 3) includes PIXIE's ~180° X flip (y-down frame)
    body_pose: torch.Tensor  #: (B, 21, 3, 3) relative
    jaw_pose: torch.Tensor  #: (B, 1, 3, 3)
    left_hand_pose: torch.Tensor  #: (B, 15, 3, 3) flat hand mean
    right_hand_pose: torch.Tensor  #: (B, 15, 3, 3)
    cam: torch.Tensor  #: (B, 3) weak perspective [s, tx, ty]
    abs_head_pose: torch.Tensor  #: (B, 1, 3, 3) the regressor's absolute head rotation
    abs_left_wrist_pose: torch.Tensor  #: (B, 1, 3, 3) absolute, as regressed (right-hand frame)
    abs_right_wrist_pose: torch.Tensor  #: (B, 1, 3, 3) absolute
    tex: torch.Tensor | None = None  #: (B, 50) albedo coefficients
    light: torch.Tensor | None = None  #: (B, 9, 3) SH lighting

    @property
    def batch_size(self) -> int:
        return self.betas.shape[0]

    def full_pose(self) -> torch.Tensor:
        """(B, 55, 3, 3): global, body, jaw, eyes (identity), left hand, right hand."""
        eye = torch.eye(3, dtype=self.body_pose.dtype, device=self.body_pose.device)
        eyes = eye.expand(self.batch_size, 2, 3, 3)
        return torch.cat(
            [self.global_orient, self.body_pose, self.jaw_pose, eyes, self.left_hand_pose, self.right_hand_pose],
            dim=1,
        )


@dataclass(frozen=True)
class PixieOutput(_TensorDataclass):
    """Everything ``decode`` produces for a batch of body crops."""

    params: PixieParams
    vertices: torch.Tensor  #: (B, V, 3) model space, no camera
    keypoints3d: torch.Tensor  #: (B, 145, 3) upstream ``smplx_kpt3d``/``joints``
    keypoints2d: torch.Tensor  #: (B, 145, 2) upstream ``smplx_kpt``: normalised body-crop coordinates
    face_keypoints2d: torch.Tensor  #: (B, 68, 2) contour first, as upstream ``face_kpt``
    transformed_vertices: torch.Tensor  #: (B, V, 3) weak-perspective projected vertices
    moderator_weights: torch.Tensor | None = None  #: (B, 3, 2) head, left, right x [body, part]
    joints_rest: torch.Tensor | None = None  #: (B, 55, 3) rest-pose joints J(betas, expression), y-up SMPL-X frame
    pose_correctives: torch.Tensor | None = None  #: (B, V, 3) pose-corrective offsets, rest frame
    crops: PartCrops | None = None
    raw: RawPrediction | None = None
    #: face appearance, added by the engine when it has the stage (``appearance/``); None otherwise
    appearance: AppearanceOutput | None = None

    def without_part_images(self) -> PixieOutput:
        """The same outputs with the part-crop images dropped (their centres and sides kept)."""
        from dataclasses import replace

        if self.crops is None:
            return self
        return replace(self, crops=replace(self.crops, head=None, left_hand=None, right_hand=None))


@dataclass(frozen=True)
class AppearanceOutput(_TensorDataclass):
    """Per-person face appearance in the SMPL-X UV layout of ``smplx_tex.obj`` (R x R, row 0 = top,
    v = 1), from :class:`~pixie_backend.appearance.model.FaceAppearance`. Absent features are None."""

    albedo: torch.Tensor | None = None  #: (B, 3, R, R) unlit RGB albedo, the model's scale (~[0, 1])
    lit: torch.Tensor | None = None  #: (B, 3, R, R) albedo x SH shading of the posed mesh
    photo: torch.Tensor | None = None  #: (B, 3, R, R) photo texels over the albedo
    displacement: torch.Tensor | None = None  #: (B, R, R) metres along the outward normal; 0 when gated off
    normal_map: torch.Tensor | None = None  #: (B, 3, R, R) tangent-space unit normals of the detail
    head_confidence: torch.Tensor | None = None  #: (B,) head moderator part weight (NaN if unknown)
    detail_gate: torch.Tensor | None = None  #: (B,) bool: detail computed (confidence > threshold)
