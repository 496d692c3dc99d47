"""A schematic picture of the PIXIE sidebar, drawn from the panels' own ``draw()`` code.

    .venv/bin/python tools/panel_picture.py --out docs/images/panel.png

The ``bpy`` module runs headless: it cannot draw Blender's interface or take a screenshot. This tool
enables the add-on from the repository (``BLENDER_USER_RESOURCES`` in a temporary folder, as the
tests do), stages a few states of the add-on (its ``STATE`` objects and preferences), calls the real
``draw()`` of ``PIXIE_PT_main`` and of its child panels with a recording layout
(tests/support/ui_recorder.py), and paints the recorded layout tree with Pillow in the colours of
Blender's dark theme. Icons are stand-in symbols; sizes are approximate. It is a schematic, not a
screenshot. Needs ``bpy`` and Pillow; nothing here is part of the add-on.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the repository's packages come first
    sys.path.insert(0, str(ROOT))

from tests.support.ui_recorder import LayoutRecorder, PanelContext, draw_panel  # noqa: E402

# --------------------------------------------------------------------------------------------------
# Recording the sidebar


@dataclass
class PanelRecord:
    """One panel as Blender shows it: its header, and its recorded layout (None when it is closed)."""

    idname: str
    label: str
    closed: bool
    layout: LayoutRecorder | None
    child: bool


def sidebar_panels() -> list[type]:
    """``PIXIE_PT_main`` and its child panels (``bl_parent_id``), in registration order."""
    from pixie_blender.ui import panels

    main = panels.PIXIE_PT_main
    kids = [c for c in panels.CLASSES if getattr(c, "bl_parent_id", None) == main.__name__]
    return [main, *sorted(kids, key=lambda c: getattr(c, "bl_order", 0))]


def record_sidebar(context, log: list | None = None) -> list[PanelRecord]:
    """Draw the sidebar's panels into recorders, as Blender would: a panel that does not poll is
    absent, a closed one (``DEFAULT_CLOSED``) shows its header only."""
    log = log if log is not None else []
    out = []
    for i, cls in enumerate(sidebar_panels()):
        closed = "DEFAULT_CLOSED" in getattr(cls, "bl_options", set())
        if closed:
            if hasattr(cls, "poll") and not cls.poll(context):
                continue
            out.append(PanelRecord(cls.__name__, cls.bl_label, True, None, i > 0))
            continue
        layout = LayoutRecorder(log)
        if draw_panel(cls, context, layout):
            out.append(PanelRecord(cls.__name__, cls.bl_label, False, layout, i > 0))
    return out


# --------------------------------------------------------------------------------------------------
# Staged states of the add-on

#: The states the picture shows, left to right: (key, caption).
STATES = (
    ("first_run", "First start: no backend, model files missing"),
    ("running", "A reconstruction running (backend busy)"),
    ("avatar", "Done: an imported avatar selected"),
)

_REQUIRED_FILES = ("SMPLX_NEUTRAL_2020.npz", "pixie_model.tar", "smplx_extra_joints.yaml", "SMPLX_to_J14.pkl")


def _model_status(present: bool):
    """The model-file status as the add-on's client reads it from ``doctor --json``."""
    from pixie_blender.client.data_setup import DOCTOR_SCHEMA, DataStatus

    missing = {"pixie_model.tar", "SMPLX_NEUTRAL_2020.npz"}
    assets = [
        {"key": name, "filename": name, "need": "required", "present": present or name not in missing, "size": 1}
        for name in _REQUIRED_FILES
    ]
    doc = {
        "schema": DOCTOR_SCHEMA,
        "data_dir": "",
        "complete": present,
        "texture_complete": present,
        "synthetic": False,
        "assets": assets,
    }
    return DataStatus.from_doctor(doc)


def _ready_supervisor(device: str = "cpu"):
    """A supervised backend process that has answered its handshake (what ``backend_status`` reads)."""
    handshake = SimpleNamespace(device=device)
    process = SimpleNamespace(poll=lambda: None, error=None, alive=True, handshake=handshake)
    return SimpleNamespace(process=process)


