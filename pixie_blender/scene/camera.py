"""Optional orthographic camera that overlays the avatar on its source photo."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..io.convert import CameraPlan
from ..io.placement import PerspectiveCameraPlan


def create_camera(
    name: str,
    plan: CameraPlan,
    parent: bpy.types.Object,
    collection: bpy.types.Collection,
    image_path: Path | None = None,
) -> bpy.types.Object:
    """A camera parented to the avatar's armature object (so the overlay survives moving the
    avatar), with the photo as its background image when available."""
    cam = bpy.data.cameras.new(name)
    cam.type = "ORTHO"
    cam.ortho_scale = plan.ortho_scale
    cam.sensor_fit = "AUTO"
    cam.clip_start = 0.01
    cam.clip_end = plan.clip_end
    ob = bpy.data.objects.new(name, cam)
    collection.objects.link(ob)
    ob.parent = parent
    ob.location = plan.location
    ob.rotation_euler = plan.rotation_euler
    ob["pixie_role"] = "camera"
    ob["pixie_resolution"] = list(plan.resolution)
    if image_path is not None:
        img = bpy.data.images.load(str(image_path), check_existing=True)
        bg = cam.background_images.new()
        bg.image = img
        bg.alpha = 1.0
        bg.display_depth = "BACK"
        bg.frame_method = "FIT"
        cam.show_background_images = True
    return ob


def create_perspective_camera(
    name: str,
    plan: PerspectiveCameraPlan,
    collection: bpy.types.Collection,
    background=None,
) -> bpy.types.Object:
    """The one perspective camera of a photo or clip ("Place as in photo"), not parented; with
    ``background`` (an Image or a MovieClip) shown behind the scene in camera view."""
    cam = bpy.data.cameras.new(name)
    cam.type = "PERSP"
    cam.sensor_fit = "AUTO"
    cam.sensor_width = plan.sensor_mm
    cam.lens = plan.lens_mm
    cam.shift_x, cam.shift_y = plan.shift
    cam.clip_start = 0.05
    cam.clip_end = plan.clip_end
    ob = bpy.data.objects.new(name, cam)
    collection.objects.link(ob)
    ob.location = plan.location
    ob.rotation_euler = plan.rotation_euler
    ob["pixie_role"] = "camera"
    ob["pixie_resolution"] = list(plan.resolution)
    ob["pixie_focal_px"] = plan.focal_px
    if background is not None:
        bg = cam.background_images.new()
        if isinstance(background, bpy.types.MovieClip):
            bg.source = "MOVIE_CLIP"
            bg.clip = background
            bg.use_camera_clip = False
        else:
            bg.image = background
        bg.alpha = 1.0
        bg.display_depth = "BACK"
        bg.frame_method = "FIT"
        cam.show_background_images = True
    return ob


def use_camera(scene: bpy.types.Scene, cam_ob: bpy.types.Object) -> None:
    """Make ``cam_ob`` the scene camera with the photo's resolution, so camera view overlays."""
    scene.camera = cam_ob
    res = cam_ob.get("pixie_resolution")
    if res is not None and len(res) == 2:
        scene.render.resolution_x = int(res[0])
        scene.render.resolution_y = int(res[1])
        scene.render.pixel_aspect_x = 1.0
        scene.render.pixel_aspect_y = 1.0
