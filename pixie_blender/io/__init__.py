"""bpy-free part of the add-on: result schema, conversions and build plans (numpy + stdlib only)."""
