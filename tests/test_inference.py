"""Using a trained model: verify, embed and export on checkpoint fixtures (ours and the authors' layout), and on real
photos of the LFW development sample where it is present."""

import json
import tracemalloc

import cv2
import numpy as np
import pytest
import torch
from weight_layouts import authors_mdl, insightface_backbone

from focusface.checkpoints import load_checkpoint, save_checkpoint
from focusface.cli import main
from focusface.errors import FocusFaceError
from focusface.inference import embed_aligned, embed_dataset, export_onnx, verify
from focusface.model import FocusFace


def _dlib_or_skip():
    from focusface.align import DlibAligner

    try:
        return DlibAligner()
    except FocusFaceError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    "A small model in focusface's format and a state dict in the authors' layout (r18 trunk)."
    d = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(1)
    save_checkpoint(FocusFace("tiny").eval(), d / "ours.pt")
    torch.save(authors_mdl(layers=(2, 2, 2, 2), num_classes=None), d / "theirs.mdl")
    torch.save(insightface_backbone(layers=(2, 2, 2, 2)), d / "backbone.pth")
    return dict(ours=d / "ours.pt", authors=d / "theirs.mdl", insightface=d / "backbone.pth")


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    "Three aligned 112x112 faces as PNG files (lossless, so files and arrays give the same embeddings)."
    d = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    for i, face in enumerate(arrays):
        cv2.imwrite(str(d / f"face{i}.png"), face[:, :, ::-1])
    return d, arrays


def run(*argv):
    return main([str(a) for a in argv])


def test_the_authors_layout_reports_bgr_and_a_swap_is_the_other_convention(checkpoints, faces, tmp_path):
    model = load_checkpoint(checkpoints["authors"], with_classifier=False)
    assert model.channel_order == "bgr"
    assert load_checkpoint(checkpoints["ours"]).channel_order == "rgb"
    folder, arrays = faces
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for i, face in enumerate(arrays):
        cv2.imwrite(str(swapped / f"face{i}.png"), face)  # written RGB as if BGR: swapped
    embed_dataset(checkpoints["authors"], folder, tmp_path / "original.npz")
    embed_dataset(checkpoints["authors"], swapped, tmp_path / "swapped.npz", channel_order="rgb")
    original, other = np.load(tmp_path / "original.npz"), np.load(tmp_path / "swapped.npz")
    assert str(original["channel_order"]) == "bgr" and str(other["channel_order"]) == "rgb"
    np.testing.assert_allclose(original["embeddings"], other["embeddings"], atol=1e-5)
    # and the convention matters: the same images under the wrong order embed differently
    embed_dataset(checkpoints["authors"], folder, tmp_path / "wrong.npz", channel_order="rgb")
    assert np.abs(np.load(tmp_path / "wrong.npz")["embeddings"] - original["embeddings"]).max() > 1e-3


