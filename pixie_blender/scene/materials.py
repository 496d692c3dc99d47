"""Material: Principled BSDF, with the result's albedo texture and displacement map when present."""

from __future__ import annotations

import bpy
import numpy as np

from .mesh import UV_LAYER

SKIN_RGBA = (0.80, 0.62, 0.52, 1.0)


def _image(name: str, rgb: np.ndarray, *, is_data: bool) -> bpy.types.Image:
    """A packed image from an (H, W, 3) uint8 (colour, row 0 = top) or (H, W) float (data) array."""
    a = np.asarray(rgb)
    h, w = a.shape[:2]
    img = bpy.data.images.new(name, width=w, height=h, alpha=False, float_buffer=is_data)
    px = np.ones((h, w, 4), dtype=np.float32)
    if is_data:
        px[..., :3] = a.astype(np.float32)[..., None]
        img.colorspace_settings.name = "Non-Color"
    else:
        px[..., :3] = a.astype(np.float32) / 255.0
    img.pixels.foreach_set(px[::-1].ravel())  # Blender stores the bottom row first
    img.pack()
    return img


def _node(nodes, type_name: str, location: tuple[float, float]):
    n = nodes.new(type_name)
    n.location = location
    return n


def create_material(
    name: str,
    albedo_uv: np.ndarray | None = None,
    displacement_uv: np.ndarray | None = None,
    image_prefix: str | None = None,
) -> bpy.types.Material:
    """Principled BSDF (skin tone), Base Color from ``albedo_uv`` and a Displacement node fed by
    ``displacement_uv`` (metres, midlevel 0) when given; images ``<prefix>_albedo`` and
    ``<prefix>_displacement`` are packed into the .blend."""
    prefix = image_prefix or name
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True  # deprecated (and already on) in 5.0
    mat.diffuse_color = SKIN_RGBA
    nt = mat.node_tree
    nodes, links = nt.nodes, nt.links
    out = next((n for n in nodes if n.type == "OUTPUT_MATERIAL"), None) or _node(
        nodes, "ShaderNodeOutputMaterial", (300, 0)
    )
    bsdf = next((n for n in nodes if n.type == "BSDF_PRINCIPLED"), None) or _node(
        nodes, "ShaderNodeBsdfPrincipled", (0, 0)
    )
    if not bsdf.outputs["BSDF"].is_linked:
        links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    bsdf.inputs["Base Color"].default_value = SKIN_RGBA
    bsdf.inputs["Roughness"].default_value = 0.55
    uv = None
    if albedo_uv is not None or displacement_uv is not None:
        uv = _node(nodes, "ShaderNodeUVMap", (-700, 0))
        uv.uv_map = UV_LAYER
    if albedo_uv is not None:
        tex = _node(nodes, "ShaderNodeTexImage", (-400, 100))
        tex.name = tex.label = "Albedo"
        tex.image = _image(f"{prefix}_albedo", albedo_uv, is_data=False)
        links.new(uv.outputs["UV"], tex.inputs["Vector"])
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    if displacement_uv is not None:
        tex = _node(nodes, "ShaderNodeTexImage", (-400, -300))
        tex.name = tex.label = "Displacement map"
        tex.image = _image(f"{prefix}_displacement", displacement_uv, is_data=True)
        tex.interpolation = "Linear"
        links.new(uv.outputs["UV"], tex.inputs["Vector"])
        disp = _node(nodes, "ShaderNodeDisplacement", (0, -350))
        disp.inputs["Midlevel"].default_value = 0.0  # the map is metres along the normal
        disp.inputs["Scale"].default_value = 1.0
        links.new(tex.outputs["Color"], disp.inputs["Height"])
        links.new(disp.outputs["Displacement"], out.inputs["Displacement"])
        if "displacement_method" in mat.bl_rna.properties:
            mat.displacement_method = "BOTH"
    return mat
