"""Operators (``PIXIE_OT_*``)."""
