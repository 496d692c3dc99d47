"""Headless Workbench renders of imported synthetic avatars (test artefact and README image).

    .venv/bin/python tests/blender/render_avatar.py               # -> docs/images/addon_avatars.png
                                                                   #    docs/images/addon_overlay.png

``render_front`` renders avatars standing side by side from the front; ``render_overlay`` renders
one avatar through its photo camera with a transparent film and composites it over the source
photo, which shows the camera alignment (the photo's yellow dots are the result's 2-D joints).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _workbench(scene, width: int, height: int, transparent: bool) -> None:
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = transparent
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA" if transparent else "RGB"
    shading = scene.display.shading
    shading.light = "STUDIO"
    shading.color_type = "TEXTURE"
    shading.show_cavity = True
    shading.show_shadows = False
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"


def _render(scene, path: Path) -> Path:
    import bpy

    path.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    return path


def _read_png(path: Path) -> np.ndarray:
    import bpy

    img = bpy.data.images.load(str(path))
    try:
        w, h = img.size
        px = np.empty(w * h * 4, np.float32)
        img.pixels.foreach_get(px)
        return px.reshape(h, w, 4)[::-1].copy()  # top row first
    finally:
        bpy.data.images.remove(img)


def _write_png(path: Path, rgba: np.ndarray) -> Path:
    import bpy

    h, w = rgba.shape[:2]
    img = bpy.data.images.new("pixie_composite", w, h, alpha=True)
    try:
        img.pixels.foreach_set(np.ascontiguousarray(rgba[::-1], dtype=np.float32).ravel())
        img.filepath_raw = str(path)
        img.file_format = "PNG"
        img.save()
    finally:
        bpy.data.images.remove(img)
    return path


def render_front(rigs, path: Path, size=(720, 400)) -> Path:
    """Front view (camera on −Y) framing all avatars; a grey floor at z = 0."""
    import bpy

    scene = bpy.context.scene
    _workbench(scene, *size, transparent=False)
    scene.display.shading.show_shadows = True
    scene.display.shadow_focus = 0.6
    pts = []
    dg = bpy.context.evaluated_depsgraph_get()
    for rig in rigs:
        body = next(c for c in rig.children if c.type == "MESH")
        ev = body.evaluated_get(dg)
        me = ev.to_mesh()
        co = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        m = np.array(body.matrix_world)
        pts.append(co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3])
    pts = np.concatenate(pts)
    lo, hi = pts.min(0), pts.max(0)
    center = (lo + hi) / 2
    cam_data = bpy.data.cameras.new("render_cam")
    cam_data.lens = 50
    cam = bpy.data.objects.new("render_cam", cam_data)
    scene.collection.objects.link(cam)
    extent = max((hi[0] - lo[0]) * size[1] / size[0], hi[2] - lo[2]) * 1.15
    dist = extent / (2 * math.tan(cam_data.angle_y / 2 if hasattr(cam_data, "angle_y") else 0.35))
    pitch = math.radians(78)
    cam.location = (center[0], center[1] - dist * math.sin(pitch), center[2] + dist * math.cos(pitch))
    cam.rotation_euler = (pitch, 0, 0)
    cam_data.sensor_fit = "VERTICAL"
    scene.camera = cam
    floor = bpy.data.meshes.new("floor")
    s = 20.0
    floor.from_pydata([(-s, -s, 0), (s, -s, 0), (s, s, 0), (-s, s, 0)], [], [(0, 1, 2, 3)])
    fmat = bpy.data.materials.new("floor")
    fmat.diffuse_color = (0.72, 0.74, 0.77, 1.0)
    floor.materials.append(fmat)
    fob = bpy.data.objects.new("floor", floor)
    scene.collection.objects.link(fob)
    fob.location = (center[0], center[1], lo[2] - 0.002)
    world = scene.world or bpy.data.worlds.new("render_world")
    scene.world = world
    world.color = (0.80, 0.82, 0.86)
    try:
        return _render(scene, path)
    finally:
        bpy.data.objects.remove(fob)
        bpy.data.meshes.remove(floor)
        bpy.data.materials.remove(fmat)
        bpy.data.objects.remove(cam)
        bpy.data.cameras.remove(cam_data)


def render_overlay(rig, photo: Path, path: Path) -> Path:
    """The avatar through its photo camera, alpha-composited over the photo."""
    import bpy

    scene = bpy.context.scene
    cam = next(c for c in rig.children if c.type == "CAMERA")
    w, h = (int(x) for x in cam["pixie_resolution"])
    _workbench(scene, w, h, transparent=True)
    scene.camera = cam
    hidden = [o for o in scene.objects if o.type == "MESH" and o.parent != rig and not o.hide_render]
    for o in hidden:  # only this avatar
        o.hide_render = True
    try:
        with tempfile.TemporaryDirectory() as tmp:
            layer = _read_png(_render(scene, Path(tmp) / "layer.png"))
    finally:
        for o in hidden:
            o.hide_render = False
    bg = _read_png(photo)
    alpha = layer[..., 3:4] * 0.7
    out = bg.copy()
    out[..., :3] = layer[..., :3] * alpha + bg[..., :3] * (1 - alpha)
    out[..., 3] = 1.0
    return _write_png(path, out)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pixie-render-"))
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(tmp / "user"))
    os.environ.setdefault("XDG_CACHE_HOME", str(tmp / "xdg"))
    sys.path.insert(0, str(ROOT))
    import bpy  # noqa: I001 - bpy first: it puts addon_utils on the path
    import addon_utils

    from tests.support.fake_result import make_fixture

    addon_utils.enable("pixie_blender", default_set=True)
    from pixie_blender.scene.avatar import ImportOptions, build_avatars

    bpy.ops.wm.read_homefile(use_empty=True)
    fx = make_fixture(
        tmp / "data",
        variant="full",
        num_persons=3,
        seed=21,
        stem="group_photo",
        image_size=(720, 480),
        pose_scale=0.8,
    )
    rigs = build_avatars(bpy.context, fx.result_path, ImportOptions(cache_dir=str(tmp / "cache")))
    out = ROOT / "docs" / "images"
    print(render_front(rigs, out / "addon_avatars.png"))
    print(render_overlay(rigs[0], fx.image_path, out / "addon_overlay.png"))
    addon_utils.disable("pixie_blender", default_set=True)


if __name__ == "__main__":
    main()
