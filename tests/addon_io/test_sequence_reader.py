"""The add-on's sequence-file reader (``pixie_blender.io.sequence``) on synthetic files written by
tests/support/fake_sequence.py, and every bad-file case a user can cause."""

from __future__ import annotations

import numpy as np
import pytest

from pixie_blender.io import sequence as S
from pixie_blender.io.schema import PixieFormatError
from tests.support.fake_sequence import make_sequence, rewrite_sequence


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    return make_sequence(tmp_path_factory.mktemp("seq"), num_tracks=2, num_frames=20, missing={1: range(5, 9)})


def test_reads_tracks_rows_and_clip(seq):
    data = S.read_sequence(seq.path)
    assert data.num_frames == 20 and data.fps == 30.0
    assert [t.id for t in data.tracks] == [2, 5]
    t0, t1 = data.tracks
    assert t0.num_rows == 20 and t1.num_rows == 16
    np.testing.assert_array_equal(t1.missing_frames(), [5, 6, 7, 8])
    assert len(t0.missing_frames()) == 0
    np.testing.assert_allclose(t1.times, t1.frames / 30.0)
    for name in ("full_pose", "expression", "transl", "cam_image_px", "keypoints_2d", "pelvis_rest"):
        np.testing.assert_allclose(getattr(t1, name), seq.rows[1][name].astype(np.float32), err_msg=name)
    np.testing.assert_allclose(t1.betas_raw, seq.rows[1]["betas"].astype(np.float32))
    np.testing.assert_allclose(t1.betas, seq.rows[1]["track_betas"].astype(np.float32))
    np.testing.assert_allclose(t0.pelvis_camera(), seq.rows[0]["pelvis_rest"] + seq.rows[0]["transl"], atol=1e-5)
    assert data.camera.focal_px == pytest.approx(np.hypot(320, 240))
    assert data.frame_status.tolist() == [0] * 20  # track 0 is in every frame
    assert data.source_name == "clip" and data.synthetic
    assert [p.name for p in data.find_frames()] == [f"frame_{i:05d}.png" for i in range(1, 21)]
    assert data.find_video() is None
    assert S.find_sequence_package(data).content_sha256 == data.package_sha256


def test_frames_found_next_to_the_file_after_a_move(seq, tmp_path):
    import shutil

    dst = tmp_path / "moved"
    shutil.copytree(seq.path.parent, dst)
    moved = rewrite_sequence(
        seq.path,
        dst / seq.path.name,
        replace={"frame_paths": np.array([f"/nowhere/{p.name}" for p in seq.frame_paths])},
    )
    frames = S.read_sequence(moved).find_frames()
    assert frames is not None and frames[0].parent == (dst / "clip").resolve()


def _bad(seq, tmp_path, **kw):
    return rewrite_sequence(seq.path, tmp_path / "bad.pixie-seq.npz", **kw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(header_update={"version": 2}), "version 2"),
        (dict(header_update={"format": "pixie-result"}), "use Import PIXIE Result"),
        (dict(header_update={"fps": 0}), "fps"),
        (dict(header_update={"camera": {"focal_px": -1}}), "camera"),
        (dict(header_update={"num_rows": 3}), "counts"),
        (dict(header_update={"model": {}}), "model package"),
        (dict(drop=("transl",)), "'transl' is missing"),
        (dict(replace={"row_frame": np.zeros(36, np.int32)}), "sorted"),
        (dict(replace={"row_track": np.full(36, 7, np.int32)}), "out of range"),
        (dict(replace={"track_id": np.array([4, 4], np.int32)}), "distinct"),
        (dict(replace={"box_source": np.full(36, 9, np.int8)}), "box_source"),
        (dict(replace={"frame_status": np.full(20, 1, np.int8)}), "status 'ok'"),
        (dict(replace={"timestamps": np.zeros(20)}), "increase"),
        (dict(replace={"full_pose": np.ones((36, 55, 3, 3), np.float32)}), "rotation matrices"),
        (dict(replace={"cam_image_px": -np.ones((36, 3), np.float32)}), "scale must be positive"),
        (dict(replace={"frame_paths": np.array(["a"])}), "frame_paths"),
        (dict(replace={"expression": np.full((36, 50), np.nan, np.float32)}), "NaN"),
        (dict(replace={"betas": np.zeros((36, 10), np.float32)}), "track_betas"),
    ],
)
def test_bad_files_give_clear_errors(seq, tmp_path, change, message):
    path = _bad(seq, tmp_path, **change)
    with pytest.raises(PixieFormatError, match=message):
        S.read_sequence(path)


def test_no_tracks_and_not_an_archive(seq, tmp_path):
    empty = {k: v[:0] for k, v in seq.arrays.items() if k not in ("frame_index", "timestamps", "frame_paths")}
    empty["frame_status"] = np.ones(20, np.int8)
    path = _bad(seq, tmp_path, replace=empty, header_update={"num_rows": 0, "num_tracks": 0})
    with pytest.raises(PixieFormatError, match="no person was tracked in clip"):
        S.read_sequence(path)
    junk = tmp_path / "junk.pixie-seq.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(PixieFormatError, match="not an .npz"):
        S.read_sequence(junk)


def test_missing_moderator_weights_are_nan_not_an_error(seq, tmp_path):
    mw = seq.arrays["moderator_weights"].copy()
    mw[3] = np.nan
    data = S.read_sequence(_bad(seq, tmp_path, replace={"moderator_weights": mw}))
    assert np.isnan(data.tracks[0].moderator_weights[3]).all()


def test_a_sequence_given_to_the_still_image_reader_says_what_it_is(seq):
    from pixie_blender.io.schema import read_result

    with pytest.raises(PixieFormatError, match="use Import Image Sequence"):
        read_result(seq.path)
