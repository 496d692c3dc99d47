"""Reading triangulated OBJ files with UVs (``smplx_tex.obj``: the user's real file and the
synthetic one). Pure numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _index(token: str, count: int, line_no: int, what: str) -> int:
    """OBJ index (1-based, or negative = relative to the end) -> 0-based."""
    try:
        i = int(token)
    except ValueError:
        raise ValueError(f"line {line_no}: bad {what} index {token!r}") from None
    if i > 0:
        return i - 1
    if i < 0:
        return count + i
    raise ValueError(f"line {line_no}: {what} index 0 is not valid in OBJ")


def read_obj(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read vertices, UVs and triangles of a triangulated OBJ with texture coordinates.

    Normals, comments and ``g``/``o``/``s``/``usemtl``/``mtllib`` lines are ignored.

    Args:
        path: the ``.obj`` file.

    Returns:
        ``(v (V, 3), f (F, 3) int64, vt (T, 2), ft (F, 3) int64)``, indices 0-based.

    Raises:
        ValueError: a face that is not a triangle, a face corner without a UV index, or an
            index out of range; the message names the line.
    """
    v: list[list[float]] = []
    vt: list[list[float]] = []
    f: list[list[int]] = []
    ft: list[list[int]] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, raw in enumerate(fh, start=1):
            parts = raw.split("#", 1)[0].split()
            if not parts:
                continue
            tag = parts[0]
            if tag == "v":
                v.append([float(x) for x in parts[1:4]])
            elif tag == "vt":
                vt.append([float(x) for x in parts[1:3]])
            elif tag == "f":
                corners = parts[1:]
                if len(corners) != 3:
                    raise ValueError(
                        f"{path}: line {line_no}: face with {len(corners)} corners; only "
                        "triangles are supported (triangulate the mesh before exporting)")
                fv, fvt = [], []
                for c in corners:
                    sub = c.split("/")
                    if len(sub) < 2 or not sub[1]:
                        raise ValueError(f"{path}: line {line_no}: face corner {c!r} has no UV "
                                         "index (expected v/vt or v/vt/vn)")
                    fv.append(_index(sub[0], len(v), line_no, "vertex"))
                    fvt.append(_index(sub[1], len(vt), line_no, "UV"))
                f.append(fv)
                ft.append(fvt)
    va = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    vta = np.asarray(vt, dtype=np.float64).reshape(-1, 2)
    fa = np.asarray(f, dtype=np.int64).reshape(-1, 3)
    fta = np.asarray(ft, dtype=np.int64).reshape(-1, 3)
    if fa.size and (fa.min() < 0 or fa.max() >= len(va)):
        raise ValueError(f"{path}: a face refers to a vertex that does not exist")
    if fta.size and (fta.min() < 0 or fta.max() >= len(vta)):
        raise ValueError(f"{path}: a face refers to a UV that does not exist")
    return va, fa, vta, fta


def read_obj_uvs(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """UVs of a triangulated OBJ such as ``smplx_tex.obj``.

    Returns:
        ``(vt (T, 2) float64, ft (F, 3) int64)``, ``ft`` 0-based and in file face order.
    """
    _, _, vt, ft = read_obj(path)
    return vt, ft