@contextmanager
def staged(key: str, bpy, work: Path, avatar=None) -> Iterator[PanelContext]:
    """Set the add-on's state objects and preferences to state ``key`` (one of :data:`STATES`) and
    yield the context to draw with; everything is put back afterwards. ``avatar`` (an armature)
    is the active object of the "avatar" state."""
    from pixie_blender.client.reconstruct import ReconstructProgress
    from pixie_blender.operators import backend as backend_ops
    from pixie_blender.operators import data_setup as data_ops
    from pixie_blender.operators import import_sequence as seq
    from pixie_blender.operators import reconstruct as rec

    prefs = backend_ops.addon_preferences(bpy.context)
    pref_keys = ("backend_python", "backend_folder", "remote_enabled")
    saved_prefs = {k: getattr(prefs, k) for k in pref_keys}
    states = (rec.STATE, seq.STATE, backend_ops.STATE, data_ops.STATE)
    saved = [dict(vars(s)) for s in states]
    try:
        for s in states:
            s.__init__()
        prefs.remote_enabled = False
        prefs.backend_python = ""
        prefs.backend_folder = str(work / "no-backend")  # nothing installed there
        active = None
        if key == "first_run":
            data_ops.STATE.status = _model_status(present=False)
        elif key == "running":
            backend_ops.STATE.supervisor = _ready_supervisor()
            data_ops.STATE.status = _model_status(present=True)

            class Running:
                progress = ReconstructProgress(
                    state="running",
                    total=3,
                    done=1,
                    persons=2,
                    device="cpu",
                    text="Image 2 of 3: 2 persons found so far (last: beach.jpg)",
                )

            rec.STATE.task = Running()
        elif key == "avatar":
            backend_ops.STATE.supervisor = _ready_supervisor()
            data_ops.STATE.status = _model_status(present=True)
            rec.STATE.report = ("INFO", "Reconstructed 1 person from 1 image: 1 avatar")
            active = avatar
        else:
            raise ValueError(f"unknown state {key!r}; one of {[k for k, _ in STATES]}")
        yield PanelContext(bpy, active)
    finally:
        for s, v in zip(states, saved, strict=True):
            s.__dict__.clear()
            s.__dict__.update(v)
        for k, v in saved_prefs.items():
            setattr(prefs, k, v)


def make_avatar(bpy, work: Path):
    """A synthetic avatar (the tests' small body), imported by the add-on's importer: the armature."""
    from pixie_blender.scene.avatar import ImportOptions, build_avatars
    from tests.support.fake_result import make_fixture

    fix = make_fixture(work / "result", variant="small", num_persons=1, seed=11, stem="alice")
    options = ImportOptions(cache_dir=str(work / "cache"))
    return build_avatars(bpy.context, fix.result_path, options)[0]


def record_states(bpy, work: Path, keys=None) -> list[tuple[str, list[PanelRecord]]]:
    """(caption, panels) of each staged state."""
    keys = keys or [k for k, _ in STATES]
    captions = dict(STATES)
    avatar = make_avatar(bpy, work) if "avatar" in keys else None
    out = []
    for key in keys:
        with staged(key, bpy, work, avatar) as ctx:
            out.append((captions[key], record_sidebar(ctx)))
    return out


# --------------------------------------------------------------------------------------------------
# Painting (Pillow)

U = 22  #: one widget row (px)
GAP = 4  #: between the items of a layout that is not aligned
PAD = 6  #: inside a box
PANEL_W = 340
MARGIN = 18

CANVAS = (29, 29, 29)
PANEL = (48, 48, 48)
HEADER = (61, 61, 61)
SUB_HEADER = (55, 55, 55)
BOX = (40, 40, 40)
BOX_LINE = (26, 26, 26)
BUTTON = (84, 84, 84)
BUTTON_ALERT = (153, 56, 56)
FIELD = (34, 34, 34)
BLUE = (71, 114, 179)
TEXT = (221, 221, 221)
TEXT_DIM = (128, 128, 128)
TEXT_ALERT = (255, 110, 100)
CAPTION = (235, 235, 235)
NOTE = (160, 160, 160)

#: Stand-in symbols for Blender's icons (a small square for the others).
ICON_GLYPHS = {
    "CHECKMARK": "✓",
    "ERROR": "⚠",
    "INFO": "ℹ",
    "CANCEL": "✕",
    "X": "✕",
    "FILE_REFRESH": "↻",
    "IMPORT": "↓",
    "EXPORT": "↑",
    "PREFERENCES": "⚙",
    "URL": "↗",
    "SORTTIME": "◷",
    "PAUSE": "‖",
    "SEQUENCE": "▤",
    "DOT": "•",
    "USER": "☺",
    "TEXT": "≡",
    "AUTO": "A",
    "OUTLINER_OB_ARMATURE": "♙",
    "ARMATURE_DATA": "♙",
    "BONE_DATA": "╱",
    "SHAPEKEY_DATA": "◇",
    "CAMERA_DATA": "◙",
}

