"""PIXIE inference on body crops: coarse pass, part crops, moderator fusion, decode.

This is upstream ``PIXIE.encode(threthold=True, keep_local=True, copy_and_paste=False)`` followed
by ``PIXIE.decode(..., 'body')``, batched stage by stage: every stage runs once for the whole
batch (both hands together through the hand expert), and nothing mutates its inputs.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from . import constants as C
from .body.pose import absolute_to_relative, assemble_body_pose, check_head_pose
from .body.smplx_layer import PixieSMPLX
from .config import PixieConfig
from .geometry.camera import weak_perspective
from .geometry.rotations import euler_xyz_to_rotmat, flip_pose_lr, rot6d_grouped_to_rotmat
from .nets.pixie_net import PixieNet, split_outputs
from .preprocess.crop import crop_parts, part_square
from .types import PartCrops, PixieOutput, PixieParams, RawPrediction

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class CoarsePass:
    """What :meth:`PixieModel.coarse` computes from the body crop."""

    f_body: torch.Tensor  #: (B, F) body encoder features
    f_head_ext: torch.Tensor  #: (B, F) extractor features for the head ...
    f_left_ext: torch.Tensor  #: ... and the hands
    f_right_ext: torch.Tensor
    body: dict[str, torch.Tensor]  #: the body regressor's outputs: body_cam, global_pose, partbody_pose, neck_pose
    raw: RawPrediction  #: the coarse prediction (body + share regressors on extractor features)
    keypoints2d: torch.Tensor  #: (B, 145, 2) coarse projected keypoints (they place the part crops)


class PixieModel(nn.Module):
    """Networks + SMPL-X layer. Inputs are body crops; see :meth:`forward`.

    The model takes ``net`` and ``smplx`` over and converts them, in place, to ``cfg.dtype`` before
    it derives anything from them (the folded encoders of ``speed="fast"`` are computed in that
    dtype, so ``fast`` and ``exact`` agree to float64 rounding in a float64 model).
    A plain ``nn.Module``: ``.to()``, ``.train()`` and autograd work as usual, and the caller chooses
    ``torch.inference_mode()`` (the :class:`~pixie_backend.runtime.engine.Engine` does).
    """

    def __init__(self, net: PixieNet, smplx: PixieSMPLX, cfg: PixieConfig | None = None):
        super().__init__()
        self.cfg = cfg or PixieConfig()
        self.net = net.to(self.cfg.torch_dtype)
        self.smplx = smplx.to(self.cfg.torch_dtype)
        #: the encoders that run (``net``'s own, or folded channels-last copies in ``fast`` mode);
        #: a plain dict, so they are not part of this module's state dict
        self._encoders: dict[str, nn.Module] = {}
        self.use_speed(self.cfg.speed)

    def use_speed(self, speed: str) -> None:
        """Select ``exact`` or ``fast`` encoders (see :data:`~pixie_backend.config.Speed`) at the
        configured precision; see :meth:`configure`."""
        self.configure(speed=speed)

    def configure(self, speed: str | None = None, precision: str | None = None, compile: str | None = None) -> None:
        """Build the encoders that run, for the device the weights are on now.

        * ``exact``: the encoders as loaded; bf16/fp16 through ``torch.autocast`` on the images' device.
        * ``fast``: batch norm folded into the convolutions (in the model's dtype), channels-last,
          and for bf16/fp16 the folded weights cast once to that type after the first convolution
          (:func:`~pixie_backend.nets.lowp.low_precision_copy`: the input normalisation and the
          stem convolution stay in the model's dtype), so the encoders run in it with no per-call
          weight casts and none of the fp32 islands autocast keeps for upsampling.
        * The heads, moderators, part crops and SMPL-X always run in the model's dtype.

        The fast copies are snapshots of ``net`` on its current device: call this again after
        moving the model or changing its weights (the :class:`~pixie_backend.runtime.engine.Engine`
        does). ``precision="auto"`` is resolved here, for that device.

        Args:
            speed: ``exact`` or ``fast`` (default: ``cfg.speed``).
            precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (default: ``cfg.precision``).
            compile: ``off`` or a ``torch.compile`` mode for the encoders (default: ``cfg.compile``).
        """
        from .runtime.device import resolve_precision

        speed = speed or self.cfg.speed
        compile = compile or self.cfg.compile
        if speed not in ("exact", "fast"):
            raise ValueError(f"speed must be 'exact' or 'fast', not {speed!r}")
        device = next(self.net.parameters()).device
        choice = resolve_precision(precision or self.cfg.precision, device, self.cfg.dtype)
        lowp = _AUTOCAST_DTYPES.get(choice.precision)
        names = ("Encoder_body", "Encoder_head", "Encoder_hand")
        if speed == "exact":
            encoders = {n: self.net.submodule(n) for n in names}
        else:
            from .nets.fuse import folded_copy
            from .nets.lowp import low_precision_copy

            encoders = {}
            for n in names:
                folded = folded_copy(self.net.submodule(n))[0]
                if lowp is not None:
                    folded = low_precision_copy(folded, lowp)
                encoders[n] = folded.to(memory_format=torch.channels_last)
        if compile != "off":
            encoders = {n: torch.compile(e, mode=compile) for n, e in encoders.items()}
        self._encoders = encoders
        self._channels_last = speed == "fast"
        self._autocast_dtype = lowp if speed == "exact" else None
        self.precision = choice  #: what the encoders run in, and why (a PrecisionChoice)
        self.speed = speed
        self.compiled = compile

    def encoder(self, name: str) -> nn.Module:
        """The encoder that runs for ``Encoder_body``/``Encoder_head``/``Encoder_hand``."""
        return self._encoders[name]

    # ---------------------------------------------------------------- helpers
    def _autocast(self, device: torch.device):
        if self._autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device.type, dtype=self._autocast_dtype)

    def _encode_images(self, name: str, images: torch.Tensor) -> torch.Tensor:
        """Run a CNN encoder at the configured precision; features come back in the images' dtype
        (float32, or float64 for a float64 model)."""
        encoder = self._encoders[name]
        x = images
        if self._channels_last:
            weight_device = next(encoder.parameters()).device
            if weight_device != images.device:
                raise RuntimeError(f"the fast encoders are on {weight_device}, the images on {images.device}: "
                                   "call use_speed('fast') after moving the model")
            x = images.contiguous(memory_format=torch.channels_last)
        with self._autocast(images.device):
            return encoder(x).to(images.dtype)

    def _head_share(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        return split_outputs(self.net.Regressor_head_share(feat), C.HEAD_SHARE_OUTPUTS)

    def _hand_share(self, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        return split_outputs(self.net.Regressor_hand_share(feat), C.HAND_SHARE_OUTPUTS)

    def _assemble_raw(self, body, head_share, left, right, tex=None, light=None) -> RawPrediction:
        return RawPrediction(
            body_cam=body["body_cam"], global_pose=body["global_pose"],
            partbody_pose=body["partbody_pose"], neck_pose=body["neck_pose"],
            shape=head_share["shape"], exp=head_share["exp"], head_pose=head_share["head_pose"],
            jaw_pose=head_share["jaw_pose"],
            left_wrist_pose=left["right_wrist_pose"], left_hand_pose=left["right_hand_pose"],
            right_wrist_pose=right["right_wrist_pose"], right_hand_pose=right["right_hand_pose"],
            tex=tex, light=light,
        )

    def _fuse_hand(self, f_ext: torch.Tensor, f_part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused, w = self.net.Moderator_hand_share(f_ext, f_part)
        fusion = self.cfg.fusion
        if fusion.copy_and_paste:
            return f_part, w
        if fusion.hand_threshold is not None:
            # upstream: part weight strictly above the threshold -> fully trust the hand crop,
            # computed with the (1 - w) form for every sample (as upstream does)
            w_part = w[:, 1:2]
            w_part = torch.where(w_part > fusion.hand_threshold, torch.ones_like(w_part), w_part)
            return f_ext * (1.0 - w_part) + f_part * w_part, w
        return fused, w

    # ---------------------------------------------------------------- encode
    def coarse(self, image: torch.Tensor) -> CoarsePass:
        """The body path: the body encoder, the body regressor and the coarse keypoints that
        place the part crops (everything that depends on the 224² body crop alone).

        Args:
            image: (B, 3, 224, 224) RGB in [0, 1].
        """
        net = self.net
        b = image.shape[0]
        f_body = self._encode_images("Encoder_body", image)
        f_head_ext = net.Extractor_head_share(f_body)
        f_left_ext = net.Extractor_left_hand_share(f_body)
        f_right_ext = net.Extractor_right_hand_share(f_body)
        # body regressor (kept for the final result) + share regressors on extractor features
        body = split_outputs(net.Regressor_body(f_body), C.BODY_OUTPUTS)
        hands = self._hand_share(torch.cat([f_left_ext, f_right_ext]))
        raw = self._assemble_raw(
            body, self._head_share(f_head_ext),
            {k: v[:b] for k, v in hands.items()}, {k: v[b:] for k, v in hands.items()},
        )
        kpt = self.decode(raw, with_projection_only=True)
        return CoarsePass(f_body, f_head_ext, f_left_ext, f_right_ext, body, raw, kpt)

    def encode(self, image: torch.Tensor, image_hd: torch.Tensor) -> tuple[RawPrediction, torch.Tensor, PartCrops]:
        """Upstream ``encode`` for body images.

        Args:
            image: (B, 3, 224, 224) RGB in [0, 1], the body crop.
            image_hd: (B, 3, H, H) RGB in [0, 1], the same crop at high resolution (1024).

        Returns:
            raw predictions, moderator weights (B, 3, 2) [head, left, right] x [body, part] (raw
            softmax), and the part crops.
        """
        _check_images(image, image_hd)
        net, crop = self.net, self.cfg.crop
        b = image.shape[0]
        coarse_pass = self.coarse(image)
        f_head_ext, f_left_ext, f_right_ext = coarse_pass.f_head_ext, coarse_pass.f_left_ext, coarse_pass.f_right_ext
        body, kpt = coarse_pass.body, coarse_pass.keypoints2d

        # part crops from the HD image
        hd = image_hd.shape[-1]
        rows = (C.FACE_KPT_ROWS, C.LEFT_HAND_KPT_ROWS, C.RIGHT_HAND_KPT_ROWS)
        scales = (crop.head_scale, crop.hand_scale, crop.hand_scale)
        boxes = [part_square(kpt[:, list(r)], hd, s) for r, s in zip(rows, scales, strict=True)]
        centers = torch.stack([c for c, _ in boxes], dim=1)  # (B, 3, 2)
        sides = torch.stack([s for _, s in boxes], dim=1)  # (B, 3)
        cut = crop_parts(image_hd, centers, sides, crop.image_size, crop.part_convention)
        head_img, left_img, right_img = cut.unbind(1)

        # part experts (the left hand is mirrored so the right-hand expert can read it)
        f_head = self._encode_images("Encoder_head", head_img)
        f_hands = self._encode_images("Encoder_hand", torch.cat([left_img.flip(-1), right_img]))
        head_part = split_outputs(net.Regressor_head(f_head), C.HEAD_OUTPUTS)
        head_local = self._head_share(f_head)
        hands_local = self._hand_share(f_hands)

        # moderators
        if self.cfg.fusion.copy_and_paste:
            f_head_fused, w_head = f_head, net.Moderator_head_share(f_head_ext, f_head)[1]
        else:
            f_head_fused, w_head = net.Moderator_head_share(f_head_ext, f_head)
        f_hands_fused, w_hands = self._fuse_hand(torch.cat([f_left_ext, f_right_ext]), f_hands)

        # final regression on fused features; body parameters stay those of the coarse pass
        head_share = self._head_share(f_head_fused)
        hands_final = self._hand_share(f_hands_fused)
        left = {k: v[:b] for k, v in hands_final.items()}
        right = {k: v[b:] for k, v in hands_final.items()}
        if self.cfg.fusion.keep_local:
            head_share = {**head_share, "exp": head_local["exp"]}
            left = {**left, "right_hand_pose": hands_local["right_hand_pose"][:b]}
            right = {**right, "right_hand_pose": hands_local["right_hand_pose"][b:]}
        raw = self._assemble_raw(body, head_share, left, right, head_part["tex"], head_part["light"])
        weights = torch.stack([w_head, w_hands[:b], w_hands[b:]], dim=1)
        crops = PartCrops(head=head_img, left_hand=left_img, right_hand=right_img, centers=centers, sides=sides)
        return raw, weights, crops

    # ---------------------------------------------------------------- decode
    def decode_params(self, raw: RawPrediction) -> PixieParams:
        """Rotations, left-side flip, body-pose assembly, absolute→relative, ``check_pose``."""
        b = raw.body_cam.shape[0]
        global_orient = rot6d_grouped_to_rotmat(raw.global_pose)
        partbody = rot6d_grouped_to_rotmat(raw.partbody_pose)
        neck = rot6d_grouped_to_rotmat(raw.neck_pose)
        abs_head = rot6d_grouped_to_rotmat(raw.head_pose)
        jaw = euler_xyz_to_rotmat(raw.jaw_pose)[:, None]
        abs_left_regressed = rot6d_grouped_to_rotmat(raw.left_wrist_pose)
        left_wrist = flip_pose_lr(abs_left_regressed)
        right_wrist = rot6d_grouped_to_rotmat(raw.right_wrist_pose)
        left_hand = flip_pose_lr(rot6d_grouped_to_rotmat(raw.left_hand_pose))
        right_hand = rot6d_grouped_to_rotmat(raw.right_hand_pose)

        body_pose = assemble_body_pose(partbody, neck, abs_head, left_wrist, right_wrist)
        for chain in (C.HEAD_CHAIN, C.LEFT_WRIST_CHAIN, C.RIGHT_WRIST_CHAIN):
            body_pose = absolute_to_relative(global_orient, body_pose, chain)
        if self.cfg.fusion.check_pose:
            body_pose = check_head_pose(body_pose)
        light = raw.light.reshape(b, 9, 3) if raw.light is not None else None
        return PixieParams(
            betas=raw.shape, expression=raw.exp, global_orient=global_orient, body_pose=body_pose,
            jaw_pose=jaw, left_hand_pose=left_hand, right_hand_pose=right_hand, cam=raw.body_cam,
            abs_head_pose=abs_head, abs_left_wrist_pose=abs_left_regressed, abs_right_wrist_pose=right_wrist,
            tex=raw.tex, light=light,
        )

    def decode(self, raw: RawPrediction, with_projection_only: bool = False):
        """Decode raw predictions to a posed SMPL-X body.

        Returns:
            :class:`PixieOutput`; with ``with_projection_only`` just the projected keypoints
            (B, 145, 2) in normalised crop coordinates (what the part crops need).
        """
        params = self.decode_params(raw)
        body = self.smplx(params.betas, params.expression, params.full_pose())
        kpt2d = weak_perspective(body.keypoints, params.cam)[..., :2]
        if with_projection_only:
            return kpt2d
        face = weak_perspective(body.landmarks, params.cam)[..., :2]
        face = torch.cat([face[:, -C.NUM_CONTOUR_LANDMARKS:], face[:, :-C.NUM_CONTOUR_LANDMARKS]], dim=1)
        return PixieOutput(
            params=params, vertices=body.vertices, keypoints3d=body.keypoints, keypoints2d=kpt2d,
            face_keypoints2d=face, transformed_vertices=weak_perspective(body.vertices, params.cam), raw=raw,
            joints_rest=body.rest_joints, pose_correctives=body.pose_correctives,
        )

    def forward(self, image: torch.Tensor, image_hd: torch.Tensor) -> PixieOutput:
        """Body crops in, decoded bodies out (upstream ``encode`` + ``decode(..., 'body')``)."""
        raw, weights, crops = self.encode(image, image_hd)
        out = self.decode(raw)
        return PixieOutput(**{**out.__dict__, "moderator_weights": weights, "crops": crops})


def _check_images(image: torch.Tensor, image_hd: torch.Tensor) -> None:
    if not (torch.is_tensor(image) and torch.is_tensor(image_hd)):
        raise TypeError("image and image_hd must be torch tensors (B, 3, H, W) in [0, 1]")
    if image.ndim != 4 or image.shape[1] != 3 or image.shape[-2:] != (224, 224):
        raise ValueError(f"image must be (B, 3, 224, 224), got {tuple(image.shape)}")
    if image_hd.ndim != 4 or image_hd.shape[1] != 3 or image_hd.shape[-1] != image_hd.shape[-2]:
        raise ValueError(f"image_hd must be (B, 3, H, H), got {tuple(image_hd.shape)}")
    if image_hd.shape[0] != image.shape[0]:
        raise ValueError(f"batch sizes differ: image {image.shape[0]}, image_hd {image_hd.shape[0]}")
