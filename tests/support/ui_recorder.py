"""A stand-in for ``bpy.types.UILayout`` that records what a panel's ``draw()`` lays out.

Blender's own layout cannot be made without a window, and the ``bpy`` module runs headless, so the
tests (tests/blender/test_ui.py and others) and the panel picture (tools/panel_picture.py) call the
add-on's real ``draw`` methods with a :class:`LayoutRecorder` instead. Every call is checked the way
Blender would check it, but loudly: an operator that does not exist, a property its data lacks or an
icon name Blender does not know raises (Blender only prints such errors and draws nothing).

The recorder keeps the TREE (rows, columns, boxes, splits, each with its ``enabled`` / ``active`` /
``alert`` / ``scale_y`` / ``use_property_split`` and ``align``) and, for the tests, a FLAT log in
call order: ``("label", text)``, ``("operator", idname)``, ``("prop", identifier)``, and
``(method,) + positional args`` for anything else (``progress``, ``separator``, ``template_*``).

Needs ``bpy`` (for the checks); imported by tests and tools only, never by the add-on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

CONTAINERS = ("row", "column", "box", "split", "grid_flow", "column_flow")


@dataclass
class Element:
    """One drawn item.

    ``kind``: "label", "operator", "prop", "progress", "separator" or another ``UILayout`` method;
    ``text``: what it shows as text (for an operator without ``text=``, its ``bl_label``; for a
    property without ``text=``, its UI name; "" for an icon-only button); ``name``: the operator's
    idname or the property's identifier; ``value``: a property's current value (an enum's item
    name) or a progress bar's factor; ``prop_type``: the RNA type of a property (BOOLEAN, ENUM,
    STRING, FLOAT, INT, POINTER...); ``options``: the remaining keyword arguments (``slider``,
    ``toggle``, ``emboss``...) plus ``soft_min`` / ``soft_max`` of numbers.
    """

    kind: str
    text: str = ""
    icon: str = "NONE"
    name: str = ""
    value: Any = None
    prop_type: str = ""
    options: dict = field(default_factory=dict)
    args: tuple = ()
    property_split: bool = False  #: drawn by a layout with ``use_property_split`` (label left, field right)

    def flat(self) -> tuple:
        if self.kind in ("label",):
            return ("label", self.text)
        if self.kind in ("operator", "prop"):
            return (self.kind, self.name)
        return (self.kind,) + self.args


def _icon_names() -> frozenset[str]:
    import bpy

    return frozenset(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())


class LayoutRecorder:
    """Stands in for ``bpy.types.UILayout``; ``children`` holds sub-layouts and :class:`Element` s
    in drawing order. ``log`` (a list, shared by the whole tree) receives the flat view."""

    def __init__(self, log: list | None = None, *, kind: str = "root", options: dict | None = None, parent=None):
        self.log = log if log is not None else []
        self.kind = kind
        self.options = dict(options or {})
        self.align = bool(self.options.get("align", False))
        self.children: list[LayoutRecorder | Element] = []
        self._icons = parent._icons if parent is not None else _icon_names()
        # a sub-layout starts with its parent's settings, as in Blender
        self.enabled = True
        self.active = True
        self.alert = parent.alert if parent is not None else False
        self.scale_x = 1.0
        self.scale_y = 1.0
        self.use_property_split = parent.use_property_split if parent is not None else False
        self.use_property_decorate = parent.use_property_decorate if parent is not None else False
        self.alignment = "EXPAND"

    # ---------------------------------------------------------------- sub-layouts
    def _sub(self, kind: str, **kw) -> LayoutRecorder:
        child = LayoutRecorder(self.log, kind=kind, options=kw, parent=self)
        self.children.append(child)
        return child

    def row(self, **kw):
        return self._sub("row", **kw)

    def column(self, **kw):
        return self._sub("column", **kw)

    def box(self, **kw):
        return self._sub("box", **kw)

    def split(self, **kw):
        return self._sub("split", **kw)

    def grid_flow(self, **kw):
        return self._sub("grid_flow", **kw)

    def column_flow(self, **kw):
        return self._sub("column_flow", **kw)

    # ---------------------------------------------------------------- items
    def _add(self, element: Element) -> Element:
        if element.icon not in self._icons:
            raise AssertionError(f"unknown icon {element.icon!r} ({element.kind} {element.name or element.text!r})")
        self.children.append(element)
        self.log.append(element.flat())
        return element

    def label(self, text="", icon="NONE", **kw):
        self._add(Element("label", text=text, icon=icon, options=kw))

    def operator(self, idname, text=None, icon="NONE", **kw):
        import bpy

        mod, fn = idname.split(".")
        rna = getattr(getattr(bpy.ops, mod), fn).get_rna_type()  # raises KeyError if unknown
        self._add(Element("operator", text=rna.name if text is None else text, icon=icon, name=idname, options=kw))
        return SimpleNamespace()  # the operator's properties: the draw code may set them

    def prop(self, data, property, text=None, icon="NONE", **kw):
        props = data.bl_rna.properties
        assert property in props, f"{type(data).__name__} has no property {property!r}"
        rna = props[property]
        value = getattr(data, property)
        options = dict(kw)
        if rna.type == "ENUM" and not rna.is_enum_flag:
            items = {i.identifier: i.name for i in rna.enum_items}
            value = items.get(value, value)
        elif rna.type in ("FLOAT", "INT"):
            options.setdefault("soft_min", rna.soft_min)
            options.setdefault("soft_max", rna.soft_max)
        self._add(
            Element(
                "prop",
                text=rna.name if text is None else text,
                icon=icon,
                name=property,
                value=value,
                prop_type=rna.type,
                options=options,
                property_split=self.use_property_split,
            )
        )

    def progress(self, factor=0.0, type="BAR", text="", **kw):
        assert 0.0 <= factor <= 1.0, f"progress factor {factor} outside [0, 1]"
        self._add(Element("progress", text=text, value=float(factor), options={"type": type, **kw}))

    def separator(self, factor=1.0, **kw):
        self._add(Element("separator", value=float(factor), options=kw))

    def __getattr__(self, name):  # template_*(), menu(), ...: accept, record, return a sub-layout
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*a, **kw):
            self.children.append(Element(name, args=a, options=kw))
            self.log.append((name,) + a)
            return LayoutRecorder(self.log, kind=name, parent=self)

        return call

    # ---------------------------------------------------------------- views
    def walk(self, _enabled: bool = True, _active: bool = True, _alert: bool = False):
        """Pre-order: (element, enabled, active, alert) with the flags of all enclosing layouts."""
        enabled, active, alert = _enabled and self.enabled, _active and self.active, _alert or self.alert
        for c in self.children:
            if isinstance(c, LayoutRecorder):
                yield from c.walk(enabled, active, alert)
            else:
                yield c, enabled, active, alert

    def elements(self, kind: str | None = None) -> list[Element]:
        return [e for e, *_ in self.walk() if kind is None or e.kind == kind]


class PanelContext:
    """The parts of ``bpy.context`` the PIXIE panels read, with a chosen active object (headless
    ``bpy.context.active_object`` cannot be set without a view layer change)."""

    def __init__(self, bpy, active):
        self.active_object = active
        self.window_manager = bpy.context.window_manager
        self.preferences = bpy.context.preferences
        self.scene = bpy.context.scene
        self.view_layer = bpy.context.view_layer


def draw_panel(cls, context, layout: LayoutRecorder) -> bool:
    """Call ``cls.draw`` (after its ``poll``, as Blender does) with ``layout``; False if it does not
    poll."""
    if hasattr(cls, "poll") and not cls.poll(context):
        return False
    panel = SimpleNamespace(layout=layout)
    cls.draw(panel, context)
    return True