_FONT_FILES = (
    "DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
    "C:/Windows/Fonts/DejaVuSans.ttf",
    "C:/Windows/Fonts/segoeui.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
)


def load_font(size: int):
    """DejaVu Sans where the system has it, else Pillow's own font."""
    from PIL import ImageFont

    for name in _FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


class Painter:
    """Lays out and paints recorded panels; ``paint=False`` only measures."""

    def __init__(self, draw, font, bold):
        self.d = draw
        self.font = font
        self.bold = bold
        missing = font.getmask("\ue000").getbbox()  # the font's "no glyph" box
        self.glyphs = {k: g for k, g in ICON_GLYPHS.items() if font.getmask(g).getbbox() not in (None, missing)}

    # ------------------------------------------------------------------ primitives
    def text_w(self, text: str, font=None) -> float:
        return self.d.textlength(text, font=font or self.font)

    def fit(self, text: str, width: float, font=None) -> str:
        if self.text_w(text, font) <= width:
            return text
        while text and self.text_w(text + "…", font) > width:
            text = text[:-1]
        return text + "…" if text else ""

    def text(self, x, y, h, text, colour, *, width=None, align="left", font=None):
        font = font or self.font
        if width is not None:
            text = self.fit(text, width, font)
            if align == "center":
                x += (width - self.text_w(text, font)) / 2
            elif align == "right":
                x += width - self.text_w(text, font)
        self.d.text((x, y + h / 2), text, fill=colour, font=font, anchor="lm")

    def icon(self, x, y, h, icon: str, colour) -> float:
        """Paint ``icon`` at (x, y); returns the width it takes (0 for NONE)."""
        if icon == "NONE":
            return 0
        w = U - 4
        if icon == "BLANK1":
            return w
        glyph = self.glyphs.get(icon)
        if glyph is not None:
            self.d.text((x + w / 2, y + h / 2), glyph, fill=colour, font=self.font, anchor="mm")
        else:
            s = 9
            cx, cy = x + w / 2, y + h / 2
            self.d.rounded_rectangle((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), 2, outline=colour)
        return w

    def rect(self, box, fill, radius=4, outline=None):
        self.d.rounded_rectangle(box, radius, fill=fill, outline=outline)

    # ------------------------------------------------------------------ layout
    def layout(self, node, x, y, w, scale, flags, paint) -> float:
        """Height of ``node`` laid out at (x, y) with width ``w``; paints it when ``paint``."""
        if not isinstance(node, LayoutRecorder):
            h = self.element_height(node, scale)
            if paint:
                self.element(node, x, y, w, h, flags)
            return h
        flags = (flags[0] and node.enabled, flags[1] and node.active, flags[2] or node.alert)
        scale = scale * node.scale_y
        gap = 1 if node.align else GAP
        kids = node.children
        if node.kind in ("row", "split") and kids:
            widths = self.row_widths(node, w, gap)
            h = max(self.layout(c, 0, 0, cw, scale, flags, False) for c, cw in zip(kids, widths, strict=True))
            if paint:
                cx = x
                for c, cw in zip(kids, widths, strict=True):
                    self.layout(c, cx, y, cw, scale, flags, True)
                    cx += cw + gap
            return h
        inset = PAD if node.kind == "box" else 0
        heights = [self.layout(c, 0, 0, w - 2 * inset, scale, flags, False) for c in kids]
        h = sum(heights) + gap * max(0, len(kids) - 1) + 2 * inset
        if paint:
            if node.kind == "box":
                self.rect((x, y, x + w, y + h), BOX, radius=5, outline=BOX_LINE)
            cy = y + inset
            for c, ch in zip(kids, heights, strict=True):
                self.layout(c, x + inset, cy, w - 2 * inset, scale, flags, True)
                cy += ch + gap
        return h

    @staticmethod
    def _icon_only(e) -> bool:
        return (
            not isinstance(e, LayoutRecorder) and e.kind in ("operator", "prop") and e.text == "" and e.icon != "NONE"
        )

    def row_widths(self, node, w, gap) -> list[float]:
        kids = node.children
        free = w - gap * (len(kids) - 1)
        if node.kind == "split":
            f = float(node.options.get("factor", 0.0) or 0.0)
            if f > 0 and len(kids) == 2:
                return [free * f, free * (1 - f)]
        fixed = [U if self._icon_only(c) else None for c in kids]
        n_flex = sum(1 for f in fixed if f is None) or 1
        flex = (free - sum(f for f in fixed if f is not None)) / n_flex
        return [f if f is not None else flex for f in fixed]

    @staticmethod
    def element_height(e, scale) -> float:
        if e.kind == "separator":
            return round(U * 0.4 * (e.value or 1.0))
        return round(U * scale)

    # ------------------------------------------------------------------ elements
    def element(self, e, x, y, w, h, flags):
        enabled, active, alert = flags
        colour = TEXT if enabled and active else TEXT_DIM
        if e.kind == "label":
            c = TEXT_ALERT if alert and enabled else colour
            dx = self.icon(x, y, h, e.icon, c)
            self.text(x + dx + 2, y, h, e.text, c, width=w - dx - 2)
        elif e.kind == "operator":
            fill = BUTTON_ALERT if alert else BUTTON
            if not enabled:
                fill = tuple(int(v * 0.75) for v in fill)
            self.rect((x, y, x + w - 1, y + h - 1), fill)
            self.button_face(x, y, w, h, e.icon, e.text, colour)
        elif e.kind == "prop":
            self.prop(e, x, y, w, h, colour)
        elif e.kind == "progress":
            self.rect((x, y, x + w - 1, y + h - 1), FIELD)
            if e.value:
                self.rect((x, y, x + max(8, (w - 1) * e.value), y + h - 1), BLUE)
            self.text(x + 4, y, h, e.text, colour, width=w - 8, align="center")
        elif e.kind == "separator":
            return
        else:  # another UILayout method (template_*): a dashed outline with its name
            self.d.rectangle((x, y, x + w - 1, y + h - 1), outline=TEXT_DIM)
            self.text(x + 4, y, h, f"{e.kind}()", TEXT_DIM, width=w - 8)

    def button_face(self, x, y, w, h, icon, text, colour):
        iw = U - 4 if icon != "NONE" else 0
        tw = min(self.text_w(text), w - iw - 8) if text else 0
        left = x + (w - iw - tw - (2 if text and iw else 0)) / 2
        self.icon(left, y, h, icon, colour)
        if text:
            self.text(left + iw + (2 if iw else 0), y, h, text, colour, width=tw + 1)

    def prop(self, e, x, y, w, h, colour):
        value = e.value
        if e.prop_type == "BOOLEAN" and e.text == "" and e.icon != "NONE":  # an icon toggle
            self.rect((x, y, x + w - 1, y + h - 1), BLUE if value else BUTTON)
            self.icon(x + (w - (U - 4)) / 2, y, h, e.icon, colour)
            return
        if e.prop_type in ("ENUM", "STRING", "POINTER") or (e.property_split and e.text):
            lw = round(w * 0.4) if e.text else 0
            if lw:
                self.text(x, y, h, e.text, colour, width=lw - 6, align="right")
            fx, fw = x + lw, w - lw
        else:
            fx, fw = x, w
        if e.prop_type == "BOOLEAN":
            s = 13
            by = y + (h - s) / 2
            self.rect((fx + 2, by, fx + 2 + s, by + s), BLUE if value else FIELD, radius=3, outline=BOX_LINE)
            if value:
                self.d.text((fx + 2 + s / 2, by + s / 2), "✓", fill=TEXT, font=self.font, anchor="mm")
            if not e.property_split:
                self.text(fx + s + 8, y, h, e.text, colour, width=fw - s - 8)
        elif e.prop_type == "ENUM":
            self.rect((fx, y, fx + fw - 1, y + h - 1), BOX, outline=BOX_LINE)
            self.text(fx + 6, y, h, str(value), colour, width=fw - 24)
            self.text(fx + fw - 16, y, h, "⌄", colour)
        elif e.prop_type in ("FLOAT", "INT"):
            self.rect((fx, y, fx + fw - 1, y + h - 1), BUTTON)
            if e.options.get("slider"):
                lo, hi = e.options.get("soft_min", 0.0), e.options.get("soft_max", 1.0)
                t = 0.0 if hi <= lo else min(1.0, max(0.0, (float(value) - lo) / (hi - lo)))
                if t > 0:
                    self.rect((fx, y, fx + max(6, (fw - 1) * t), y + h - 1), BLUE)
            shown = f"{value:.3f}" if e.prop_type == "FLOAT" else str(value)
            if not e.property_split and e.text:
                self.text(fx + 6, y, h, e.text, colour, width=fw * 0.6)
            self.text(fx + 6, y, h, shown, colour, width=fw - 12, align="right")
        else:  # STRING, POINTER, ...
            self.rect((fx, y, fx + fw - 1, y + h - 1), FIELD)
            self.text(fx + 6, y, h, str(value if value is not None else ""), colour, width=fw - 12)

    # ------------------------------------------------------------------ panels
    def panels(self, records: list[PanelRecord], x, y, paint) -> float:
        """The main panel (header, body) with its child panels inside; returns the height."""
        top = y
        inner = PANEL_W - 2 * 8
        heights = []
        for r in records:
            hh = U + (4 if not r.child else 0)
            body = 0 if r.closed or r.layout is None else self.layout(r.layout, 0, 0, inner, 1.0, (1, 1, 0), False)
            heights.append((hh, body))
        total = sum(hh + (b + 12 if b else 0) for hh, b in heights) + 6
        if not paint:
            return total
        self.rect((x, y, x + PANEL_W, y + total), PANEL, radius=6)
        for r, (hh, body) in zip(records, heights, strict=True):
            if r.child:
                self.rect((x + 4, y, x + PANEL_W - 4, y + hh), SUB_HEADER, radius=4)
            else:
                self.rect((x, y, x + PANEL_W, y + hh), HEADER, radius=6)
            arrow = "▸" if r.closed else "▾"
            self.text(x + 10, y, hh, arrow, TEXT)
            self.text(x + 26, y, hh, r.label, TEXT, font=self.bold if not r.child else self.font)
            y += hh
            if body:
                self.layout(r.layout, x + 8, y + 6, inner, 1.0, (True, True, False), True)
                y += body + 12
        return y + 6 - top


