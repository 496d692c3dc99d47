"""``pixie.clear_cache``: delete cached avatar templates and model packages."""

from __future__ import annotations

import bpy


class PIXIE_OT_clear_cache(bpy.types.Operator):
    """Delete the add-on's cached avatar templates and model packages (rebuilt on the next import;
    results whose package is not next to them then cannot be imported)"""

    bl_idname = "pixie.clear_cache"
    bl_label = "Clear PIXIE Cache"

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        from ..scene import template_cache

        n = template_cache.clear_cache(template_cache.default_cache_dir())
        self.report({"INFO"}, f"Removed {n} cached file{'s' if n != 1 else ''}")
        return {"FINISHED"}


CLASSES = (PIXIE_OT_clear_cache,)
