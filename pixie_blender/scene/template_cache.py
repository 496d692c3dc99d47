"""Template cache: the skinned, shape-keyed avatar of one model package, built once and kept as a
``.blend`` under the add-on's user cache; later avatars are appended from it.

Layout of the cache directory (``bpy.utils.extension_path_user(__package__, path="cache")``)::

    packages/<content_sha256>.npz                      model packages seen in successful imports
    templates/<sha16>-<kind>-k<K>-t<ver>-b<blender>.blend

The key holds everything the template depends on: package content hash, live-corrective keys or
not, number of shape keys, this module's template version and the Blender version that wrote it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import bpy
import numpy as np

from ..io import body_model
from ..io.constants import JOINT_NAMES
from ..io.schema import PackageData, package_cache_path
from . import armature, mesh, shape_keys, skinning

TEMPLATE_VERSION = 1
TEMPLATE_RIG = "PIXIE_template_rig"
TEMPLATE_BODY = "PIXIE_template_body"
KEY_PROP = "_pixie_template_key"


def _addon_package() -> str:
    return __package__.rpartition(".")[0]  # "pixie_blender" or "bl_ext.<repo>.pixie_blender"


def default_cache_dir() -> Path:
    """The extension's user cache; a data-files folder when not installed as an extension."""
    try:
        return Path(bpy.utils.extension_path_user(_addon_package(), path="cache", create=True))
    except (ValueError, AttributeError):
        return Path(bpy.utils.user_resource("DATAFILES", path="pixie_blender/cache", create=True))


