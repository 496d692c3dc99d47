"""Data-folder resolution and the errors a user sees for missing files."""

import pytest
from pixie_backend import assets
from pixie_backend.assets import ENV_DATA_DIR, DataFolder, MissingAssetError


def test_resolution_order(tmp_path, monkeypatch):
    env_dir, user_dir, explicit = tmp_path / "env", tmp_path / "user", tmp_path / "explicit"
    monkeypatch.setattr(assets, "user_data_dir", lambda: user_dir)
    monkeypatch.delenv(ENV_DATA_DIR, raising=False)
    assert DataFolder().root == user_dir  # nothing exists: the per-user folder
    env_dir.mkdir()
    monkeypatch.setenv(ENV_DATA_DIR, str(env_dir))
    assert DataFolder().root == env_dir  # the environment variable beats the user folder
    assert DataFolder(explicit).root == explicit  # an explicit path beats both, even if absent
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "missing"))
    user_dir.mkdir()
    assert DataFolder().root == user_dir  # an env var naming no folder falls through


def test_missing_required_file_names_file_places_and_source(tmp_path, monkeypatch):
    monkeypatch.setattr(assets, "user_data_dir", lambda: tmp_path / "user")
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "env"))
    with pytest.raises(MissingAssetError) as e:
        DataFolder().require("pixie_model")
    msg = str(e.value)
    assert "pixie_model.tar" in msg
    assert str(tmp_path / "env" / "pixie_model.tar") in msg and str(tmp_path / "user" / "pixie_model.tar") in msg
    assert "https://pixie.is.tue.mpg.de" in msg and "fetch-data" in msg
    with pytest.raises(MissingAssetError, match="BFM_to_FLAME"):
        DataFolder(tmp_path).require("flame_albedo")  # not downloadable: instructions instead


def test_doctor_report(tmp_path, capsys):
    import numpy as np
    from pixie_backend.cli import main

    np.savez(tmp_path / "SMPLX_NEUTRAL_2020.npz", v_template=np.zeros((4, 3)))  # a well-formed archive
    assert main(["doctor", "--data-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[present] SMPLX_NEUTRAL_2020.npz" in out
    assert "[MISSING] pixie_model.tar" in out and "NOT READY" in out
    assert "FLAME_albedo_from_BFM.npz" in out and "no face albedo" in out  # what a missing optional turns off
    assert "https://smpl-x.is.tue.mpg.de" in out  # licence / registration pages
