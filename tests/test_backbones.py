import pytest
import torch

from focusface.backbones import IResNet, backbone_spec, create_backbone, list_backbones
from focusface.errors import FocusFaceError
from focusface.model import FocusFace

ALL = list_backbones()
DEEP = ("r100", "r200")  # seconds each on a CPU: the full suite runs them, `scripts/test quick` does not
EVERY = [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n for n in ALL]


def test_registry_has_the_paper_depths():
    depth = {
        "r18": (2, 2, 2, 2),
        "r34": (3, 4, 6, 3),
        "r50": (3, 4, 14, 3),
        "r100": (3, 13, 30, 3),
        "r200": (6, 26, 60, 6),
    }
    for name, layers in depth.items():
        net = create_backbone(name)
        assert tuple(len(getattr(net, f"layer{i}")) for i in range(1, 5)) == layers
        assert net.widths == (64, 128, 256, 512)


@pytest.mark.parametrize("name", EVERY)
def test_backbone_forward_shapes_and_finite(name):
    """insightface's initialisation is finite where it is used, in training (BatchNorm normalises every layer);
    `damped` is finite untrained in eval mode too, where every BatchNorm is the identity."""
    images = torch.rand(2, 3, 112, 112) * 2 - 1
    for init, mode in (("insightface", "train"), ("damped", "eval")):
        torch.manual_seed(0)
        net = getattr(create_backbone(name, init=init), mode)()
        with torch.no_grad():
            fmap, emb = net.forward_features(images), net(images)
        assert fmap.shape == (2, net.feature_channels, 7, 7)
        assert emb.shape == (2, 512)
        assert torch.isfinite(emb).all(), (init, mode)


def test_the_reference_initialisation_is_not_finite_untrained_in_eval_mode():
    """Why `damped` exists: an untrained r100 with N(0, 0.1) convolutions overflows when BatchNorm is the identity."""
    torch.manual_seed(0)
    with torch.no_grad():
        emb = create_backbone("r100", init="insightface").eval()(torch.rand(1, 3, 112, 112) * 2 - 1)
    assert not torch.isfinite(emb).all()


SMALL = [n for n in ALL if n in ("tiny", "r18", "r34")]  # forward+backward of the deep ones is slow on a CPU


@pytest.mark.parametrize("name", SMALL)
def test_focusface_every_trainable_parameter_gets_a_gradient(name):
    model = FocusFace(name, num_classes=5).train()
    images = torch.rand(2, 3, 112, 112) * 2 - 1
    out = model(images)
    logits = model.identity_classifier(out.identity_embedding, torch.tensor([0, 3]))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])) + out.mask_logits.sum()
    loss.backward()
    assert all(torch.isfinite(t).all() for t in out)
    no_grad = [
        n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", EVERY)
def test_eval_mode_is_deterministic(name):
    model = FocusFace(name, trunk_init="damped").eval()
    images = torch.rand(3, 3, 112, 112) * 2 - 1
    first, second = model.embed(images), model.embed(images)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    # and a sample's output does not depend on the rest of the batch (no batch statistics in eval mode)
    alone = model.embed(images[:1])[0]
    torch.testing.assert_close(alone, first[0][:1], rtol=1e-4, atol=1e-5)


def insightface_parameter_count(layers, widths=(64, 128, 256, 512), embedding=512):
    """Parameters of insightface arcface_torch's IResNet(IBasicBlock, layers), counted layer by layer from its
    definition (recognition/arcface_torch/backbones/iresnet.py): conv1 3x3 without bias, bn1, prelu; per block bn1,
    conv1 3x3, bn2, prelu, conv2 3x3, bn3, and in the first block of a stage a 1x1 downsample conv + BN; then bn2,
    fc = Linear(C*7*7, embedding) with bias, features = BatchNorm1d(embedding) (its frozen weight still counts)."""

    def conv3(cin, cout):
        return cin * cout * 9

    def bn(c):
        return 2 * c

    n = conv3(3, widths[0]) + bn(widths[0]) + widths[0]
    inplanes = widths[0]
    for planes, blocks in zip(widths, layers):
        for b in range(blocks):
            n += bn(inplanes) + conv3(inplanes, planes) + bn(planes) + planes + conv3(planes, planes) + bn(planes)
            if b == 0:
                n += inplanes * planes + bn(planes)
            inplanes = planes
    return n + bn(inplanes) + inplanes * 49 * embedding + embedding + bn(embedding)


@pytest.mark.parametrize("name", ALL)
def test_parameter_count_equals_insightface(name):
    spec = backbone_spec(name)
    net = create_backbone(name)
    assert sum(p.numel() for p in net.parameters()) == insightface_parameter_count(spec["layers"], spec["widths"])


def test_published_parameter_counts():
    """Sanity of the independent count itself: r50 and r100 are the 43.6 M and 65.2 M parameters usually quoted."""
    assert round(insightface_parameter_count((3, 4, 14, 3)) / 1e6, 1) == 43.6
    assert round(insightface_parameter_count((3, 13, 30, 3)) / 1e6, 1) == 65.2


def test_bad_input_shapes_are_named():
    net = create_backbone("tiny")
    with pytest.raises(ValueError, match="channels-last"):
        net(torch.zeros(1, 112, 112, 3))
    with pytest.raises(ValueError, match=r"\(N, 3, 112, 112\)"):
        net(torch.zeros(1, 3, 128, 128))
    with pytest.raises(FocusFaceError, match="float"):  # one error type for input problems (a ValueError)
        net(torch.zeros(1, 3, 112, 112, dtype=torch.uint8))


def test_bad_constructor_arguments():
    with pytest.raises(FocusFaceError, match="choose one of"):
        create_backbone("resnet50")
    with pytest.raises(ValueError, match="layers"):
        IResNet(layers=(1, 1, 1))
    with pytest.raises(ValueError, match="dropout"):
        IResNet(layers=(1, 1, 1, 1), dropout=1.5)
