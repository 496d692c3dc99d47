"""Add-on preferences: the backend (Install Backend / Check Backend, its own-environment and remote
settings: ``ui.backend.draw_preferences``), the data folder, import defaults, joints-follow-shape,
cache, and the "Set up model files" section (``ui.data_setup.draw_preferences``)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

ADDON_PACKAGE = __package__

CORRECTIVE_ITEMS = (
    (
        "BAKED",
        "Baked",
        "One 'PoseCorrectives' key holding the correctives of the imported pose "
        "(exact, cheap; re-bake after re-posing)",
    ),
    ("LIVE", "Live", "486 'Pose###' keys driven by the bone rotations (follow any pose; slower playback)"),
    ("NONE", "None", "No pose correctives"),
)

TORCH_BUILD_ITEMS = (
    (
        "AUTO",
        "Automatic",
        "Choose from the hardware: CUDA for a supported NVIDIA GPU and driver, MPS on Apple Silicon, else CPU",
    ),
    ("CPU", "CPU", "The CPU build (smallest download)"),
    ("cu130", "CUDA 13.0", "NVIDIA driver 580 or newer; GPUs of compute capability 7.5 to 12.x"),
    ("cu126", "CUDA 12.6", "NVIDIA driver 525 or newer; GPUs of compute capability 5.0 to 9.0"),
)

PLACEMENT_ITEMS = (
    (
        "PHOTO",
        "As in Photo",
        "Every person stands where the photo shows them, seen through one perspective camera "
        "(focal length: the image diagonal unless given)",
    ),
    (
        "IN_PLACE",
        "In Place",
        "Avatars side by side at the cursor, each with its own orthographic photo camera (exact overlay)",
    ),
)


DETECTOR_ITEMS = (
    ("auto", "Automatic", "mediapipe when installed, else OpenCV's face cascade"),
    ("mediapipe", "MediaPipe", "MediaPipe's person detector (finds every person)"),
    ("opencv", "OpenCV", "OpenCV's face cascade (cruder)"),
    ("none", "None (whole image)", "No detector: each image is one person, cropped already"),
)
DEVICE_ITEMS = (
    ("AUTO", "Automatic", "The GPU if the backend's torch can use one, else the CPU"),
    ("CPU", "CPU", "The processor"),
    ("CUDA", "CUDA", "An NVIDIA GPU"),
    ("MPS", "Apple GPU", "Apple Silicon (MPS)"),
)
PRECISION_ITEMS = (
    ("auto", "Automatic", "bf16 where the device runs it natively (recent NVIDIA GPUs, CPUs with AVX512-BF16 "
     "or AMX, Apple Silicon where supported), else fp32"),
    ("fp32", "Full (fp32)", "Full precision everywhere (the parity reference; slower)"),
    ("bf16", "bf16", "Faster encoders on recent NVIDIA GPUs and CPUs with bf16 instructions"),
    ("fp16", "fp16", "Faster encoders on older NVIDIA GPUs"),
)


class PIXIE_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    backend_python: StringProperty(
        name="Backend Python",
        subtype="FILE_PATH",
        description="Your own environment instead of the installed one: the Python interpreter of an "
        "environment where pixie-backend is installed (for example .../venv/bin/python or "
        "...\\venv\\Scripts\\python.exe). Empty: the backend that Install Backend made",
    )
    backend_folder: StringProperty(
        name="Install Folder",
        subtype="DIR_PATH",
        description="Where Install Backend puts the backend's environment (about 1.5 GB, 5 GB with CUDA). "
        "Empty: the add-on's user folder. On Windows choose a short path such as C:\\pixie",
    )
    install_python: StringProperty(
        name="Python for the Environment",
        subtype="FILE_PATH",
        description="The Python 3.10+ the environment is made from. Empty: Blender's own Python "
        "(only copied from; nothing is ever installed into it)",
    )
    torch_build: EnumProperty(
        name="Torch Build",
        items=TORCH_BUILD_ITEMS,
        default="AUTO",
        description="Which PyTorch build Install Backend installs",
    )
    idle_minutes: IntProperty(
        name="Stop When Idle (min)",
        default=15,
        min=0,
        soft_max=120,
        description="Stop the backend after this many minutes without work, freeing its memory (0: never)",
    )
    remote_enabled: BoolProperty(
        name="Use a Remote Backend",
        default=False,
        description="Send the work to a backend on another machine (for example a GPU box reached over an SSH "
        "tunnel) instead of starting one here",
    )
    remote_url: StringProperty(
        name="URL",
        default="http://127.0.0.1:8765",
        description="Address of the remote backend (pixie-backend serve on that machine)",
    )
    remote_token: StringProperty(
        name="Token",
        subtype="PASSWORD",
        description="The token the remote backend was started with. Stored in Blender's preferences",
    )
    reconstruct_detector: EnumProperty(
        name="Detector",
        items=DETECTOR_ITEMS,
        default="auto",
        description="How Reconstruct from Image finds the people in a photo",
    )
    backend_device: EnumProperty(
        name="Device",
        items=DEVICE_ITEMS,
        default="AUTO",
        description="Where the local backend runs the networks (a change restarts it on the next reconstruction)",
    )
    backend_precision: EnumProperty(
        name="Precision",
        items=PRECISION_ITEMS,
        default="auto",
        description="Precision of the networks' encoders (a change restarts the local backend)",
    )
    data_dir: StringProperty(
        name="Model Data Folder",
        subtype="DIR_PATH",
        description="Folder with the licensed PIXIE and SMPL-X files (empty: the backend's default, "
        "$PIXIE_DATA_DIR or the per-user data folder)",
    )

    auto_update_joints: BoolProperty(
        name="Joints Follow Shape Keys",
        description="Move the rest bones when Shape/Exp key values change (debounced)",
        default=True,
    )
    default_pose_correctives: EnumProperty(
        name="Pose Correctives",
        items=CORRECTIVE_ITEMS,
        default="BAKED",
        description="Default for the import operator",
    )
    default_add_camera: BoolProperty(
        name="Photo Camera",
        default=True,
        description="Default for the import operator: add a camera with the photo as background",
    )
    default_placement: EnumProperty(
        name="Placement",
        items=PLACEMENT_ITEMS,
        default="PHOTO",
        description="Default for the import operator: where the avatars of one photo stand",
    )
    use_template_cache: BoolProperty(
        name="Template Cache",
        default=True,
        description="Keep a built avatar template per model package in the cache for fast imports",
    )

    def draw(self, context):
        layout = self.layout
        from .ui import backend

        backend.draw_preferences(layout.box(), context, self)
        col = layout.column(heading="Model Files")
        col.prop(self, "data_dir")
        col = layout.column(heading="Import")
        col.prop(self, "default_pose_correctives")
        col.prop(self, "default_add_camera")
        col.prop(self, "default_placement")
        col = layout.column(heading="Rig")
        col.prop(self, "auto_update_joints")
        box = layout.box()
        box.label(text="Cache", icon="FILE_CACHE")
        from .scene import template_cache

        cache = template_cache.default_cache_dir()
        box.prop(self, "use_template_cache")
        row = box.row()
        row.label(text=f"{cache}  ({template_cache.cache_size(cache) / 1e6:.0f} MB)")
        row.operator("pixie.clear_cache", text="Clear", icon="TRASH")
        from .ui import data_setup

        data_setup.draw_preferences(layout.box(), context)


def get_preferences(context=None):
    """The preferences, or None when the add-on was registered without being enabled (tests)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    return addon.preferences if addon is not None else None


CLASSES = (PIXIE_AP_preferences,)
