import math

import pytest
import torch
import torch.nn.functional as F

from focusface.losses import ArcFace, CosFace, create_margin_head, focusface_loss


def _reference_arcface_logits(embeddings, weight, labels, s, m):
    """Closed form, written independently: angles through acos, margin added to the angle."""
    cos = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T
    theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    target = torch.zeros_like(cos, dtype=torch.bool)
    target[torch.arange(len(labels)), labels] = True
    in_range = theta + m <= math.pi
    margin_logit = torch.where(in_range, torch.cos(theta + m), cos - m * math.sin(m))
    return s * torch.where(target, margin_logit, cos)


@pytest.mark.parametrize("m", [0.5, 0.3])
def test_arcface_matches_closed_form_including_fallback(m):
    torch.manual_seed(1)
    head = ArcFace(6, 4, s=64.0, m=m).double()
    emb = torch.randn(32, 6, dtype=torch.float64)
    # make some targets nearly opposite their centre so theta + m > pi happens
    labels = torch.randint(0, 4, (32,))
    centres = F.normalize(head.weight.detach(), dim=1)
    emb[:6] = -centres[labels[:6]] + 0.05 * torch.randn(6, 6, dtype=torch.float64)
    ours = head(emb, labels)
    ref = _reference_arcface_logits(emb, head.weight.detach(), labels, 64.0, m)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=1e-6)
    theta = torch.acos(head.cosine(emb).gather(1, labels[:, None]).clamp(-1, 1))
    assert (theta[:6] > math.pi - m).all(), "the test must exercise the fallback branch"


@pytest.mark.parametrize("cls", [ArcFace, CosFace])
def test_margin_head_gradient_matches_finite_differences(cls):
    """gradcheck over the embeddings and the class centres, through the margin."""
    torch.manual_seed(2)
    head = cls(5, 3, s=8.0).double()
    emb = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    weight = head.weight.detach().clone().requires_grad_()
    labels = torch.tensor([0, 1, 2, 1])
    assert torch.autograd.gradcheck(lambda e, w: _head_loss(head, e, w, labels), (emb, weight), eps=1e-6, atol=1e-5)


def _head_loss(head, embeddings, weight, labels):
    """The head's logits recomputed with an explicit weight, so gradcheck can perturb the class centres."""
    cos = F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1))
    cos_t = cos.gather(1, labels[:, None])
    logits = cos.scatter(1, labels[:, None], head.target_logit(cos_t)) * head.s
    return F.cross_entropy(logits, labels)


def test_head_forward_equals_explicit_recomputation():
    torch.manual_seed(3)
    for cls in (ArcFace, CosFace):
        head = cls(5, 3, s=8.0).double()
        emb, labels = torch.randn(4, 5, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
        torch.testing.assert_close(F.cross_entropy(head(emb, labels), labels), _head_loss(head, emb, head.weight, labels))


def test_cosface_target_logit_is_shifted_cosine():
    head = CosFace(4, 3, s=10.0, m=0.35)
    emb, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    cos = head.cosine(emb)
    logits = head(emb, labels)
    target = F.one_hot(labels, 3).bool()
    torch.testing.assert_close(logits[target], 10.0 * (cos[target] - 0.35))
    torch.testing.assert_close(logits[~target], 10.0 * cos[~target])


def test_margin_head_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown margin head"):
        create_margin_head("sphereface", 4, 3)
    head = ArcFace(4, 3)
    with pytest.raises(ValueError, match=r"embeddings must be \(N, 4\)"):
        head(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must be in"):
        head(torch.randn(2, 4), torch.tensor([0, 3]))


def test_focusface_loss_trains_the_unmasked_mask_term():
    torch.manual_seed(4)
    head = ArcFace(8, 4)
    eu, em = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    lu, lm = torch.randn(6, 2, requires_grad=True), torch.randn(6, 2, requires_grad=True)
    labels = torch.randint(0, 4, (6,))
    parts = focusface_loss(eu, em, lu, lm, labels, head)
    parts["loss"].backward()
    # unmasked views are pushed towards class 0, masked views towards class 1
    assert (lu.grad[:, 0] < 0).all() and (lu.grad[:, 1] > 0).all()
    assert (lm.grad[:, 1] < 0).all() and (lm.grad[:, 0] > 0).all()
    # the consistency term pulls the two identity embeddings together, through both views
    torch.testing.assert_close(parts["consistency"], F.mse_loss(eu, em).detach())
    # images where no mask was placed count as unmasked
    parts0 = focusface_loss(eu, em, lu, lm, labels, head, masked_labels=torch.zeros(6, dtype=torch.long))
    expected_mask = 0.5 * (F.cross_entropy(lu, torch.zeros(6, dtype=torch.long)) + F.cross_entropy(lm, torch.zeros(6, dtype=torch.long)))
    torch.testing.assert_close(parts0["mask"], expected_mask.detach())
