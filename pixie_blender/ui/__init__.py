"""Panels, menus and the drag-and-drop file handler."""
