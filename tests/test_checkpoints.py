import os

import pytest
import torch
import torch.nn.functional as F
from weight_layouts import authors_mdl, insightface_backbone

from focusface.checkpoints import CheckpointError, init_from_backbone, load_checkpoint, save_checkpoint
from focusface.model import FocusFace


def _bn_eval(x, sd, prefix):
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def _expected_outputs_from_file(sd, feature_map):
    """The authors' head computed from the file's tensors with functional ops."""
    identity = _bn_eval(F.conv2d(feature_map, sd["model.fc.conv1.weight"]), sd, "model.fc.bn1").flatten(1)
    mask = F.relu6(_bn_eval(F.conv2d(feature_map, sd["model.fc.conv2.weight"]), sd, "model.fc.bn2")).flatten(1)
    logits = mask @ sd["fc2.weight"].T + sd["fc2.bias"]
    return identity, logits


def test_authors_r100_layout_has_938_entries_and_loads(tmp_path):
    sd = authors_mdl(num_classes=1000)
    # the authors' model has every entry of ours plus model.features.* (5 BatchNorm1d entries it never uses)
    ours = FocusFace("r100", num_classes=1000).state_dict()
    assert len(sd) == len(ours) + 5 == 938
    torch.save(sd, tmp_path / "focus_face.mdl")
    model = load_checkpoint(tmp_path / "focus_face.mdl")
    assert model.config["backbone"] == "r100" and model.config["num_classes"] == 1000
    assert not model.training
    torch.testing.assert_close(model.identity_classifier.weight, sd["fc.weight"])
    torch.testing.assert_close(model.backbone.layer3[29].conv2.weight, sd["model.layer3.29.conv2.weight"])


@pytest.mark.parametrize("module_prefix", [False, True])
def test_authors_outputs_follow_from_the_file(tmp_path, module_prefix):
    torch.manual_seed(5)
    sd = authors_mdl(layers=(2, 2, 2, 2), num_classes=None)
    # model.bn2 with zero scale makes the trunk's output the bn2 bias: a known feature map
    sd["model.bn2.weight"] = torch.zeros(512)
    sd["model.bn2.bias"] = torch.randn(512)
    path = tmp_path / "focus_face_w_pretrained.mdl"
    torch.save({f"module.{k}": v for k, v in sd.items()} if module_prefix else sd, path)
    model = load_checkpoint(path)
    assert model.identity_classifier is None  # fc.weight absent from this file: optional
    images = torch.rand(3, 3, 112, 112) * 2 - 1
    feature_map = sd["model.bn2.bias"].view(1, 512, 1, 1).expand(3, 512, 7, 7)
    identity, logits = _expected_outputs_from_file(sd, feature_map)
    out = model(images)
    torch.testing.assert_close(out.identity_embedding, identity, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out.mask_logits, logits, rtol=1e-4, atol=1e-4)
    emb, p_masked = model.embed(images, flip=False)  # one pass: what the file computes
    torch.testing.assert_close(emb, F.normalize(identity, dim=1), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(p_masked, logits.softmax(1)[:, 1], rtol=1e-4, atol=1e-5)
    # the mask head reads fc2: swapping its rows swaps P(masked) and P(unmasked)
    sd["fc2.weight"], sd["fc2.bias"] = sd["fc2.weight"].flip(0), sd["fc2.bias"].flip(0)
    torch.save(sd, path)
    torch.testing.assert_close(load_checkpoint(path).embed(images, flip=False)[1], 1 - p_masked, rtol=1e-4, atol=1e-5)


def test_authors_trunk_weights_matter(tmp_path):
    """With real BN scales the trunk's weights (model.layer*) change the embedding."""
    sd = authors_mdl(layers=(2, 2, 2, 2), num_classes=None)
    torch.save(sd, tmp_path / "a.mdl")
    sd["model.layer1.0.conv1.weight"] = sd["model.layer1.0.conv1.weight"] * 3
    torch.save(sd, tmp_path / "b.mdl")
    images = torch.rand(2, 3, 112, 112) * 2 - 1
    a, b = load_checkpoint(tmp_path / "a.mdl").embed(images)[0], load_checkpoint(tmp_path / "b.mdl").embed(images)[0]
    assert not torch.allclose(a, b, atol=1e-4)


def test_classifier_is_optional_on_load(tmp_path):
    sd = authors_mdl(layers=(2, 2, 2, 2), num_classes=50)
    torch.save(sd, tmp_path / "m.mdl")
    assert load_checkpoint(tmp_path / "m.mdl", with_classifier=False).identity_classifier is None


def test_mismatched_authors_file_lists_keys(tmp_path):
    sd = authors_mdl(layers=(2, 2, 2, 2), num_classes=None)
    del sd["model.layer2.1.bn3.running_var"]
    sd["model.fc.extra.weight"] = torch.zeros(1)
    sd["fc2.weight"] = torch.zeros(2, 16)
    torch.save(sd, tmp_path / "broken.mdl")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "broken.mdl")
    msg = str(err.value)
    assert "broken.mdl" in msg and "layout: authors" in msg
    assert "missing keys: 1 (model.layer2.1.bn3.running_var)" in msg
    assert "unexpected keys" in msg and "model.fc.extra.weight" in msg
    assert "fc2.weight (2, 16) vs (2, 32)" in msg