def render(columns: list[tuple[str, list[PanelRecord]]], out: Path, *, note: str | None = None) -> Path:
    """Paint each (caption, panels) side by side into the PNG ``out``."""
    from PIL import Image, ImageDraw

    font, bold, small = load_font(12), load_font(13), load_font(11)
    try:  # a bold face where there is one
        from PIL import ImageFont

        bold = ImageFont.truetype(str(Path(bold.path).with_name("DejaVuSans-Bold.ttf")), 13)
    except (AttributeError, OSError):
        pass
    scratch = Painter(ImageDraw.Draw(Image.new("RGB", (1, 1))), font, bold)
    caption_lines = [textwrap.wrap(c, 44) for c, _ in columns]
    cap_h = 18 * max(len(ln) for ln in caption_lines) + 8
    heights = [scratch.panels(p, 0, 0, False) for _, p in columns]
    note_h = 30 if note else 0
    width = MARGIN + len(columns) * (PANEL_W + MARGIN)
    height = MARGIN + cap_h + max(heights) + MARGIN + note_h
    img = Image.new("RGB", (width, height), CANVAS)
    painter = Painter(ImageDraw.Draw(img), font, bold)
    for i, ((_, panels), lines) in enumerate(zip(columns, caption_lines, strict=True)):
        x = MARGIN + i * (PANEL_W + MARGIN)
        for j, line in enumerate(lines):
            painter.text(x, MARGIN + 18 * j, 18, line, CAPTION, font=bold)
        painter.panels(panels, x, MARGIN + cap_h, True)
    if note:
        painter.text(MARGIN, height - MARGIN - note_h + 8, 18, note, NOTE, font=small, width=width - 2 * MARGIN)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    return out


NOTE_TEXT = (
    "Schematic drawn from the PIXIE panels' own draw() code by tools/panel_picture.py (staged states, "
    "stand-in icons); not a screenshot."
)


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "panel.png")
    parser.add_argument("--states", nargs="+", choices=[k for k, _ in STATES], help="default: all")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="pixie-panel-") as tmp:
        work = Path(tmp)
        os.environ["BLENDER_USER_RESOURCES"] = str(work / "user")
        os.environ.setdefault("XDG_CACHE_HOME", str(work / "xdg"))
        import bpy  # noqa: I001 - bpy first: it puts addon_utils on the path
        import addon_utils

        if addon_utils.enable("pixie_blender", default_set=True) is None:
            print("the add-on could not be enabled", file=sys.stderr)
            return 1
        try:
            columns = record_states(bpy, work, args.states)
            path = render(columns, args.out, note=NOTE_TEXT)
        finally:
            addon_utils.disable("pixie_blender", default_set=True)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
