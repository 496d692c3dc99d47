"""README image: a backend result with the face appearance, imported and rendered headless in Cycles.

    .venv/bin/python tests/blender/render_face.py       # -> docs/images/face_detail.png

The result comes from the real backend on synthetic assets (full-size mannequin, width-reduced
random PIXIE and DECA weights of seed 5, whose head moderator trusts the face crop (0.75 > 0.6, so
the detail is on) and whose jaw is nearly closed; the synthetic 512² albedo model; scikit-image's
astronaut as the photo): **not a reconstruction**,
but every step of the path — albedo into the SMPL-X UV map, DECA's displacement and normal map, the
v2 result file, the material, adaptive subdivision — is the real one. The avatar is lit by PIXIE's
SH estimate as the world (plus a key light) and composited over grey. Left: the body; middle: the
face; right: the same face without the displacement (detail "SHADING", bump only), for comparison.
Takes about two minutes.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def backend_result(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "backend"))
    from PIL import Image
    from pixie_backend.config import AppearanceConfig, PixieConfig
    from pixie_backend.export.writer import ResultWriter
    from pixie_backend.pipeline import Pixie
    from pixie_backend.synthetic_assets import write_synthetic_data
    from skimage import data

    data_dir = tmp / "data"
    write_synthetic_data(data_dir, body="full", net="tiny", seed=5)
    pixie = Pixie(data_dir, PixieConfig(appearance=AppearanceConfig()), detector="none")
    photo = tmp / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    res = pixie.predict([photo], boxes=[[[140, 20, 460, 511]]])[0]
    assert res.ok, res.message
    assert bool(res.appearance.detail_gate[0]), "the head moderator gated the detail off"
    print(f"head confidence {float(res.appearance.head_confidence[0]):.2f} (gate: > 0.6)")
    return ResultWriter(pixie, tmp / "out", write_objs=False).write(res, "astronaut")[0]


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pixie-face-render-"))
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(tmp / "user"))
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp / "xdg"))
    sys.path.insert(0, str(ROOT))
    result = backend_result(tmp)
    import bpy  # noqa: I001 - bpy first: it puts addon_utils on the path
    import addon_utils

    addon_utils.enable("pixie_blender", default_set=True)
    from pixie_blender.scene.avatar import ImportOptions, build_many
    from tests.blender.cycles_render import head_camera, key_light, render_array, setup_cycles

    tiles = []
    for mode, shot in (("DISPLACE", "body"), ("DISPLACE", "face"), ("SHADING", "face")):
        bpy.ops.wm.read_homefile(use_empty=True)
        opts = ImportOptions(add_camera=False, cache_dir=str(tmp / "cache"), detail=mode, world_lighting=True)
        rig = build_many(bpy.context, [result], opts).rigs[0]
        scene = bpy.context.scene
        key_light(elevation=30.0, azimuth=-40.0).data.energy = 2.5
        if shot == "face":
            scene.camera = head_camera(rig, size=0.3)
        else:
            bpy.context.view_layer.update()
            data = bpy.data.cameras.new("body_cam")
            data.type = "ORTHO"
            data.ortho_scale = 2.0
            cam = bpy.data.objects.new("body_cam", data)
            scene.collection.objects.link(cam)
            pelvis = rig.matrix_world @ rig.pose.bones["pelvis"].head
            cam.location = (pelvis.x, pelvis.y - 4.0, pelvis.z + 0.15)
            cam.rotation_euler = (math.pi / 2, 0.0, 0.0)
            scene.camera = cam
        setup_cycles(scene, 320, 320, samples=48)
        scene.cycles.max_bounces = 4
        scene.render.film_transparent = True
        rgba = render_array(scene)
        grey = 0.18  # linear mid-grey background
        tiles.append(rgba[..., :3] + grey * (1.0 - rgba[..., 3:4]))
    img = np.concatenate(tiles, axis=1)
    srgb = np.where(img <= 0.0031308, 12.92 * img, 1.055 * np.clip(img, 0, None) ** (1 / 2.4) - 0.055)
    out = ROOT / "docs" / "images" / "face_detail.png"
    from PIL import Image

    Image.fromarray((np.clip(srgb, 0, 1) * 255).round().astype(np.uint8)).save(out, optimize=True)
    print(out)
    addon_utils.disable("pixie_blender", default_set=True)


if __name__ == "__main__":
    main()
