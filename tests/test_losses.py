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


def _reference_cosface_logits(embeddings, weight, labels, s, m):
    """Written independently: the cosine of unit vectors, the margin subtracted from the target's."""
    cos = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).T
    return s * (cos - m * F.one_hot(labels, weight.shape[0]).to(cos.dtype))


@pytest.mark.parametrize("cls, reference", [(ArcFace, _reference_arcface_logits), (CosFace, _reference_cosface_logits)])
def test_margin_head_gradients_match_an_independent_implementation(cls, reference):
    """The loss's gradient through the head, over the embeddings and the class centres, equals that of the closed
    form written separately above (ArcFace's fallback branch included: some targets lie nearly opposite)."""
    torch.manual_seed(2)
    head = cls(5, 3, s=8.0, m=0.5 if cls is ArcFace else 0.35).double()
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    emb = torch.randn(6, 5, dtype=torch.float64)
    emb[:2] = -F.normalize(head.weight.detach()[labels[:2]], dim=1) + 0.05 * torch.randn(2, 5, dtype=torch.float64)
    grads = []
    for forward in (lambda e, w: torch.func.functional_call(head, {"weight": w}, (e, labels)), None):
        e, w = emb.clone().requires_grad_(), head.weight.detach().clone().requires_grad_()
        logits = forward(e, w) if forward else reference(e, w, labels, head.s, head.m)
        F.cross_entropy(logits, labels).backward()
        grads.append((e.grad, w.grad))
    for ours, theirs in zip(grads[0], grads[1]):
        torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-9)


def test_cosface_target_logit_is_shifted_cosine():
    torch.manual_seed(3)
    head = CosFace(4, 3, s=10.0, m=0.35)
    emb, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    expected = _reference_cosface_logits(emb, head.weight.detach(), labels, 10.0, 0.35)
    torch.testing.assert_close(head(emb, labels), expected)


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
    parts = focusface_loss(eu, em, lu, lm, labels, margin_head=head)
    parts["loss"].backward()
    # unmasked views are pushed towards class 0, masked views towards class 1
    assert (lu.grad[:, 0] < 0).all() and (lu.grad[:, 1] > 0).all()
    assert (lm.grad[:, 1] < 0).all() and (lm.grad[:, 0] > 0).all()
    # the consistency term pulls the two identity embeddings together, through both views
    with_term = eu.grad.clone(), em.grad.clone()
    eu.grad = em.grad = None
    focusface_loss(eu, em, lu, lm, labels, margin_head=head, contrastive_weight=0.0)["loss"].backward()
    pull_u, pull_m = with_term[0] - eu.grad, with_term[1] - em.grad  # the consistency term's own gradient
    assert (pull_u * (eu - em)).sum() > 0 and (pull_m * (em - eu)).sum() > 0  # descent moves each towards the other
    # images where no mask was placed count as unmasked: both views then push towards class 0
    lu.grad = lm.grad = None
    focusface_loss(eu, em, lu, lm, labels, margin_head=head, masked_labels=torch.zeros(6, dtype=torch.long))[
        "loss"
    ].backward()
    assert (lm.grad[:, 0] < 0).all() and (lm.grad[:, 1] > 0).all()


def test_focusface_loss_parts_by_hand():
    """Every part against numbers worked out with math on a two-class, two-dimensional example."""
    s, m = 2.0, 0.5
    head = ArcFace(2, 2, s=s, m=m)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # centres on the axes
    unmasked = torch.tensor([[1.0, 0.0], [3.0, 4.0]])  # first: on centre 0; second: angle atan(4/3) to it
    masked = torch.tensor([[0.0, 1.0], [3.0, 0.0]])  # first: at 90 degrees to centre 0; second: on it
    labels = torch.tensor([0, 0])
    mask_unmasked = torch.tensor([[2.0, 0.0], [0.0, 0.0]])  # logits (unmasked, masked)
    mask_masked = torch.tensor([[0.0, 1.0], [1.0, 1.0]])

    def ce(target_logit, other_logit):
        return math.log1p(math.exp(other_logit - target_logit))

    theta = math.atan2(4, 3)
    identity_u = (ce(s * math.cos(m), 0.0) + ce(s * math.cos(theta + m), s * math.sin(theta))) / 2
    identity_m = (ce(s * math.cos(math.pi / 2 + m), s * 1.0) + ce(s * math.cos(m), 0.0)) / 2
    identity = (identity_u + identity_m) / 2
    mask = ((ce(2.0, 0.0) + ce(0.0, 0.0)) / 2 + (ce(1.0, 0.0) + ce(1.0, 1.0)) / 2) / 2
    consistency = (1 + 1 + 0 + 16) / 4  # squared differences of (1, -1) and (0, 4)
    parts = focusface_loss(
        unmasked,
        masked,
        mask_unmasked,
        mask_masked,
        labels,
        margin_head=head,
        mask_weight=0.1,
        contrastive_weight=1 / 3,
    )
    assert parts["identity"].item() == pytest.approx(identity, rel=1e-6)
    assert parts["mask"].item() == pytest.approx(mask, rel=1e-6)
    assert parts["consistency"].item() == pytest.approx(consistency, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(identity + 0.1 * mask + consistency / 3, rel=1e-6)


def _infonce_on_a_slice(rank, world, store, u, m, labels, out):  # noqa: PLR0917 (mp.spawn passes them in order)
    import torch.distributed as dist

    from focusface.losses import consistency_loss

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    rows = slice(rank * len(u) // world, (rank + 1) * len(u) // world)
    u_local, m_local = u[rows].clone().requires_grad_(True), m[rows].clone().requires_grad_(True)
    loss = consistency_loss(u_local, m_local, "infonce", labels=labels[rows], temperature=0.2)
    loss.backward()
    # what DDP would do: average the per-process losses' gradients over the processes
    torch.save(dict(loss=loss.detach(), grad_u=u_local.grad / world, grad_m=m_local.grad / world), f"{out}.{rank}")
    dist.barrier()  # every collective done before the group goes (gloo aborts a process whose work is still queued)
    dist.destroy_process_group()


def test_infonce_under_ddp_equals_the_whole_batch(tmp_path):
    """Negatives come from every process's share: two processes give the single-process loss and gradients."""
    import torch.multiprocessing as mp

    from focusface.losses import consistency_loss

    torch.manual_seed(0)
    u, m = torch.randn(8, 16, dtype=torch.float64), torch.randn(8, 16, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 0, 5, 6, 1])  # same identities on both processes: not each other's negatives
    whole_u, whole_m = u.clone().requires_grad_(True), m.clone().requires_grad_(True)
    whole = consistency_loss(whole_u, whole_m, "infonce", labels=labels, temperature=0.2)
    whole.backward()
    mp.spawn(_infonce_on_a_slice, args=(2, tmp_path / "store", u, m, labels, tmp_path / "out"), nprocs=2)
    parts = [torch.load(tmp_path / f"out.{r}") for r in range(2)]
    torch.testing.assert_close(sum(p["loss"] for p in parts) / 2, whole.detach())
    torch.testing.assert_close(torch.cat([p["grad_u"] for p in parts]), whole_u.grad)
    torch.testing.assert_close(torch.cat([p["grad_m"] for p in parts]), whole_m.grad)
