"""Checkpoint layout and strict loading."""

import argparse

import pytest
import torch
from pixie_backend import constants as C
from pixie_backend.checkpoint import CheckpointError, load_pixie_net, read_checkpoint, save_checkpoint
from pixie_backend.config import NetConfig
from pixie_backend.nets.pixie_net import PixieNet
from pixie_backend.nets.random_init import random_pixie_net

#: Entry counts per checkpoint key of the released architecture (pixie-inference.md §10.1).
OFFICIAL_ENTRIES = {
    "Encoder_body": 1969, "Encoder_head": 320, "Encoder_hand": 320,
    "Regressor_body": 4, "Regressor_head": 4, "Regressor_head_share": 6, "Regressor_hand": 4,
    "Regressor_hand_share": 6, "Extractor_head_share": 2, "Extractor_left_hand_share": 2,
    "Extractor_right_hand_share": 2, "Moderator_head_share": 7, "Moderator_hand_share": 7,
}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    net = random_pixie_net(NetConfig.tiny(), seed=3)
    path = tmp_path_factory.mktemp("ckpt") / "pixie_model.tar"
    save_checkpoint(net, path)
    return net, path


def test_official_architecture_key_layout():
    with torch.device("meta"):
        net = PixieNet()
    state = net.checkpoint_state()
    assert tuple(state) == C.CHECKPOINT_KEYS
    assert {k: len(v) for k, v in state.items()} == OFFICIAL_ENTRIES
    params = {k: sum(p.numel() for p in net.submodule(k).parameters()) for k in C.CHECKPOINT_KEYS}
    assert abs(params["Encoder_body"] / 1e6 - 109.67) < 0.01
    assert abs(sum(params.values()) / 1e6 - 192.93) < 0.01
    body = state["Encoder_body"]
    assert "encoder.conv_layers.4.downsample.weight" in body  # bare conv, no BN
    assert "encoder.conv_layers.0.downsample.0.weight" not in body
    assert "encoder.layer1.0.downsample.1.running_var" in body
    assert "encoder.subsample_4.6.bias" in body  # subsample convs have a bias
    assert "encoder.transition2.2.0.0.weight" in body and "encoder.transition2.0.0.weight" not in body
    assert "encoder.fc.weight" not in state["Encoder_head"]
    assert set(state["Moderator_hand_share"]) == {"temperature", *(f"layers.{i}.{p}" for i in (0, 2, 4)
                                                                   for p in ("weight", "bias"))}


def test_generated_checkpoint_loads_strictly_with_identical_outputs(tiny_ckpt):
    net, path = tiny_ckpt
    loaded = load_pixie_net(path, NetConfig.tiny())
    for key in C.CHECKPOINT_KEYS:
        a, b = net.submodule(key).state_dict(), loaded.submodule(key).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(net.eval().Encoder_body(x), loaded.Encoder_body(x))
    raw = torch.load(path, weights_only=True)
    assert isinstance(raw, dict) and tuple(raw) == C.CHECKPOINT_KEYS  # the official layout


def test_random_weights_are_deterministic():
    a = random_pixie_net(NetConfig.tiny(), seed=5).checkpoint_state()
    b = random_pixie_net(NetConfig.tiny(), seed=5).checkpoint_state()
    c = random_pixie_net(NetConfig.tiny(), seed=6).checkpoint_state()
    assert all(torch.equal(a[k][n], b[k][n]) for k in a for n in a[k])
    assert not torch.equal(a["Regressor_body"]["layers.2.weight"], c["Regressor_body"]["layers.2.weight"])


def _mutated(tiny_ckpt, tmp_path, fn, name="bad.tar"):
    state = torch.load(tiny_ckpt[1], weights_only=True)
    fn(state)
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_missing_and_unexpected_keys_are_named(tiny_ckpt, tmp_path):
    def edit(s):
        del s["Regressor_head"]["layers.2.bias"]
        s["Encoder_hand"]["encoder.fc.weight"] = torch.zeros(1)
    path = _mutated(tiny_ckpt, tmp_path, edit)
    with pytest.raises(CheckpointError) as e:
        load_pixie_net(path, NetConfig.tiny())
    msg = str(e.value)
    assert "Regressor_head: missing layers.2.bias" in msg
    assert "Encoder_hand: unexpected encoder.fc.weight" in msg


def test_missing_module_and_shape_mismatch(tiny_ckpt, tmp_path):
    path = _mutated(tiny_ckpt, tmp_path, lambda s: s.pop("Moderator_hand_share"))
    with pytest.raises(CheckpointError, match="lacks the module.*Moderator_hand_share"):
        load_pixie_net(path, NetConfig.tiny())
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_pixie_net(tiny_ckpt[1], NetConfig())  # a tiny checkpoint is not the official architecture


def test_num_batches_tracked_may_be_absent(tiny_ckpt, tmp_path):
    def edit(s):
        for key in s:
            for k in [k for k in s[key] if k.endswith("num_batches_tracked")]:
                del s[key][k]
    load_pixie_net(_mutated(tiny_ckpt, tmp_path, edit), NetConfig.tiny())


def test_extra_top_level_entries_are_ignored(tiny_ckpt, tmp_path):
    load_pixie_net(_mutated(tiny_ckpt, tmp_path, lambda s: s.update(epoch=12, opt={"lr": 1e-4})), NetConfig.tiny())


def test_corrupt_partial_and_empty_files(tiny_ckpt, tmp_path):
    data = tiny_ckpt[1].read_bytes()
    partial = tmp_path / "partial.tar"
    partial.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="partial download|corrupt"):
        read_checkpoint(partial)
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"<html>login required</html>")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.tar")
    lst = tmp_path / "list.tar"
    torch.save([1, 2], lst)
    with pytest.raises(CheckpointError, match="expected a dict"):
        read_checkpoint(lst)


def test_pickled_objects_need_explicit_trust(tiny_ckpt, tmp_path):
    path = _mutated(tiny_ckpt, tmp_path, lambda s: s.update(extra=argparse.Namespace(a=1)))
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        read_checkpoint(path)
    assert "extra" in read_checkpoint(path, trust_pickle=True)