def test_unknown_trunk_depth_is_named(tmp_path):
    torch.save(authors_mdl(layers=(1, 2, 1, 1), num_classes=None), tmp_path / "odd.mdl")
    with pytest.raises(CheckpointError, match=r"stage depths \(1, 2, 1, 1\)"):
        load_checkpoint(tmp_path / "odd.mdl")


def test_our_checkpoint_round_trip(tmp_path):
    model = FocusFace("tiny", num_classes=9, margin="cosface", margin_m=0.4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = save_checkpoint(model, tmp_path / "sub" / "ckpt.pt", extra={"step": 12, "note": "demo"})
    assert not list(path.parent.glob("*.tmp")), "no temporary file may be left behind"
    again = load_checkpoint(path)
    assert again.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.load(path, weights_only=True)["extra"] == {"step": 12, "note": "demo"}


def test_interrupted_save_leaves_no_file(tmp_path, monkeypatch):
    model = FocusFace("tiny")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, tmp_path / "ckpt.pt")
    assert list(tmp_path.iterdir()) == []


def _insightface_embedding(sd, feature_map):
    """insightface's embedding layer computed from the file's tensors: features(fc(flatten(map)))."""
    z = feature_map.flatten(1) @ sd["fc.weight"].T + sd["fc.bias"]
    return F.batch_norm(
        z,
        sd["features.running_mean"],
        sd["features.running_var"],
        sd["features.weight"],
        sd["features.bias"],
        training=False,
        eps=1e-5,
    )


def test_insightface_backbone_transfers_exactly(tmp_path):
    """On top starts from the pretrained embedding: trunk, fc and features all arrive, to float precision."""
    torch.manual_seed(7)
    sd = insightface_backbone(layers=(2, 2, 2, 2))
    sd["bn2.weight"] = torch.zeros(512)  # the trunk's output is then bn2's bias: a known feature map
    sd["bn2.bias"] = torch.randn(512)
    torch.save(sd, tmp_path / "backbone.pth")
    images = torch.rand(3, 3, 112, 112) * 2 - 1
    expected = _insightface_embedding(sd, sd["bn2.bias"].view(1, 512, 1, 1).expand(3, 512, 7, 7))
    model = FocusFace("r18", num_classes=10)
    mask_before = model.head.mask_conv.weight.clone()
    kept = init_from_backbone(model, tmp_path / "backbone.pth")
    assert set(kept) == {
        k for k in model.state_dict() if k.startswith(("head.mask_", "mask_classifier.", "identity_classifier."))
    }
    assert torch.equal(model.head.mask_conv.weight, mask_before)
    for key in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.downsample.1.running_var"):
        torch.testing.assert_close(model.backbone.state_dict()[key], sd[key])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images).identity_embedding, expected, rtol=1e-5, atol=1e-5)
    # evaluated on its own: the same embedding, RGB, and no mask head (P(masked) unknown)
    baseline = load_checkpoint(tmp_path / "backbone.pth")
    assert (baseline.channel_order, baseline.has_mask_head, baseline.identity_classifier) == ("rgb", False, None)
    embedding, p_masked = baseline.embed(images, flip=False)
    torch.testing.assert_close(embedding, F.normalize(expected, dim=1), rtol=1e-5, atol=1e-6)
    assert torch.isnan(p_masked).all()
    with pytest.raises(CheckpointError, match=r"'r18' trunk .* backbone='r50'"):
        init_from_backbone(FocusFace("r50"), tmp_path / "backbone.pth")
    del sd["features.running_var"]
    torch.save(sd, tmp_path / "incomplete.pth")
    with pytest.raises(CheckpointError, match="features.running_var"):
        load_checkpoint(tmp_path / "incomplete.pth")


def test_wrong_files_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "absent.mdl")
    (tmp_path / "text.mdl").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="text.mdl: not a readable PyTorch weight file"):
        load_checkpoint(tmp_path / "text.mdl")
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unrecognised layout"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save(authors_mdl(layers=(2, 2, 2, 2), num_classes=None), tmp_path / "authors.mdl")
    with pytest.raises(CheckpointError, match="expected an insightface-style backbone.pth, found the authors layout"):
        init_from_backbone(FocusFace("r18"), tmp_path / "authors.mdl")


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    sd = authors_mdl(layers=(2, 2, 2, 2), num_classes=None)
    sd["fc2.bias"] = _RunsCode(marker)
    torch.save(sd, tmp_path / "evil.mdl")
    with pytest.raises(CheckpointError, match="refused to load: the file asks the unpickler for [a-z]+.system"):
        load_checkpoint(tmp_path / "evil.mdl")
    assert not marker.exists(), "the pickled callable ran"
    with pytest.raises(CheckpointError, match="refused to load"):
        init_from_backbone(FocusFace("r18"), tmp_path / "evil.mdl")


def test_a_whole_pickled_module_is_refused(tmp_path):
    torch.save(FocusFace("tiny"), tmp_path / "module.pt")  # the unsafe habit of saving the object, not its weights
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(tmp_path / "module.pt")
