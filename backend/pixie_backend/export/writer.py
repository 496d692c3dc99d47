"""Turning :class:`~pixie_backend.pipeline.ImageResult` objects into files in an output folder:
``<name>.pixie.npz`` (+ ``<name>_p<k>.obj``), one model package, and ``status.jsonl``."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..assets import sha256_file
from ..pipeline import ImageResult, Pixie
from .result_file import (
    FORMAT_VERSION,
    RESULT_FORMAT,
    RESULT_SUFFIX,
    PackageRef,
    result_arrays,
    result_header,
    write_obj,
    write_package,
    write_result,
)

log = logging.getLogger(__name__)
STATUS_FILE = "status.jsonl"


def output_names(paths: list[Path]) -> list[str]:
    """File-name stems for results: the image stem, made unique with a short path hash on clashes."""
    stems = [p.stem for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    out = []
    for p, s in zip(paths, stems, strict=True):
        if counts[s] > 1:
            s = f"{s}_{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"
        out.append(s)
    return out


def is_complete_result(path: Path) -> bool:
    """True if ``path`` is a readable result file of this format version (used to resume)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            return header.get("format") == RESULT_FORMAT and header.get("version") == FORMAT_VERSION \
                and "vertices" in z.files
    except Exception:  # noqa: BLE001 - any unreadable file is incomplete
        return False


class ResultWriter:
    """Writes results for one :class:`Pixie` into ``out_dir``."""

    def __init__(self, pixie: Pixie, out_dir: str | Path, write_objs: bool = True):
        self.pixie = pixie
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.write_objs = write_objs
        self.smplx_cpu = copy.deepcopy(pixie.model.smplx).to("cpu")
        data = pixie.data
        self.synthetic = bool(data is not None and data.is_synthetic)
        self.uvs = None
        if data is not None and data.has("smplx_tex_obj"):
            from ..body.obj_io import read_obj_uvs

            try:
                self.uvs = read_obj_uvs(data.path("smplx_tex_obj"))
                if self.uvs[1].shape != tuple(pixie.model.smplx.faces.shape):
                    raise ValueError(f"{len(self.uvs[1])} UV triangles for {pixie.model.smplx.faces.shape[0]} "
                                     "model triangles")
            except (ValueError, OSError) as e:
                log.warning("smplx_tex.obj is unusable (%s); results get no UVs", e)
                self.uvs = None
        self.checkpoint_sha = sha256_file(pixie.checkpoint_path) if pixie.checkpoint_path else None
        self.smplx_sha = sha256_file(pixie.smplx_path) if pixie.smplx_path else None
        self.package: PackageRef = write_package(self.out_dir, self.smplx_cpu, self.uvs, self.smplx_sha,
                                                 self.synthetic)
        cfg = pixie.config
        self.settings = {
            "detector": getattr(pixie._detector, "name", str(pixie._detector_spec)),
            "device": str(pixie.device), "precision": cfg.precision, "speed": cfg.speed,
            "part_convention": cfg.crop.part_convention, "body_scale": cfg.crop.body_scale,
            "head_scale": cfg.crop.head_scale, "hand_scale": cfg.crop.hand_scale,
            **{k: v for k, v in asdict(cfg.fusion).items()},
        }

    def result_path(self, name: str) -> Path:
        return self.out_dir / f"{name}{RESULT_SUFFIX}"

    def write(self, result: ImageResult, name: str, frame: int | None = None) -> list[Path]:
        """Write one successful image result; returns the files written."""
        if not result.ok or result.output is None:
            raise ValueError(f"cannot write a failed result ({result.message})")
        arrays = result_arrays(result.output, result.persons, self.smplx_cpu, self.pixie.config.crop.image_size)
        src = Path(result.source)
        source = {"path": result.source, "name": src.stem, "width": result.width, "height": result.height,
                  "sha256": None}
        if src.is_file():
            source.update(path=str(src.resolve()), sha256=sha256_file(src))
        header = result_header(source, len(result.persons), self.package, self.checkpoint_sha, self.smplx_sha,
                               self.synthetic, self.settings, frame)
        header["persons"] = [{"box_source": q.source, "score": q.score} for q in result.persons]
        path = self.result_path(name)
        write_result(path, header, arrays)
        written = [path]
        if self.write_objs:
            faces = self.smplx_cpu.faces.numpy()
            for k in range(len(result.persons)):
                obj = self.out_dir / f"{name}_p{k}.obj"
                write_obj(obj, arrays["vertices"][k], faces, self.uvs, upright_about=arrays["joints"][k, 0])
                written.append(obj)
        return written

    def log_status(self, record: dict) -> None:
        with open(self.out_dir / STATUS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