@pytest.mark.parametrize("which", ["ours", "authors"])
def test_every_command_works_on_the_fixtures(checkpoints, faces, tmp_path, capsys, which):
    folder, arrays = faces
    ckpt = checkpoints[which]
    assert run("verify", ckpt, folder / "face0.png", folder / "face1.png", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    model = load_checkpoint(ckpt, with_classifier=False)
    e, p = embed_aligned(model, arrays[:2])
    assert result["similarity"] == pytest.approx(float(e[0] @ e[1]), abs=1e-5)
    assert [i["p_masked"] for i in result["images"]] == pytest.approx(p.tolist(), abs=1e-5)
    assert result["channel_order"] == ("bgr" if which == "authors" else "rgb")
    assert result["threshold"] == 0.28 and "not measured" in result["threshold_source"]
    assert run("embed", ckpt, folder, tmp_path / "e.npz", "--quiet") == 0
    z = np.load(tmp_path / "e.npz")
    assert list(z["keys"]) == ["face0.png", "face1.png", "face2.png"] and z["ok"].all()
    np.testing.assert_allclose(z["embeddings"], embed_aligned(model, arrays)[0], atol=1e-5)
    assert run("export", ckpt, tmp_path / "m.onnx") == 0
    assert "max |ONNX - PyTorch|" in capsys.readouterr().out


def test_onnx_agrees_with_pytorch_and_carries_the_convention(checkpoints, faces, tmp_path):
    import onnx
    import onnxruntime

    info = export_onnx(checkpoints["authors"], tmp_path / "a.onnx")
    assert max(info["max_abs_diff"].values()) < 1e-4
    meta = {p.key: p.value for p in onnx.load(tmp_path / "a.onnx").metadata_props}
    assert meta["channel_order"] == "bgr" and "127" not in meta["input_scale"]
    session = onnxruntime.InferenceSession(str(tmp_path / "a.onnx"))
    model = load_checkpoint(checkpoints["authors"], with_classifier=False)
    _, arrays = faces
    from focusface.model import to_model_input

    for batch in (1, 3):  # the batch axis is dynamic
        x = to_model_input(arrays[:batch], "bgr")
        e, p = session.run(None, {"faces": x.numpy()})
        ref_e, ref_p = embed_aligned(model, arrays[:batch], flip=False)
        assert np.abs(e - ref_e).max() < 1e-4 and np.abs(p - ref_p).max() < 1e-4


def test_verify_uses_the_threshold_a_training_run_recorded(tmp_path, faces):
    folder, _ = faces
    save_checkpoint(
        FocusFace("tiny").eval(), tmp_path / "run.pt", extra=dict(summary=dict(val={"val/uu_threshold_fmr1000": 0.61}))
    )
    r = verify(tmp_path / "run.pt", folder / "face0.png", folder / "face1.png")
    assert r["threshold"] == 0.61 and "recorded by the checkpoint" in r["threshold_source"]
    assert verify(tmp_path / "run.pt", folder / "face0.png", folder / "face1.png", threshold=0.1)["threshold"] == 0.1


def test_inspect_shows_the_recorded_threshold(tmp_path, capsys):
    save_checkpoint(FocusFace("tiny").eval(), tmp_path / "run.pt", extra={"val/uu_threshold_fmr1000": 0.55})
    assert run("inspect", tmp_path / "run.pt") == 0
    assert "threshold recorded by its training run: 0.5500" in capsys.readouterr().out


def test_unreadable_greyscale_and_alpha_images(checkpoints, faces, tmp_path, capsys):
    folder, arrays = faces
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert run("verify", checkpoints["ours"], damaged, folder / "face0.png") == 2
    assert "damaged.jpg" in capsys.readouterr().err
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), arrays[0].mean(2).astype(np.uint8))
    alpha = tmp_path / "alpha.png"
    cv2.imwrite(str(alpha), np.dstack([arrays[0][:, :, ::-1], np.full((112, 112), 128, np.uint8)]))
    r = verify(checkpoints["ours"], grey, alpha)
    grey_rgb = np.repeat(arrays[0].mean(2).astype(np.uint8)[:, :, None], 3, 2)
    e, _ = embed_aligned(load_checkpoint(checkpoints["ours"], with_classifier=False), np.stack([grey_rgb, arrays[0]]))
    assert r["similarity"] == pytest.approx(float(e[0] @ e[1]), abs=1e-5)  # grey: three equal channels; alpha: dropped


def test_a_photo_without_a_face_is_an_error_and_a_recorded_failure(checkpoints, faces, tmp_path, capsys):
    _dlib_or_skip()
    blank = tmp_path / "photos" / "blank.jpg"
    blank.parent.mkdir()
    cv2.imwrite(str(blank), np.full((240, 200, 3), 128, np.uint8))
    assert run("verify", checkpoints["ours"], blank, faces[0] / "face0.png") == 2
    err = capsys.readouterr().err
    assert "blank.jpg: no face found" in err and "Traceback" not in err
    info = embed_dataset(checkpoints["ours"], blank.parent, tmp_path / "e.npz")
    z = np.load(tmp_path / "e.npz")
    assert info["failed"] == 1 and not z["ok"][0] and "no face found" in str(z["notes"][0])
    assert np.isnan(z["embeddings"][0]).all()


def test_real_photos_align_verify_and_embed(checkpoints, lfw_sample, tmp_path, capsys):
    aligner = _dlib_or_skip()
    person = sorted((lfw_sample / "raw").iterdir())[0]
    a, b = sorted(person.iterdir())[:2]
    assert run("verify", checkpoints["ours"], a, b) == 0
    out = capsys.readouterr().out
    assert out.count("one face:") == 2 and "P(masked)" in out
    # two faces in one photo: said, the main one used, the other one choosable
    two = tmp_path / "two.jpg"
    left, right = (cv2.imread(str(p)) for p in (a, b))
    cv2.imwrite(str(two), np.hstack([left, right]))
    r = verify(checkpoints["ours"], two, a, aligner=aligner)
    assert r["images"][0]["faces_found"] == 2 and "2 faces found; used the main face" in r["images"][0]["note"]
    r1 = verify(checkpoints["ours"], two, a, aligner=aligner, faces=(1, None))
    assert r1["similarity"] != pytest.approx(r["similarity"])
    with pytest.raises(FocusFaceError, match="face 2 asked for, but 2 found"):
        verify(checkpoints["ours"], two, a, aligner=aligner, faces=(2, None))
    info = embed_dataset(checkpoints["ours"], person, tmp_path / "person.npz", aligner=aligner)
    assert info["embedded"] == 8 and np.load(tmp_path / "person.npz")["ok"].all()


