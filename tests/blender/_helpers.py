"""Helpers shared by the bpy tests (import as ``tests.blender._helpers``)."""

from __future__ import annotations

import numpy as np

ID_COLLECTIONS = (
    "objects",
    "meshes",
    "armatures",
    "materials",
    "images",
    "cameras",
    "collections",
    "libraries",
    "actions",
    "shape_keys",
    "node_groups",
    "textures",
    "lights",
    "scenes",
    "worlds",
)


def id_counts() -> dict[str, int]:
    import bpy

    return {a: len(getattr(bpy.data, a)) for a in ID_COLLECTIONS}


def expected_vertices(result_path, index: int = 0) -> np.ndarray:
    """The result's posed vertices mapped to armature space (upright fix + axis mapping)."""
    from pixie_blender.io import convert, schema

    r = schema.read_result(result_path)
    p = r.persons[index]
    return convert.pixie_to_blender(p.vertices, p.joints_rest[0])


def armature_space_vertices(body) -> np.ndarray:
    """Evaluated (posed) vertices of a body mesh in its armature's space."""
    import bpy

    from pixie_blender.scene.mesh import evaluated_vertices

    v = evaluated_vertices(body, bpy.context.evaluated_depsgraph_get())
    m = np.array(body.parent.matrix_world.inverted() @ body.matrix_world)
    return v @ m[:3, :3].T + m[:3, 3]
