"""Build and release tools (standard library only; run from the repository root), and
``panel_picture.py`` (bpy and Pillow: the README's schematic of the sidebar)."""
