"""bpy side: turn the plans of ``pixie_blender.io.body_model`` into Blender data."""