def template_key(package_sha256: str, num_shape: int, live_correctives: bool) -> str:
    kind = "live" if live_correctives else "std"
    v = bpy.app.version
    return f"{package_sha256[:16]}-{kind}-k{num_shape}-t{TEMPLATE_VERSION}-b{v[0]}.{v[1]}"


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".part" + path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def store_package(package: PackageData, cache_dir: Path) -> Path | None:
    """Copy a package into the cache unless it is there already; its content hash is verified
    first (once per package), so the cache only holds packages that match their names."""
    dst = package_cache_path(cache_dir, package.content_sha256)
    if dst.is_file() or package.path.resolve() == dst.resolve():
        return dst
    package.verify()
    tmp = _atomic_target(dst)
    try:
        shutil.copyfile(package.path, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst


def clear_cache(cache_dir: Path) -> int:
    """Delete cached templates and packages; returns the number of files removed."""
    n = 0
    for sub in ("templates", "packages"):
        d = Path(cache_dir) / sub
        if d.is_dir():
            for f in d.iterdir():
                if f.is_file():
                    f.unlink()
                    n += 1
    return n


def cache_size(cache_dir: Path) -> int:
    total = 0
    for sub in ("templates", "packages"):
        d = Path(cache_dir) / sub
        if d.is_dir():
            total += sum(f.stat().st_size for f in d.iterdir() if f.is_file())
    return total


def build_template(
    context, plan: body_model.TemplatePlan, collection: bpy.types.Collection, key: str
) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Build the template avatar (armature at the template joints, skinned mesh, keys)."""
    arm_ob = armature.create_armature(context, TEMPLATE_RIG, collection, plan.bone_heads, plan.bone_lengths)
    arm = arm_ob.data
    arm[KEY_PROP] = key
    arm["_pixie_joints_template"] = plan.joints_template.astype(np.float32).ravel()
    arm["_pixie_joints_shapedirs"] = plan.joints_shapedirs.astype(np.float32).ravel()
    arm["_pixie_joints_exprdirs"] = plan.joints_exprdirs.astype(np.float32).ravel()
    arm["_pixie_num_shape"] = int(plan.shape_offsets.shape[0])

    me = mesh.create_mesh(TEMPLATE_BODY, plan)
    me[KEY_PROP] = key
    body = bpy.data.objects.new(TEMPLATE_BODY, me)
    collection.objects.link(body)
    body.parent = arm_ob
    skinning.fill_vertex_groups(
        body, list(JOINT_NAMES), plan.weight_rows, plan.weight_cols, plan.weight_values
    )
    mod = body.modifiers.new("Armature", "ARMATURE")
    mod.object = arm_ob
    mod.use_vertex_groups = True
    mod.use_bone_envelopes = False
    mod.use_deform_preserve_volume = False
    shape_keys.add_blend_shape_keys(body, plan)
    if plan.pose_offsets is not None:
        shape_keys.add_corrective_drivers(body, arm_ob)
    return arm_ob, body


def write_template(path: Path, arm_ob: bpy.types.Object, body: bpy.types.Object) -> bool:
    tmp = _atomic_target(path)
    try:
        bpy.data.libraries.write(str(tmp), {arm_ob, body}, fake_user=False, compress=False)
        os.replace(tmp, path)
        return True
    except OSError:
        return False
    finally:
        if tmp.exists():
            tmp.unlink()


def load_template(path: Path, key: str, num_vertices: int):
    """Append a fresh copy of the cached template; None if it is missing or does not fit."""
    if not path.is_file():
        return None
    before = set(bpy.data.libraries)
    try:
        with bpy.data.libraries.load(str(path), link=False) as (src, dst):
            if TEMPLATE_RIG not in src.objects or TEMPLATE_BODY not in src.objects:
                dst.objects = []
            else:
                dst.objects = [TEMPLATE_RIG, TEMPLATE_BODY]
        objs = [o for o in dst.objects if o is not None]
    except (OSError, RuntimeError, ValueError):
        objs = []
    finally:
        for lib in list(bpy.data.libraries):
            if lib not in before:
                bpy.data.libraries.remove(lib)
    arm_ob = next((o for o in objs if o.type == "ARMATURE"), None)
    body = next((o for o in objs if o.type == "MESH"), None)
    ok = (
        arm_ob is not None
        and body is not None
        and arm_ob.data.get(KEY_PROP) == key
        and body.data.get(KEY_PROP) == key
        and len(body.data.vertices) == num_vertices
        and body.parent == arm_ob
        and body.data.shape_keys is not None
    )
    if not ok:
        remove_objects(objs)
        return None
    return arm_ob, body


def copy_avatar(arm_ob: bpy.types.Object, body: bpy.types.Object):
    """An independent copy of an avatar pair (data, shape keys and drivers re-targeted)."""
    arm2 = arm_ob.copy()
    arm2.data = arm_ob.data.copy()
    body2 = body.copy()
    body2.data = body.data.copy()
    body2.parent = arm2
    for mod in body2.modifiers:
        if mod.type == "ARMATURE" and mod.object == arm_ob:
            mod.object = arm2
    shape_keys.retarget_drivers(body2, arm_ob, arm2)
    return arm2, body2


def remove_objects(objs) -> None:
    data = []
    for o in objs:
        if o is None:
            continue
        d = o.data
        bpy.data.objects.remove(o)
        if d is not None and d.users == 0:
            data.append(d)
    for d in data:
        if isinstance(d, bpy.types.Mesh):
            bpy.data.meshes.remove(d)
        elif isinstance(d, bpy.types.Armature):
            bpy.data.armatures.remove(d)


class TemplateSource:
    """Hands out one fresh (armature, mesh) pair per person for a package and options."""

    def __init__(
        self, context, package: PackageData, *, num_shape: int, live_correctives: bool, cache_dir: Path | None
    ):
        self.context = context
        self.package = package
        self.num_shape = num_shape
        self.live = live_correctives
        self.key = template_key(package.content_sha256, num_shape, live_correctives)
        self.path = (Path(cache_dir) / "templates" / f"{self.key}.blend") if cache_dir else None
        self.built = False  # True when this import built the template (the "first" avatar)
        self._written = False
        self._pristine = None  # in-memory template when the cache is unavailable

    @property
    def cached(self) -> bool:
        return self.path is not None and self.path.is_file()

    def instances(self, n: int, collection: bpy.types.Collection):
        out = []
        for _ in range(n):
            pair = None
            if self.path is not None and (self._written or not self.built):
                pair = load_template(self.path, self.key, self.package.num_vertices)
            if pair is None and self._pristine is not None:
                pair = copy_avatar(*self._pristine)
            if pair is None:
                pair = self._build(collection)
            else:
                for o in pair:
                    if collection not in o.users_collection:
                        collection.objects.link(o)
            out.append(pair)
        if self._pristine is not None:
            remove_objects(self._pristine)
            self._pristine = None
        return out

    def _build(self, collection):
        if not self.package.verified:
            self.package.verify()
        plan = body_model.template_plan(self.package, num_shape_keys=self.num_shape, with_pose_keys=self.live)
        arm_ob, body = build_template(self.context, plan, collection, self.key)
        self.built = True
        if self.path is not None:
            self._written = write_template(self.path, arm_ob, body)
        if not self._written:
            # keep a pristine copy for further persons of this import
            self._pristine = copy_avatar(arm_ob, body)
        return arm_ob, body
