"""Images in, people out: detection on real photos, multi-person batching, per-image errors."""

import numpy as np
import pytest
from pixie_backend.preprocess.detector import MediaPipeDetector, OpenCVFaceDetector, make_detector
from pixie_backend.preprocess.image_io import from_array


def _mediapipe_or_skip():
    try:
        return MediaPipeDetector()
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"mediapipe unavailable: {e}")


def test_mediapipe_finds_the_astronaut_and_two_people(astronaut, two_people):
    det = _mediapipe_or_skip()
    try:
        one = det.detect(from_array(astronaut))
        two = det.detect(from_array(two_people))
        blank = det.detect(from_array(np.full((256, 256, 3), 127, np.uint8)))
    finally:
        det.close()
    assert len(one) == 1
    x1, y1, x2, y2 = one[0].box
    # the astronaut's head (face ~ x 175-280, y 70-170 in the 512x512 photo) lies inside her box
    assert x1 < 175 and x2 > 280 and y1 < 70 and y2 > 300
    assert len(two) == 2 and two[0].box[2] < 560 and two[1].box[0] > 460  # left, then right
    assert blank == []


def test_opencv_fallback_and_none(astronaut):
    det = OpenCVFaceDetector()
    found = det.detect(from_array(astronaut))
    assert len(found) >= 1
    whole = make_detector("none").detect(from_array(astronaut))
    assert whole[0].box == (0.0, 0.0, 511.0, 511.0)
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("yolo")


def test_predict_every_person_in_order_with_errors(small_pixie, astronaut, two_people, tmp_path):
    from pixie_backend.pipeline import Pixie

    det = _mediapipe_or_skip()
    pixie = Pixie.from_model(small_pixie.model, detector=det)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    blank = np.full((200, 200, 3), 90, np.uint8)
    results = pixie.predict([astronaut, bad, two_people, blank, astronaut[:, ::-1]], batch_size=2)
    assert [r.index for r in results] == [0, 1, 2, 3, 4]
    assert [r.status for r in results] == ["ok", "error", "ok", "error", "ok"]
    assert "corrupt" in results[1].message or "not an image" in results[1].message
    assert "no person" in results[3].message
    assert [len(r.persons) for r in results if r.ok] == [1, 2, 1]
    two = results[2].output
    assert two.vertices.shape[0] == 2 and np.isfinite(two.vertices.numpy()).all()
    pixie.close()


def test_same_box_same_body_regardless_of_batch_neighbours(small_pixie, astronaut, two_people):
    box = [200, 100, 400, 300]  # its 1.1x square stays inside the left photo
    res = small_pixie.predict([astronaut, two_people], boxes=[[box], [box, [600, 20, 900, 511]]], batch_size=3)
    np.testing.assert_allclose(res[1].output.vertices[0].numpy(), res[0].output.vertices[0].numpy(), atol=1e-4)


def test_given_boxes_and_crop_entry(small_pixie, astronaut):
    import torch

    res = small_pixie.predict([astronaut], boxes=[[[150, 20, 450, 511], [0, 0, 100, 100]]])
    assert res[0].ok and len(res[0].persons) == 2
    p = res[0].persons[0]
    assert p.side == int(1.1 * 491) and np.allclose(p.center, [300, 265.5])
    # the crops entry on the same crops gives the same numbers
    prep = small_pixie.prepare(astronaut, boxes=[[150, 20, 450, 511]])
    out = small_pixie.predict_crops(prep.image, prep.image_hd)
    torch.testing.assert_close(out.vertices[0], res[0].output.vertices[0], atol=1e-4, rtol=0)
    bad = small_pixie.predict([astronaut], boxes=[[[10, 10, 5, 50]]])
    assert not bad[0].ok and "invalid box" in bad[0].message
