"""A world that reproduces the photo's lighting as PIXIE estimated it (9 SH coefficients per colour):
an equirectangular environment image built by :func:`pixie_blender.io.lighting.sh_environment`."""

from __future__ import annotations

import bpy
import numpy as np

from ..io.lighting import sh_environment
from .materials import make_image

ENV_NODE = "PIXIE SH light"


def create_sh_world(name: str, light: np.ndarray, width: int = 128, height: int = 64) -> bpy.types.World:
    """A new world whose background radiance is PIXIE's SH lighting ``light`` (9, 3)."""
    env = sh_environment(light, width, height)
    world = bpy.data.worlds.new(name)
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    nt = world.node_tree
    for n in list(nt.nodes):
        nt.nodes.remove(n)
    tex = nt.nodes.new("ShaderNodeTexEnvironment")
    tex.name = tex.label = ENV_NODE
    tex.location = (-300, 0)
    tex.image = make_image(f"{name}_env", env, is_data=True)  # Non-Color: radiance used as it is
    tex.interpolation = "Linear"
    bg = nt.nodes.new("ShaderNodeBackground")
    bg.location = (0, 0)
    out = nt.nodes.new("ShaderNodeOutputWorld")
    out.location = (250, 0)
    nt.links.new(tex.outputs["Color"], bg.inputs["Color"])
    nt.links.new(bg.outputs["Background"], out.inputs["Surface"])
    world["pixie_light_sh"] = [float(c) for c in np.asarray(light).reshape(-1)]
    return world
