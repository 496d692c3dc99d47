"""Real geometry for the facial detail: adaptive subdivision in Cycles.

The body gets a *Simple* Subdivision Surface modifier after its Armature modifier (so shape keys,
pose correctives and the rig deform the coarse mesh first, and the detail follows them), with
Cycles' adaptive subdivision: at render time the mesh is diced to about one micropolygon per
pixel and the material's Displacement output moves the vertices along the normal by the
displacement map (metres). The viewport and EEVEE see the coarse mesh (levels 0) with the detail
normal map. *Simple* subdivision keeps the shape exactly the result's (Catmull-Clark would smooth
and shrink it).

API: Blender 5.0 has the adaptive settings on the modifier (``use_adaptive_subdivision``,
``adaptive_space``, ``adaptive_pixel_size``); 4.2–4.5 have them on the object's Cycles settings
(``ob.cycles.use_adaptive_subdivision``, ``dicing_rate``) and need the *Experimental* feature set.
"""

from __future__ import annotations

import bpy

MODIFIER = "PIXIE detail"


def _modifier_has_adaptive() -> bool:
    return "use_adaptive_subdivision" in bpy.types.SubsurfModifier.bl_rna.properties


def enable_adaptive_displacement(scene: bpy.types.Scene, body: bpy.types.Object, pixel_size: float = 1.0) -> list[str]:
    """Add the subdivision modifier (last in the stack) and turn on Cycles' adaptive subdivision.

    Returns:
        warnings for the user (e.g. the scene's Cycles feature set was changed).
    """
    warnings: list[str] = []
    mod = body.modifiers.get(MODIFIER) or body.modifiers.new(MODIFIER, "SUBSURF")
    mod.subdivision_type = "SIMPLE"
    mod.levels = 0
    mod.render_levels = 0  # EEVEE renders the coarse mesh; Cycles dices adaptively
    mod.show_only_control_edges = True
    if _modifier_has_adaptive():  # Blender 5.0+
        mod.use_adaptive_subdivision = True
        mod.adaptive_space = "PIXEL"
        mod.adaptive_pixel_size = pixel_size
    else:  # 4.2 – 4.5: object settings, experimental feature set
        body.cycles.use_adaptive_subdivision = True
        body.cycles.dicing_rate = pixel_size
        if scene.cycles.feature_set != "EXPERIMENTAL":
            scene.cycles.feature_set = "EXPERIMENTAL"
            warnings.append(
                "Cycles feature set switched to Experimental: Blender before 5.0 needs it for "
                "adaptive subdivision (the facial detail's displacement)"
            )
    return warnings


def adaptive_enabled(body: bpy.types.Object) -> bool:
    """True if ``body`` has the detail modifier with adaptive subdivision on."""
    mod = body.modifiers.get(MODIFIER)
    if mod is None:
        return False
    if _modifier_has_adaptive():
        return bool(mod.use_adaptive_subdivision)
    return bool(body.cycles.use_adaptive_subdivision)
