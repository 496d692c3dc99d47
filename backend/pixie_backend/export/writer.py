"""Turning an :class:`~pixie_backend.jobs.prepare.ImageResult` into files: ``<name>.pixie.npz``
(+ ``<name>_p<k>.obj``) for each image and one model package per output folder.

Everything comes from the engine's public facts and the model's own outputs: nothing here reads
the model's internals, copies the SMPL-X layer or evaluates it again. Where the files go (and how
they are committed) is the job's business: :meth:`ResultWriter.write` writes into any folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..runtime.engine import Engine
from .appearance_arrays import appearance_arrays, appearance_header
from .result_file import (
    RESULT_SUFFIX,
    PackageRef,
    result_arrays,
    result_header,
    write_obj,
    write_package,
    write_result,
)

log = logging.getLogger(__name__)


def settings_dict(engine: Engine, detector: str) -> dict:
    """The settings a result header records and the resume key hashes (``detector``: the detector
    that ran; ``appearance``: the face-appearance settings in effect)."""
    from dataclasses import asdict

    cfg = engine.config
    return {
        "detector": detector, "device": str(engine.device), "precision": cfg.precision, "speed": cfg.speed,
        "part_convention": cfg.crop.part_convention, "body_scale": cfg.crop.body_scale,
        "head_scale": cfg.crop.head_scale, "hand_scale": cfg.crop.hand_scale, **asdict(cfg.fusion),
        "appearance": engine.appearance_settings,  # None: no face appearance
    }


class ResultWriter:
    """Writes the results of one engine; the model package goes into ``package_dir``.

    Args:
        engine: an :class:`Engine` (or an object with an ``engine`` attribute, e.g. ``Pixie``).
        package_dir: the output folder (the package is written there once, atomically).
        write_objs: also write quick-look OBJs.
        detector: the detector name the headers record (default: the ``Pixie``'s, else ``"given"``).
    """

    def __init__(self, engine, package_dir: str | Path, write_objs: bool = True, detector: str | None = None):
        if not isinstance(engine, Engine):
            if detector is None and hasattr(engine, "detector_name"):
                detector = engine.detector_name
            engine = engine.engine
        self.engine = engine
        self.out_dir = Path(package_dir)
        self.write_objs = write_objs
        self.synthetic = engine.synthetic
        hashes = engine.file_hashes
        self.checkpoint_sha, self.smplx_sha = hashes["checkpoint"], hashes["smplx"]
        self.package: PackageRef = write_package(self.out_dir, engine.model.smplx, engine.uvs, self.smplx_sha,
                                                 self.synthetic)
        self.settings = settings_dict(engine, detector or "given")

    def result_path(self, name: str) -> Path:
        return self.out_dir / f"{name}{RESULT_SUFFIX}"

    def write(self, result, name: str, folder: str | Path | None = None, frame: int | None = None,
              source_sha256: str | None = None) -> list[Path]:
        """Write one successful image result into ``folder`` (default: the output folder).

        Returns:
            the files written, the result file first.
        """
        if not result.ok or result.output is None:
            raise ValueError(f"cannot write a failed result ({result.message})")
        folder = Path(folder) if folder is not None else self.out_dir
        arrays = result_arrays(result.output, result.persons, self.engine.config.crop.image_size)
        look = appearance_arrays(result.appearance) if result.appearance is not None else {}
        arrays.update(look)
        src = Path(result.source)
        source = {"path": result.source, "name": result.name or src.stem, "width": result.width,
                  "height": result.height, "sha256": source_sha256}
        if src.is_file():
            source["path"] = str(src.resolve())
            if source_sha256 is None:
                from ..assets import sha256_file

                source["sha256"] = sha256_file(src)
        settings = dict(self.settings)
        if result.persons and all(q.source == "given" for q in result.persons):
            settings["detector"] = "given"
        header = result_header(source, len(result.persons), self.package, self.checkpoint_sha, self.smplx_sha,
                               self.synthetic, settings, frame)
        header["persons"] = [{"box_source": q.source, "score": q.score} for q in result.persons]
        engine = self.engine
        look_cfg = engine.appearance.cfg if engine.appearance is not None else None
        header["appearance"] = appearance_header(look, look_cfg, engine.appearance_notices)
        path = folder / f"{name}{RESULT_SUFFIX}"
        write_result(path, header, arrays)
        written = [path]
        if self.write_objs:
            faces = self.engine.faces
            for k in range(len(result.persons)):
                obj = folder / f"{name}_p{k}.obj"
                write_obj(obj, arrays["vertices"][k], faces, self.engine.uvs, upright_about=arrays["joints"][k, 0])
                written.append(obj)
        return written
