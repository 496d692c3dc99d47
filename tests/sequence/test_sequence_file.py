"""SequenceBuilder: what it refuses (clear errors) and what it records."""

from __future__ import annotations

import numpy as np
import pytest
from pixie_backend.sequence.sequence_file import ClipInfo, SequenceBuilder, read_sequence_arrays

MODEL = {"package": {"file": "p.npz", "sha256": "0" * 64}}


@pytest.fixture
def builder(clips):
    clip = clips("walk", num_frames=12)
    b = SequenceBuilder(ClipInfo.for_video("/videos/walk.mp4", 30.0, 640, 360, range(12), np.arange(12) / 30.0))
    return b, clip


def test_refuses_bad_input(builder):
    b, clip = builder
    arrays = clip.person_arrays(0, [0])
    with pytest.raises(ValueError, match="outside the clip"):
        b.add_persons(12, arrays, [0])
    with pytest.raises(ValueError, match="distinct"):
        b.add_persons(0, clip.person_arrays(0, [0, 0]), [1, 1])
    with pytest.raises(ValueError, match="box_sources"):
        b.add_persons(0, arrays, [0], ["guess"])
    with pytest.raises(ValueError, match="joints_rest"):
        b.add_persons(0, {k: v for k, v in arrays.items() if k != "joints_rest"}, [0])
    with pytest.raises(ValueError, match="'expression' has shape"):
        b.add_persons(0, {**arrays, "expression": np.zeros((1, 10))}, [0])
    with pytest.raises(ValueError, match="status"):
        b.set_frame_status(0, "fine")
    with pytest.raises(ValueError, match="increasing"):
        ClipInfo("frames", "x", 10, 10, 30.0, np.array([0, 0]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="kind"):
        ClipInfo("gif", "x", 10, 10, 30.0, np.array([0]), np.array([0.0]))


def test_records_video_source_status_and_short_tracks(builder, tmp_path):
    b, clip = builder
    for k in range(12):
        if k in (3, 4):
            b.set_frame_status(k, "no_person")
            continue
        ids = [0] if k != 6 else [0, 9]  # id 9: a one-frame track
        b.add_persons(k, clip.person_arrays(k, [0] * len(ids)) if k != 6 else clip.person_arrays(k, [0, 0]), ids)
    path = b.write(tmp_path / "walk.pixie-seq.npz", MODEL, synthetic=True, min_track_rows=2)
    header, arrays = read_sequence_arrays(path)
    assert header["source"] == {
        "kind": "video",
        "path": header["source"]["path"],
        "name": "walk",
        "width": 640,
        "height": 360,
        "sha256": None,
    }
    assert header["num_tracks"] == 1 and arrays["track_id"].tolist() == [0]  # the one-frame track is left out
    assert arrays["frame_status"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert "frame_paths" not in arrays
    assert header["camera"]["focal_source"] == "diagonal"
