"""An engine for end-to-end identity tests of the sequence job on synthetic clips.

The synthetic network has random weights: whatever a crop shows, its keypoints fill the crop in
about the same pattern, shifted and jittered by its random response. The tracker follows people
by their keypoints, and a crop proposed from the previous frame's keypoints is framed like a
detection, so with random weights the proposals drift off the person frame after frame, which
says nothing about the job. A real network puts the keypoints on the person.

:class:`SilhouetteEngine` runs the real (tiny, random) network, then puts each crop's keypoints
where the person in that crop is: it finds the rendered body in the crop (the synthetic frames
have a background of blue 110 with red 70-130 and green 80-130, and bodies coloured by person: red
over blue for the first, blue over red for the second; the crop's padding is black; JPEG noise is
tolerated), takes the body the crop is centred
on, and maps a fixed keypoint template into that body's box. Everything else (decoding, crops,
proposals, batches, commits, the tracker) is the job's own. If a crop misses its person, its
keypoints land on whatever the crop shows, as a network's would.
"""

from __future__ import annotations

import dataclasses

import torch
from pixie_backend.runtime.engine import Engine


class SilhouetteEngine(Engine):
    """An :class:`Engine` on ``base``'s model whose keypoints sit on the crop's rendered body."""

    def __init__(self, base: Engine):
        super().__init__(base.model, base.files)
        grey = torch.full((1, 3, 224, 224), 0.5)
        kp = super().infer(grey, torch.nn.functional.interpolate(grey, size=base.config.crop.hd_size)).keypoints2d[0]
        lo, hi = kp.min(dim=0).values, kp.max(dim=0).values
        self.template = ((kp - lo) / (hi - lo)).cpu()  # (145, 2) in the unit box

    def infer(self, image: torch.Tensor, image_hd: torch.Tensor):
        return self._on_bodies(image, super().infer(image, image_hd))

    def infer_batch(self, parts):
        """The batcher's entry point: body crops cut on the CPU (this engine runs on the CPU)."""
        if any(not isinstance(p, tuple) for p in parts):
            raise TypeError("SilhouetteEngine takes body crops cut on the CPU, not device images")
        return self._on_bodies(torch.cat([p[0] for p in parts]), super().infer_batch(parts))

    def _on_bodies(self, image: torch.Tensor, out):
        kps = out.keypoints2d.clone()
        for i in range(image.shape[0]):
            box = body_box(image[i].float().cpu())
            if box is not None:
                x1, y1, x2, y2 = (v / 112.0 - 1.0 for v in box)  # crop pixels -> normalised [-1, 1]
                t = self.template.to(kps)
                kps[i, :, 0] = x1 + t[:, 0] * (x2 - x1)
                kps[i, :, 1] = y1 + t[:, 1] * (y2 - y1)
        return dataclasses.replace(out, keypoints2d=kps)


def body_box(crop: torch.Tensor) -> tuple[float, float, float, float] | None:
    """(x1, y1, x2, y2) crop pixels of the body the crop is centred on, from a (3, 224, 224) crop
    in [0, 1]; None if the crop shows no body."""
    rgb = crop * 255.0
    r, b = rgb[0], rgb[2]
    g = rgb[1]
    background = ((b - 110.0).abs() <= 8.0) & (r > 62.0) & (r < 138.0) & (g > 72.0) & (g < 138.0)
    body = ~background & (rgb.max(dim=0).values > 30.0)  # JPEG noise tolerated; padding is black
    first, second = body & (r > b + 8), body & (b > r + 8)
    centre = (slice(78, 146), slice(78, 146))
    mask = first if first[centre].sum() >= second[centre].sum() else second
    if mask.sum() < 20:
        return None
    cols, rows = mask.sum(dim=0), mask.sum(dim=1)  # rows and columns the body really fills (not stray
    xs = torch.nonzero(cols >= max(3.0, 0.05 * float(cols.max()))).flatten()  # pixels of JPEG edges)
    ys = torch.nonzero(rows >= max(3.0, 0.05 * float(rows.max()))).flatten()
    return float(xs.min()), float(ys.min()), float(xs.max()) + 1.0, float(ys.max()) + 1.0