def test_embedding_streams_in_bounded_memory(checkpoints, tmp_path):
    "Python-side allocations do not grow with the number of images (the benchmark measures RSS on 10,000)."
    from focusface.datasets import write_insightface_folder
    from focusface.images import encode_image

    rng = np.random.default_rng(0)
    image = encode_image(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))

    def peak(n):
        root = tmp_path / f"rec{n}"
        write_insightface_folder(
            root,
            ((i * 10 // n, image) for i in range(n)),
            num_images=n,
            names=[f"id{i}" for i in range(10)],
            image_size=(112, 112),
        )
        tracemalloc.start()
        embed_dataset(checkpoints["ours"], root, tmp_path / f"e{n}.npz", batch_size=32, flip=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert np.load(tmp_path / f"e{n}.npz")["embeddings"].shape == (n, 512)
        return top

    small, large = peak(100), peak(800)
    assert large < small + 800 * 600, (small, large)  # keys and flags only: well under a kilobyte per image


def test_outputs_are_files_of_their_kind_and_never_replace_a_folder(checkpoints, faces, tmp_path, capsys):
    folder, _ = faces
    assert run("export", checkpoints["ours"], tmp_path / "m.txt") == 2
    assert "must be a .onnx file" in capsys.readouterr().err
    (tmp_path / "m.onnx").mkdir()
    (tmp_path / "m.onnx" / "keep.txt").write_text("mine")
    assert run("export", checkpoints["ours"], tmp_path / "m.onnx", "--overwrite") == 2
    assert "is a folder" in capsys.readouterr().err
    (tmp_path / "e.npz").mkdir()
    assert run("embed", checkpoints["ours"], folder, tmp_path / "e.npz", "--overwrite", "--quiet") == 2
    assert (tmp_path / "m.onnx" / "keep.txt").read_text() == "mine" and (tmp_path / "e.npz").is_dir()


def test_a_plain_backbone_works_in_every_command_and_says_it_has_no_mask_head(checkpoints, faces, tmp_path, capsys):
    """An insightface/ElasticFace backbone.pth: the published baselines, evaluated without training FocusFace."""
    import onnx

    from focusface.evalsets import write_bin
    from focusface.synthdata import synthetic_pairs

    folder, arrays = faces
    ckpt = checkpoints["insightface"]
    assert run("inspect", ckpt) == 0
    assert "mask head: none" in capsys.readouterr().out
    assert run("verify", ckpt, folder / "face0.png", folder / "face1.png") == 0
    said = capsys.readouterr().out
    assert "similarity" in said and said.count("P(masked) n/a (this model has no mask head)") == 2
    assert run("verify", ckpt, folder / "face0.png", folder / "face1.png", "--json") == 0
    result = json.loads(capsys.readouterr().out)  # valid JSON: no NaN
    assert result["mask_head"] is False and [i["p_masked"] for i in result["images"]] == [None, None]
    assert run("embed", ckpt, folder, tmp_path / "e.npz", "--quiet") == 0
    z = np.load(tmp_path / "e.npz")
    np.testing.assert_allclose(
        z["embeddings"], embed_aligned(load_checkpoint(ckpt, with_classifier=False), arrays)[0], atol=1e-5
    )
    assert np.isnan(z["p_masked"]).all() and z["ok"].all()
    assert run("export", ckpt, tmp_path / "m.onnx") == 0
    meta = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert meta["mask_head"] == "none" and meta["channel_order"] == "rgb"
    pairs = synthetic_pairs(0, first_identity=7000, identities=20, pairs_per_fold=2)
    write_bin(tmp_path / "set.bin", pairs.images, pairs.issame)
    capsys.readouterr()
    assert run("evaluate", ckpt, tmp_path / "set.bin", "--out", tmp_path / "eval", "--quiet") == 0
    table = capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())["set"]
    assert sorted(metrics) == ["mm", "um", "uu"]
    assert all(m["mask_detection_accuracy"] is None and 0 <= m["eer"] <= 1 for m in metrics.values())
    assert table.count("n/a") == 3
