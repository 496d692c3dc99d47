"""Face appearance: the FLAME albedo, SH lighting, the photo's face texture and DECA's detail
displacement, in the SMPL-X UV layout of ``smplx_tex.obj`` (``pixie-inference.md`` §13–14).

Modules:

* ``files`` — readers for the optional data files (official formats);
* ``albedo`` — the albedo model (``FLAMETex``, official 256² quirk and full resolution);
* ``uv_transfer`` — FLAME UV → SMPL-X UV with the cached texel map;
* ``rasterize`` — triangle rasterisation (NumPy) and ``uv_raster`` — texel → (triangle,
  barycentrics) tables (``world2uv`` without a GPU rasteriser);
* ``lighting`` — SH shading and vertex normals;
* ``photo`` — the photo's visible face texels;
* ``deca`` — DECA's encoders and detail generator under ``deca_model.tar``'s key names;
* ``normal_map`` — tangent-space detail normal maps;
* ``model`` — ``FaceAppearance``, the batched stage the pipeline runs.

Importing this package does not import torch (``rasterize`` is NumPy only); ``FaceAppearance``
and ``AppearanceOutput`` are loaded on first use.
"""

__all__ = ["AppearanceOutput", "FaceAppearance"]


def __getattr__(name: str):
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(name)
