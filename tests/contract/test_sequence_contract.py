"""Contract for sequences: files the backend's SequenceBuilder writes are what the add-on's reader
(implemented separately) reads, value for value; both placement implementations agree; the shared
smoothing module is one file in two places."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from pixie_blender.io import placement as addon_placement
from pixie_blender.io import sequence as addon_sequence

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from pixie_backend.body.smplx_layer import PixieSMPLX
    from pixie_backend.sequence.synthetic_clip import make_clip
    from pixie_backend.synthetic.files import write_body_assets

    d = tmp_path_factory.mktemp("seq-contract-body")
    write_body_assets(d, variant="small", seed=0)
    smplx = PixieSMPLX.from_files(d / "SMPLX_NEUTRAL_2020.npz", d / "smplx_extra_joints.yaml", d / "SMPLX_to_J14.pkl")
    return make_clip(smplx, "turn_away", num_frames=40, seed=2)


MODEL = {
    "checkpoint_sha256": None,
    "smplx_sha256": None,
    "package": {"file": "smplx_package_0123456789ab.npz", "sha256": hashlib.sha256(b"pkg").hexdigest()},
}


@pytest.fixture(scope="module")
def written(clip, tmp_path_factory):
    from pixie_backend.sequence.sequence_file import ClipInfo, SequenceBuilder

    out = tmp_path_factory.mktemp("seq-contract")
    paths = [out / "frames" / f"f{k:03d}.png" for k in range(clip.num_frames)]
    builder = SequenceBuilder(ClipInfo.for_frames(paths, fps=clip.fps, width=clip.width, height=clip.height))
    rng = np.random.default_rng(0)
    truth = {0: [], 1: []}
    for k in range(clip.num_frames):
        persons = [p for p in (0, 1) if not (p == 1 and k in (33, 34))]  # person 1 missing in 33–34
        if k == 5:
            builder.set_frame_status(k, "error", "simulated decoding error")
            continue
        arrays = clip.person_arrays(k, persons)
        arrays["betas"] = arrays["betas"] + rng.normal(scale=0.05, size=arrays["betas"].shape).astype(np.float32)
        if k == 7:
            arrays["moderator_weights"][:] = np.nan  # the moderator did not run
        sources = ["proposal" if (p == 1 and 20 <= k < 30) else "detector" for p in persons]
        builder.add_persons(k, arrays, track_ids=[10 + p for p in persons], box_sources=sources)
        for i, p in enumerate(persons):
            truth[p].append((k, {name: v[i] for name, v in arrays.items()}))
    path = builder.write(out / "clip.pixie-seq.npz", model=MODEL, synthetic=True, tracker={"max_age": 30})
    return path, truth


def test_reader_reads_what_the_builder_wrote(clip, written):
    path, truth = written
    seq = addon_sequence.read_sequence(path)
    assert seq.header["version"] == 1 and seq.fps == 30.0 and seq.num_frames == 40
    assert [t.id for t in seq.tracks] == [10, 11]
    assert seq.frame_status[5] == addon_sequence.FRAME_STATUS.index("error")
    assert seq.header["frame_messages"] == {"5": "simulated decoding error"}
    assert seq.package_sha256 == MODEL["package"]["sha256"]
    assert seq.camera.focal_px == pytest.approx(np.hypot(640, 360)) and seq.camera.cx == 319.5
    np.testing.assert_array_equal(seq.tracks[1].missing_frames(), [5, 33, 34])
    assert len(seq.find_frames() or []) == 0  # the frames were never written
    for track, p in zip(seq.tracks, (0, 1), strict=True):
        frames = [k for k, _ in truth[p]]
        np.testing.assert_array_equal(track.frames, frames)
        np.testing.assert_allclose(track.times, np.array(frames) / 30.0)
        for name in ("full_pose", "expression", "cam", "cam_image_px", "bbox", "keypoints_2d"):
            np.testing.assert_array_equal(getattr(track, name), np.stack([v[name] for _, v in truth[p]]), name)
        np.testing.assert_array_equal(track.betas_raw, np.stack([v["betas"] for _, v in truth[p]]))
        # the fixed shape: robust average of the noisy per-frame betas, near the true shape
        assert np.abs(track.betas - clip.persons[p].betas).max() < 0.05
        # translation: the writer's placement recovers the clip's true camera-frame translation
        np.testing.assert_allclose(track.transl, clip.persons[p].transl[frames], atol=2e-4)
        np.testing.assert_allclose(track.pelvis_rest, clip.pelvis_rest[p][frames], atol=1e-6)
    src = seq.tracks[1].box_source
    assert (src[(seq.tracks[1].frames >= 20) & (seq.tracks[1].frames < 30)] == 1).all()
    assert np.isnan(seq.tracks[0].moderator_weights[seq.tracks[0].frames == 7]).all()


def test_placement_implementations_agree(clip):
    from pixie_backend.sequence import placement as backend_placement

    cam = backend_placement.default_camera(clip.width, clip.height)
    assert addon_placement.default_focal(clip.width, clip.height) == cam.focal_px
    rng = np.random.default_rng(1)
    cam_px = np.stack([rng.uniform(50, 300, 20), rng.uniform(0, 640, 20), rng.uniform(0, 360, 20)], -1)
    pelvis = rng.normal(scale=0.3, size=(20, 3))
    np.testing.assert_array_equal(
        backend_placement.perspective_translation(cam_px, pelvis, cam),
        addon_placement.perspective_translation(cam_px, pelvis, cam.focal_px, cam.cx, cam.cy),
    )


def test_smoothing_is_one_module_in_two_places():
    """pixie_blender/io/smoothing.py and backend/pixie_backend/sequence/smoothing.py must be
    byte-identical (the add-on and the backend may not import each other)."""
    a = (ROOT / "pixie_blender" / "io" / "smoothing.py").read_bytes()
    b = (ROOT / "backend" / "pixie_backend" / "sequence" / "smoothing.py").read_bytes()
    assert a == b, "copy pixie_blender/io/smoothing.py over backend/pixie_backend/sequence/smoothing.py"
