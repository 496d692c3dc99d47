"""The synthetic clip generator: ground truth consistent with the camera, what a face-driven
detector sees, and frames and video files the sequence job can read."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def test_keypoints_boxes_and_weak_camera_agree(clips, smplx_layer):
    clip = clips("walk", num_frames=12)
    p = clip.persons[0]
    with torch.no_grad():
        out = smplx_layer(
            torch.tensor(np.broadcast_to(p.betas, (12, 200)), dtype=torch.float32),
            torch.tensor(p.expression, dtype=torch.float32),
            torch.tensor(p.full_pose, dtype=torch.float32),
        )
    kp3 = out.keypoints.numpy().astype(np.float64) + p.transl[:, None]
    f, c = clip.camera.focal_px, np.array([clip.camera.cx, clip.camera.cy])
    np.testing.assert_allclose(clip.keypoints_2d[0], f * kp3[..., :2] / kp3[..., 2:] + c, atol=1e-6)
    for k in (0, 11):
        a, bx, by = clip.cam_image_px(k, 0)
        # weak and full perspective agree at the pelvis
        np.testing.assert_allclose(a * out.joints[k, 0, :2].numpy() + [bx, by], clip.keypoints_2d[0][k, 0], atol=1e-6)
        box = clip.boxes[0][k]
        assert (clip.keypoints_2d[0][k, :55] >= box[:2] - 1).all() and (
            clip.keypoints_2d[0][k, :55] <= box[2:] + 1
        ).all()
    # walking: the pelvis moves right, the feet stay near the ground (camera 1 m up, y down)
    pelvis = p.transl + clip.pelvis_rest[0]
    assert pelvis[-1, 0] - pelvis[0, 0] > 0.3
    feet = out.vertices[..., 1].max(dim=1).values.numpy() + p.transl[:, 1]
    assert np.abs(feet - 1.0).max() < 0.1


def test_detector_simulation(clips):
    turn = clips("turn_away")
    seen = np.array([[turn.detected(k, p) for k in range(turn.num_frames)] for p in (0, 1)])
    assert seen[0].all() and not seen[1, 20:30].any() and seen[1, :20].all() and seen[1, 30:].all()
    cross = clips("crossing")
    assert cross.occluded[1].any() and not cross.occluded[0].any()  # the far one passes behind
    dets = cross.detections(0, jitter_px=2.0)
    assert [p for p, _ in dets] == [0, 1]
    np.testing.assert_allclose(dets[0][1], cross.boxes[0][0], atol=10)


def test_frames_and_video_files(clips, tmp_path):
    cv2 = pytest.importorskip("cv2")
    clip = clips("walk", num_frames=12)
    paths = clip.render_frames(tmp_path / "frames")
    assert [p.name for p in paths[:2]] == ["frame_00001.png", "frame_00002.png"] and len(paths) == 12
    img = cv2.imread(str(paths[5]))[..., ::-1]
    assert img.shape == (360, 640, 3)
    x1, y1, x2, y2 = np.round(clip.boxes[0][5]).astype(int)
    inside = img[max(y1, 0) : y2, max(x1, 0) : x2]
    np.testing.assert_array_equal(img, clip.render(5))  # PNG is lossless
    body = (np.abs(inside.astype(int) - img[0:1, 0:1].astype(int)).sum(-1) > 60).mean()
    assert body > 0.15  # the body fills a good part of its box
    video = clip.write_video(tmp_path / "walk.avi")
    cap = cv2.VideoCapture(str(video))
    try:
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
        ok, first = cap.read()
        assert ok and first.shape == (360, 640, 3)
        assert np.abs(first.astype(int) - clip.render(0)[..., ::-1].astype(int)).mean() < 8  # MJPG is lossy
    finally:
        cap.release()


def test_unknown_scenario():
    from pixie_backend.sequence.synthetic_clip import make_clip

    with pytest.raises(ValueError, match="scenario"):
        make_clip(None, "dance")
