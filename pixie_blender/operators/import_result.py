"""``pixie.import_result``: build avatars from PIXIE result files (file browser, drag and drop)."""

from __future__ import annotations

import os
import traceback

import bpy
from bpy.props import BoolProperty, CollectionProperty, EnumProperty, FloatProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..preferences import CORRECTIVE_ITEMS, PLACEMENT_ITEMS, get_preferences


class PIXIE_OT_import_result(bpy.types.Operator, ImportHelper):
    """Build rigged, expressive SMPL-X avatars from PIXIE result files (.pixie.npz)"""

    bl_idname = "pixie.import_result"
    bl_label = "Import PIXIE Result"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.pixie.npz", options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    pose_correctives: EnumProperty(name="Pose Correctives", items=CORRECTIVE_ITEMS, default="BAKED")
    placement: EnumProperty(name="Placement", items=PLACEMENT_ITEMS, default="PHOTO")
    add_camera: BoolProperty(
        name="Photo Camera",
        default=True,
        description="Add a camera with the source photo as background (one per photo, or one per avatar "
        "when placed in place)",
    )
    focal_length: FloatProperty(
        name="Focal Length (px)",
        default=0.0,
        min=0.0,
        soft_max=20000.0,
        description="As in photo: the camera's focal length in pixels, if known (0: the image diagonal, "
        "about 53° diagonal field of view)",
    )
    place_on_ground: BoolProperty(
        name="Stand on Ground",
        default=True,
        description="Put the lowest point of each avatar (as in photo: of the group) at the cursor's height",
    )
    gap: FloatProperty(
        name="Spacing",
        default=0.3,
        min=0.0,
        soft_max=3.0,
        unit="LENGTH",
        description="Gap between avatars standing side by side",
    )
    texture: EnumProperty(
        name="Texture",
        items=(
            ("ALBEDO", "Albedo", "Unlit face albedo in the body texture: correct under any lighting"),
            ("LIT", "Lit", "The albedo with PIXIE's estimate of the photo's lighting baked in"),
            ("PHOTO", "Photo", "The photo's visible face pixels over the albedo"),
        ),
        default="ALBEDO",
        description="Base colour of the avatar, when the result has face textures",
    )
    detail: EnumProperty(
        name="Facial Detail",
        items=(
            ("DISPLACE", "Displace", "Real displaced geometry in Cycles (adaptive subdivision); normal map in EEVEE"),
            ("SHADING", "Shading Only", "Normal/bump map only, no subdivision"),
            ("NONE", "None", "Ignore the detail maps"),
        ),
        default="DISPLACE",
        description="How the result's facial displacement map is used",
    )
    world_lighting: BoolProperty(
        name="Photo Lighting",
        default=False,
        description="Replace the scene's world with PIXIE's spherical-harmonics estimate of the photo's light",
    )

    def invoke(self, context, event):
        prefs = get_preferences(context)
        if prefs is not None:
            if not self.properties.is_property_set("pose_correctives"):
                self.pose_correctives = prefs.default_pose_correctives
            if not self.properties.is_property_set("add_camera"):
                self.add_camera = prefs.default_add_camera
            if not self.properties.is_property_set("placement"):
                self.placement = prefs.default_placement
        # drag and drop (FileHandler) sets the paths: confirm options; else the file browser
        return self.invoke_popup(context)

    def _paths(self) -> list[str]:
        if self.files and self.directory:
            paths = [os.path.join(self.directory, f.name) for f in self.files if f.name]
            if paths:
                return paths
        return [self.filepath] if self.filepath else []

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(self, "pose_correctives")
        layout.prop(self, "placement")
        layout.prop(self, "add_camera")
        if self.placement == "PHOTO":
            layout.prop(self, "focal_length")
        layout.prop(self, "place_on_ground")
        layout.prop(self, "gap")
        layout.prop(self, "texture")
        layout.prop(self, "detail")
        layout.prop(self, "world_lighting")

    def execute(self, context):
        from ..io.schema import PixieFormatError
        from ..scene.avatar import ImportOptions, build_many

        paths = self._paths()
        if not paths:
            self.report({"ERROR"}, "No result file given")
            return {"CANCELLED"}
        prefs = get_preferences(context)
        options = ImportOptions(
            pose_correctives=self.pose_correctives,
            add_camera=self.add_camera,
            placement=self.placement,
            focal_px=self.focal_length or None,
            place_on_ground=self.place_on_ground,
            gap=self.gap,
            use_cache=True if prefs is None else prefs.use_template_cache,
            texture=self.texture,
            detail=self.detail,
            world_lighting=self.world_lighting,
        )
        try:
            rep = build_many(context, paths, options)
        except PixieFormatError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except Exception as exc:  # a bug or an unexpected Blender state: nothing is left behind
            traceback.print_exc()
            self.report({"ERROR"}, f"PIXIE import failed ({type(exc).__name__}: {exc}); nothing was imported")
            return {"CANCELLED"}
        for w in rep.warnings[:8]:
            self.report({"WARNING"}, w)
        n = len(rep.rigs)
        self.report(
            {"INFO"},
            f"Imported {n} avatar{'s' if n != 1 else ''} from {len(paths)} "
            f"file{'s' if len(paths) != 1 else ''} in {rep.seconds:.2f} s",
        )
        return {"FINISHED"}


CLASSES = (PIXIE_OT_import_result,)
