"""State dicts laid out like third-party files, written from the published layouts (insightface's iresnet.py, the
authors' focus_face.mdl key list in nbs/17_model.ipynb), not from focusface's own key mapping."""

import torch

WIDTHS = (64, 128, 256, 512)


def _bn(prefix, n, out):
    out[f"{prefix}.weight"] = torch.rand(n) + 0.5
    out[f"{prefix}.bias"] = torch.randn(n) * 0.1
    out[f"{prefix}.running_mean"] = torch.randn(n) * 0.1
    out[f"{prefix}.running_var"] = torch.rand(n) + 0.5
    out[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)


def iresnet_trunk(layers, prefix="", widths=WIDTHS):
    """conv1/bn1/prelu, layer1..4 of IBasicBlocks with a 1x1 downsample in block 0, bn2."""
    out = {}
    out[f"{prefix}conv1.weight"] = torch.randn(widths[0], 3, 3, 3) * 0.1
    _bn(f"{prefix}bn1", widths[0], out)
    out[f"{prefix}prelu.weight"] = torch.full((widths[0],), 0.25)
    cin = widths[0]
    for stage, (depth, width) in enumerate(zip(layers, widths), start=1):
        for block in range(depth):
            p = f"{prefix}layer{stage}.{block}"
            bin_ = cin if block == 0 else width
            _bn(f"{p}.bn1", bin_, out)
            out[f"{p}.conv1.weight"] = torch.randn(width, bin_, 3, 3) * 0.02
            _bn(f"{p}.bn2", width, out)
            out[f"{p}.prelu.weight"] = torch.full((width,), 0.25)
            out[f"{p}.conv2.weight"] = torch.randn(width, width, 3, 3) * 0.02
            _bn(f"{p}.bn3", width, out)
            if block == 0:
                out[f"{p}.downsample.0.weight"] = torch.randn(width, cin, 1, 1) * 0.05
                _bn(f"{p}.downsample.1", width, out)
        cin = width
    _bn(f"{prefix}bn2", widths[-1], out)
    return out


def authors_mdl(layers=(3, 13, 30, 3), num_classes=85742, module_prefix=False):
    """The authors' focus_face.mdl state dict: model.* (trunk, fc head, features), fc, fc2."""
    out = iresnet_trunk(layers, prefix="model.")
    out["model.fc.conv1.weight"] = torch.randn(512, 512, 7, 7) * 0.002
    _bn("model.fc.bn1", 512, out)
    out["model.fc.conv2.weight"] = torch.randn(32, 512, 7, 7) * 0.002
    _bn("model.fc.bn2", 32, out)
    _bn("model.features", 512, out)
    if num_classes:
        out["fc.weight"] = torch.randn(num_classes, 512)
    out["fc2.weight"] = torch.randn(2, 32)
    out["fc2.bias"] = torch.randn(2)
    if module_prefix:
        out = {f"module.{k}": v for k, v in out.items()}
    return out


def insightface_backbone(layers=(3, 13, 30, 3)):
    """insightface/ElasticFace backbone.pth: top-level trunk + fc Linear(25088, 512) + features BN1d(512)."""
    out = iresnet_trunk(layers)
    out["fc.weight"] = torch.randn(512, 512 * 49) * 0.001
    out["fc.bias"] = torch.randn(512) * 0.5
    _bn("features", 512, out)
    return out
