"""The avatar's material: Principled BSDF with the result's albedo texture, and the facial detail as
real displacement in Cycles and as a normal (or bump) map in EEVEE.

Graph (when the result has the arrays)::

    UV Map ─┬─ Albedo (sRGB) ──────────────┬─ Base Color ─ Principled (Cycles) ─ Surface ┐
            │                              │                                            Material Output (Cycles)
            ├─ Displacement map (metres) ──┼─ Height ─ Displacement (midlevel 0, scale 1) ┘
            │                              └─ Base Color ─ Principled (EEVEE) ─ Surface ─ Material Output (EEVEE)
            └─ Detail normal map ─ Normal Map (tangent space) ─ Normal ┘

Cycles displaces the surface (``displacement_method = "BOTH"``: true displacement on the adaptively
subdivided mesh, plus bump for what the dicing does not resolve; see :mod:`.detail`). EEVEE gets
the tangent-space detail normal map (or, without one, a Bump node fed by the displacement map), so
the detail is not applied twice. Images are packed into the .blend, or saved next to it.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from .mesh import UV_LAYER

SKIN_RGBA = (0.80, 0.62, 0.52, 1.0)
#: Node names of the graph (tests and users find nodes by them).
ALBEDO_NODE = "Albedo"
DISPLACEMENT_NODE = "Displacement map"
NORMAL_NODE = "Detail normal map"
CYCLES_BSDF = "Principled BSDF"
EEVEE_BSDF = "Principled BSDF (EEVEE)"
CYCLES_OUTPUT = "Material Output"
EEVEE_OUTPUT = "Material Output (EEVEE)"


def _pixels(a: np.ndarray, *, is_data: bool) -> np.ndarray:
    """(H, W, 4) float32 RGBA with Blender's row order (bottom first) from an (H, W, 3) uint8
    colour image or an (H, W) data array, both with row 0 at the top."""
    a = np.asarray(a)
    h, w = a.shape[:2]
    px = np.ones((h, w, 4), dtype=np.float32)
    if a.ndim == 2:
        px[..., :3] = a.astype(np.float32)[..., None]
    elif a.dtype == np.uint8:
        px[..., :3] = a.astype(np.float32) / 255.0
    else:
        px[..., :3] = a.astype(np.float32)
    return np.ascontiguousarray(px[::-1])


def _save_dir() -> Path | None:
    """``<blend folder>/<blend name>_textures`` when the file has been saved, else None."""
    if not bpy.data.filepath:
        return None
    blend = Path(bpy.data.filepath)
    return blend.parent / f"{blend.stem}_textures"


def make_image(name: str, data: np.ndarray, *, is_data: bool, store: str = "PACK") -> bpy.types.Image:
    """A new image from an (H, W, 3) uint8 colour array (sRGB) or a data array (``is_data``:
    Non-Color; a float array gets a float buffer, packed and saved as OpenEXR), row 0 = top.

    Args:
        store: ``"PACK"`` (inside the .blend) or ``"FILES"`` (PNG / OpenEXR files in
            ``<blend>_textures/`` next to a saved .blend, relative paths; packed when the .blend
            has not been saved yet).
    """
    a = np.asarray(data)
    h, w = a.shape[:2]
    is_float = a.dtype.kind == "f"
    img = bpy.data.images.new(name, width=w, height=h, alpha=False, float_buffer=is_float)
    # the colour space first: changing it later re-creates a generated image's buffer (pixels lost)
    img.colorspace_settings.name = "Non-Color" if is_data else "sRGB"
    img.pixels.foreach_set(_pixels(a, is_data=is_data).ravel())
    img.update()
    folder = _save_dir() if store == "FILES" else None
    if folder is None:
        img.pack()  # float buffers are packed as OpenEXR (checked on 4.2 and 5.0)
        return img
    folder.mkdir(parents=True, exist_ok=True)
    ext, fmt = (".exr", "OPEN_EXR") if is_float else (".png", "PNG")
    target = folder / f"{bpy.path.clean_name(name)}{ext}"
    img.filepath_raw = str(target)
    img.file_format = fmt
    img.save()
    img.source = "FILE"
    try:
        img.filepath = bpy.path.relpath(str(target))
    except ValueError:  # another drive (Windows): keep the absolute path
        img.filepath = str(target)
    img.reload()
    return img


def _node(nodes, type_name: str, location: tuple[float, float], name: str | None = None):
    n = nodes.new(type_name)
    n.location = location
    if name:
        n.name = n.label = name
    return n


def _principled(nodes, name: str, location) -> bpy.types.Node:
    bsdf = _node(nodes, "ShaderNodeBsdfPrincipled", location, name)
    bsdf.inputs["Base Color"].default_value = SKIN_RGBA
    bsdf.inputs["Roughness"].default_value = 0.55
    return bsdf


def create_material(
    name: str,
    albedo_uv: np.ndarray | None = None,
    displacement_uv: np.ndarray | None = None,
    image_prefix: str | None = None,
    normal_map_uv: np.ndarray | None = None,
    store: str = "PACK",
) -> bpy.types.Material:
    """The avatar material (graph in the module docstring).

    Args:
        name: material name.
        albedo_uv: (H, W, 3) uint8 sRGB base colour, SMPL-X UV, row 0 = top; None: skin colour.
        displacement_uv: (H, W) float metres along the normal, same layout; None: no detail.
        image_prefix: images are ``<prefix>_albedo``, ``<prefix>_displacement``, ``<prefix>_normal``.
        normal_map_uv: (H, W, 3) uint8 tangent-space normals ``n·½ + ½`` (EEVEE's detail).
        store: ``"PACK"`` or ``"FILES"`` (see :func:`make_image`).
    """
    prefix = image_prefix or name
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True  # deprecated (and already on) in 5.0
    mat.diffuse_color = SKIN_RGBA
    nt = mat.node_tree
    nodes, links = nt.nodes, nt.links
    for n in list(nodes):
        nodes.remove(n)
    out = _node(nodes, "ShaderNodeOutputMaterial", (400, 150), CYCLES_OUTPUT)
    bsdf = _principled(nodes, CYCLES_BSDF, (50, 150))
    links.new(bsdf.outputs["BSDF"], out.inputs["Surface"])
    detail = displacement_uv is not None
    if detail:  # a separate EEVEE branch, so that no engine gets the detail twice
        out.target = "CYCLES"
        out_eevee = _node(nodes, "ShaderNodeOutputMaterial", (400, -450), EEVEE_OUTPUT)
        out_eevee.target = "EEVEE"
        bsdf_eevee = _principled(nodes, EEVEE_BSDF, (50, -450))
        links.new(bsdf_eevee.outputs["BSDF"], out_eevee.inputs["Surface"])
        out.is_active_output = True
    uv = None
    if albedo_uv is not None or detail:
        uv = _node(nodes, "ShaderNodeUVMap", (-900, 0), "UV")
        uv.uv_map = UV_LAYER
    if albedo_uv is not None:
        tex = _node(nodes, "ShaderNodeTexImage", (-500, 250), ALBEDO_NODE)
        tex.image = make_image(f"{prefix}_albedo", albedo_uv, is_data=False, store=store)
        links.new(uv.outputs["UV"], tex.inputs["Vector"])
        links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
        if detail:
            links.new(tex.outputs["Color"], bsdf_eevee.inputs["Base Color"])
    if detail:
        dtex = _node(nodes, "ShaderNodeTexImage", (-500, -100), DISPLACEMENT_NODE)
        dtex.image = make_image(f"{prefix}_displacement", displacement_uv, is_data=True, store=store)
        dtex.interpolation = "Linear"
        links.new(uv.outputs["UV"], dtex.inputs["Vector"])
        disp = _node(nodes, "ShaderNodeDisplacement", (50, -150), "Displacement")
        disp.inputs["Midlevel"].default_value = 0.0  # the map is metres along the normal
        disp.inputs["Scale"].default_value = 1.0
        links.new(dtex.outputs["Color"], disp.inputs["Height"])
        links.new(disp.outputs["Displacement"], out.inputs["Displacement"])
        if normal_map_uv is not None:
            ntex = _node(nodes, "ShaderNodeTexImage", (-500, -450), NORMAL_NODE)
            ntex.image = make_image(f"{prefix}_normal", normal_map_uv, is_data=True, store=store)
            links.new(uv.outputs["UV"], ntex.inputs["Vector"])
            nmap = _node(nodes, "ShaderNodeNormalMap", (-200, -550), "Normal Map")
            nmap.space = "TANGENT"
            nmap.uv_map = UV_LAYER
            links.new(ntex.outputs["Color"], nmap.inputs["Color"])
            links.new(nmap.outputs["Normal"], bsdf_eevee.inputs["Normal"])
        else:
            bump = _node(nodes, "ShaderNodeBump", (-200, -550), "Bump")
            bump.inputs["Distance"].default_value = 1.0  # heights are metres
            links.new(dtex.outputs["Color"], bump.inputs["Height"])
            links.new(bump.outputs["Normal"], bsdf_eevee.inputs["Normal"])
        mat.displacement_method = "BOTH"
    return mat
