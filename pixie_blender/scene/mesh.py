"""Mesh datablocks from a template plan: vertices, triangles, UVs, smooth shading (bulk writes)."""

from __future__ import annotations

import bpy
import numpy as np

from ..io.body_model import TemplatePlan

UV_LAYER = "UVMap"


def create_mesh(name: str, plan: TemplatePlan) -> bpy.types.Mesh:
    """A triangle mesh with the template's rest vertices, UVs (when present) and smooth shading."""
    V = plan.num_vertices
    F = int(plan.faces.shape[0])
    me = bpy.data.meshes.new(name)
    me.vertices.add(V)
    me.vertices.foreach_set("co", plan.vertices.astype(np.float32).ravel())
    me.loops.add(3 * F)
    me.loops.foreach_set("vertex_index", plan.faces.astype(np.int32).ravel())
    me.polygons.add(F)
    me.polygons.foreach_set("loop_start", np.arange(0, 3 * F, 3, dtype=np.int32))
    me.update(calc_edges=True)
    if plan.loop_uvs is not None:
        uv = me.uv_layers.new(name=UV_LAYER)
        uv.data.foreach_set("uv", plan.loop_uvs.astype(np.float32).ravel())
    me.polygons.foreach_set("use_smooth", np.ones(F, dtype=bool))
    me.validate(verbose=False)
    me.update()
    return me


def mesh_vertices(me: bpy.types.Mesh) -> np.ndarray:
    """(V, 3) float32 vertex coordinates of a mesh."""
    co = np.empty(len(me.vertices) * 3, dtype=np.float32)
    me.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def evaluated_vertices(ob: bpy.types.Object, depsgraph=None) -> np.ndarray:
    """(V, 3) vertices of ``ob`` after shape keys and modifiers, in the object's local space."""
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    ob_eval = ob.evaluated_get(depsgraph)
    me = ob_eval.to_mesh()
    try:
        return mesh_vertices(me)
    finally:
        ob_eval.to_mesh_clear()
