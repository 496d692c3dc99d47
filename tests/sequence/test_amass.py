"""AMASS-style export: the file loads without pickles, has the keys the official SMPL-X Blender
add-on reads, and round-trips through the ``smplx`` package (vertices equal) on the synthetic body."""

from __future__ import annotations

import numpy as np
import pytest
import smplx
import torch

MISSING = (12, 13, 14)  # frames where person 1 has no row


@pytest.fixture(scope="module")
def sequence(smplx_layer, clips, tmp_path_factory):
    """A two-person sequence file (person 1 missing in three frames) + its model package."""
    from pixie_backend.export.result_file import write_package
    from pixie_backend.sequence.sequence_file import ClipInfo, SequenceBuilder

    clip = clips("crossing", num_frames=24)
    out = tmp_path_factory.mktemp("amass")
    pkg = write_package(out, smplx_layer, None, None, True)
    paths = [out / f"f{k}.png" for k in range(clip.num_frames)]
    builder = SequenceBuilder(ClipInfo.for_frames(paths, fps=clip.fps, width=clip.width, height=clip.height))
    for k in range(clip.num_frames):
        persons = [p for p in (0, 1) if not (p == 1 and k in MISSING)]
        builder.add_persons(k, clip.person_arrays(k, persons), track_ids=persons)
    model = {"checkpoint_sha256": None, "smplx_sha256": None, "package": {"file": pkg.path.name, "sha256": pkg.sha256}}
    path = builder.write(out / "walk.pixie-seq.npz", model=model, synthetic=True)
    return path, clip


def _smplx_model(body_dir, n):
    model = smplx.SMPLX(
        str(body_dir / "SMPLX_NEUTRAL_2020.npz"),
        num_betas=200,
        num_expression_coeffs=50,
        use_pca=False,
        flat_hand_mean=True,
        batch_size=n,
    )
    model.vertex_joint_selector.extra_joints_idxs.zero_()  # the small body has fewer vertices
    return model


def _load(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_official_addon_keys_and_types(sequence):
    from pixie_backend.sequence.amass import export_sequence_amass

    path, clip = sequence
    files = export_sequence_amass(path, strength=0.0)
    assert [f.name for f in files] == ["walk_track0.amass.npz", "walk_track1.amass.npz"]
    a = _load(files[1])
    n = clip.num_frames
    assert a["poses"].shape == (n, 165) and a["trans"].shape == (n, 3) and a["betas"].shape == (200,)
    assert str(a["gender"]) == "neutral" and a["gender"].dtype.kind == "U"
    assert int(a["mocap_frame_rate"]) == 30 and str(a["surface_model_type"]) == "smplx"
    np.testing.assert_array_equal(a["root_orient"], a["poses"][:, :3])
    np.testing.assert_array_equal(a["pose_hand"], a["poses"][:, 75:])
    assert a["pose_body"].shape == (n, 63) and a["pose_jaw"].shape == (n, 3) and a["pose_eye"].shape == (n, 6)
    assert a["expression"].shape == (n, 50)
    assert a["present"].tolist() == [k not in MISSING for k in range(n)]
    # the add-on reads poses[frame].reshape(-1, 3) in the 55-joint order: the jaw is joint 22
    from scipy.spatial.transform import Rotation

    jaw = Rotation.from_rotvec(a["poses"][5].reshape(-1, 3)[22]).as_matrix()
    np.testing.assert_allclose(jaw, clip.persons[1].full_pose[5, 22], atol=1e-6)


def test_round_trip_through_the_smplx_package(sequence, body_dir, smplx_layer):
    """smplx with the file's parameters gives the same vertices as our layer with the sequence's
    raw parameters, placed in the world by the documented camera → world map."""
    from pixie_backend.sequence.amass import WORLD_FROM_CAMERA, export_sequence_amass
    from pixie_backend.sequence.sequence_file import read_sequence_arrays

    path, clip = sequence
    a = _load(export_sequence_amass(path, strength=0.0)[0])
    header, arrays = read_sequence_arrays(path)
    n = len(a["poses"])
    t = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    p = a["poses"]
    with torch.no_grad():
        out = _smplx_model(body_dir, n)(
            betas=t(np.broadcast_to(a["betas"], (n, 200))),
            expression=t(a["expression"]),
            global_orient=t(p[:, :3]),
            body_pose=t(p[:, 3:66]),
            jaw_pose=t(p[:, 66:69]),
            leye_pose=t(p[:, 69:72]),
            reye_pose=t(p[:, 72:75]),
            left_hand_pose=t(p[:, 75:120]),
            right_hand_pose=t(p[:, 120:]),
            transl=t(a["trans"]),
        )
        sel = arrays["row_track"] == 0
        betas = np.broadcast_to(arrays["track_betas"][0], (n, 200))
        ours = smplx_layer(t(betas), t(arrays["expression"][sel]), t(arrays["full_pose"][sel]))
        j0 = smplx_layer.rest_joints(t(betas), t(arrays["expression"][sel]))[:, 0].numpy().astype(np.float64)
    pelvis_cam = arrays["pelvis_rest"][sel].astype(np.float64) + arrays["transl"][sel]
    cam_frame = ours.vertices.numpy().astype(np.float64) + (pelvis_cam - j0)[:, None]
    expected = cam_frame @ WORLD_FROM_CAMERA.T
    np.testing.assert_allclose(out.vertices.numpy(), expected, atol=3e-5)
    # world: z up, the person stands in front of the camera (+y), feet below the camera
    v = out.vertices.numpy()
    assert (v[..., 1] > 2.0).all() and (v[..., 2].min(axis=1) < -0.8).all()


def test_missing_frames_are_interpolated(sequence):
    from pixie_backend.sequence.amass import export_sequence_amass

    path, clip = sequence
    a = _load(export_sequence_amass(path, strength=0.0)[1])
    k = MISSING[1]
    np.testing.assert_allclose(a["trans"][k], (a["trans"][k - 2] + a["trans"][k + 2]) / 2, atol=1e-6)
    # rows that were present are the raw results
    np.testing.assert_allclose(a["expression"][k - 2], clip.persons[1].expression[k - 2], atol=1e-6)


def test_smoothing_is_applied_and_recorded(sequence):
    from pixie_backend.sequence.amass import export_sequence_amass

    path, _ = sequence
    raw = _load(export_sequence_amass(path, strength=0.0)[0])
    smooth = _load(export_sequence_amass(path, strength=0.8)[0])
    assert float(smooth["smoothing_strength"]) == 0.8
    d = np.abs(smooth["poses"] - raw["poses"])
    assert d.max() > 1e-4 and d.max() < 0.2  # filtered, and the clean walk stays close to itself
