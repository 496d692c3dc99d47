"""Skin weights: 55 vertex groups filled through a bmesh deform layer (no per-vertex RNA calls)."""

from __future__ import annotations

import bmesh
import bpy
import numpy as np


def fill_vertex_groups(
    ob: bpy.types.Object, names, rows: np.ndarray, cols: np.ndarray, values: np.ndarray
) -> None:
    """Create one vertex group per name and write the non-zero weights ``(rows, cols, values)``
    (sorted by vertex). Call before shape keys exist: the bmesh round trip is cheapest then."""
    base = len(ob.vertex_groups)
    for name in names:
        ob.vertex_groups.new(name=name)
    me = ob.data
    counts = np.bincount(rows, minlength=len(me.vertices)).tolist()
    order = np.argsort(rows, kind="stable")
    groups = (cols[order] + base).tolist()
    vals = values[order].astype(np.float64).tolist()
    bm = bmesh.new()
    try:
        bm.from_mesh(me)
        deform = bm.verts.layers.deform.verify()
        k = 0
        for vert, n in zip(bm.verts, counts, strict=True):
            dv = vert[deform]
            for t in range(k, k + n):
                dv[groups[t]] = vals[t]
            k += n
        bm.to_mesh(me)
    finally:
        bm.free()


def read_weights(ob: bpy.types.Object, names) -> np.ndarray:
    """Dense (V, len(names)) weight matrix read back from the vertex groups (for checks)."""
    index = {vg.index: names.index(vg.name) for vg in ob.vertex_groups if vg.name in names}
    W = np.zeros((len(ob.data.vertices), len(names)), dtype=np.float32)
    for v in ob.data.vertices:
        for g in v.groups:
            col = index.get(g.group)
            if col is not None:
                W[v.index, col] = g.weight
    return W
