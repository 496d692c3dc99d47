"""Small headless Cycles renders of an avatar's face for the detail tests and the README image."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np


def head_camera(rig, size: float = 0.36, name: str = "face_cam"):
    """An orthographic camera in front of the avatar's head (the avatar faces −Y)."""
    import bpy

    bpy.context.view_layer.update()  # the rig's placement and pose
    head = rig.matrix_world @ rig.pose.bones["head"].head
    data = bpy.data.cameras.new(name)
    data.type = "ORTHO"
    data.ortho_scale = size
    cam = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(cam)
    cam.location = (head.x, head.y - 1.0, head.z + 0.035)  # the head joint is at the base of the skull
    cam.rotation_euler = (math.pi / 2, 0.0, 0.0)
    return cam


def key_light(name: str = "key", elevation: float = 15.0, azimuth: float = -25.0):
    """A sun from the camera's side (−Y), ``elevation`` degrees above and ``azimuth`` to the side:
    oblique enough to show relief, with the shadows falling behind the face."""
    import bpy

    sun = bpy.data.lights.new(name, "SUN")
    sun.energy = 4.0
    sun.angle = 0.0  # hard shadows: no shadow-ray noise between otherwise identical renders
    ob = bpy.data.objects.new(name, sun)
    bpy.context.scene.collection.objects.link(ob)
    ob.rotation_euler = (math.radians(90 - elevation), 0.0, math.radians(azimuth))
    return ob


def setup_cycles(scene, width: int, height: int, samples: int = 8) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0  # direct light only: a change of geometry shows where it is
    scene.cycles.seed = 0
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.view_settings.view_transform = "Standard"


def render_array(scene, path: Path | None = None) -> np.ndarray:
    """Render the scene; (H, W, 4) float32, row 0 = top (OpenEXR unless ``path`` says otherwise)."""
    import bpy

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(path) if path is not None else Path(tmp) / "render.exr"
        scene.render.filepath = str(target)
        bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(str(target))
        try:
            w, h = img.size
            px = np.empty(w * h * 4, np.float32)
            img.pixels.foreach_get(px)
            return px.reshape(h, w, 4)[::-1].copy()
        finally:
            bpy.data.images.remove(img)
