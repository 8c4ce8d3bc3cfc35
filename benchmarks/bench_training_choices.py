"""What the trainer's three published-vs-engineering choices do to a run: gradient clipping (none, the network,
everything), BatchNorm over the views (separate passes, one joint batch) and the trunk's initialisation
(insightface's N(0, 0.1), focusface's damped He), each measured on the embedded demo.

    python benchmarks/bench_training_choices.py --out /tmp/choices   [--epochs 2] [--only authors,clip_all]
    python benchmarks/bench_training_choices.py --out /tmp/tiny --size tiny    # seconds: what the test runs

Every run trains FocusFace with the demo's settings (configs/demo.yaml: the `demo` backbone, batch 128, cosine
schedule, ArcFace s = 32, m = 0.4) from the same seed on the same data (`focusface synth demo`, rendered once into
--out), changing one choice at a time against the authors' choices (no clipping, separate passes, insightface's
initialisation). It prints, per run: the gradient norms at the first step (the class centres' and the network's,
and the factor a clip at norm 5 of everything would scale the network's gradient by), the mean identity and mask
loss over the last logging window, the validation U-M accuracy on the held-out identities, and the evaluation of the
final model on the demo's evaluation set (600 pairs of 200 other identities): U-M accuracy and EER, and how often
the mask head is right; the same as a Markdown table and JSON in --out. The numbers are what `nbs/29_train.ipynb`
and BENCHMARKS.md quote.
"""

import argparse
import json
import time
from pathlib import Path

import torch

AUTHORS = dict(grad_clip=None, bn_views="separate", trunk_init="insightface")  # the authors' three choices, named:
# the trainer's defaults differ (joint), so a run that sets nothing is not the authors' run
CHOICES = {  # name: (what differs from the authors' choices, the overrides on top of AUTHORS)
    "authors": ("no clipping, separate passes, insightface init (the authors')", {}),
    "clip_network": ("clip the network's gradient at norm 5", dict(grad_clip=5.0, grad_clip_scope="network")),
    "clip_all": (
        "clip everything at norm 5, class centres included (focusface before)",
        dict(grad_clip=5.0, grad_clip_scope="all"),
    ),
    "joint_bn": ("both views in one batch of 2N (the trainer's default)", dict(bn_views="joint")),
    "separate_mixed": (
        "separate passes, 10% of the masked views left unmasked (as MaskTheFace's misses)",
        dict(unmasked_share=0.1),
    ),
    "damped_init": ("damped He initialisation", dict(trunk_init="damped")),
    "before": (
        "all three as focusface did before: clip all at 5, joint, damped",
        dict(grad_clip=5.0, grad_clip_scope="all", bn_views="joint", trunk_init="damped"),
    ),
}
SIZES = {  # the demo's data (the numbers BENCHMARKS.md quotes), or a tiny set for the test that keeps this running
    "demo": dict(data={}, run={}),
    "tiny": dict(
        data=dict(
            train_identities=8,
            images_per_identity=4,
            val_identities=20,
            eval_identities=20,
            val_pairs_per_fold=2,
            eval_pairs_per_fold=2,
        ),
        run=dict(max_steps=2, batch_size=8, lr_batch=8, workers=0),
    ),
}


def first_step_gradients(config, data) -> dict:
    "Gradient norms of the class centres and of the network at the first step of `config` (one batch, no update)."
    from focusface.loaders import PairBatchSampler, PairedFaces
    from focusface.train import TrainingStep, build_model

    dataset = PairedFaces(data, spec=config.mask_spec, seed=config.mask_seed)
    model, _ = build_model(config, dataset.num_classes)
    batch = [dataset[i] for i in next(iter(PairBatchSampler(len(dataset), config.batch_size, seed=config.seed)))]

    def stack(k):
        return torch.as_tensor(__import__("numpy").stack([b[k] for b in batch]))

    model.train()
    parts = TrainingStep(model, config)(
        stack("unmasked"),
        stack("masked"),
        torch.tensor([b["label"] for b in batch]),
        torch.tensor([b["is_masked"] for b in batch]),
    )
    parts["loss"].backward()

    def norm(ps):
        return float(torch.sqrt(sum((p.grad.double() ** 2).sum() for p in ps if p.grad is not None)))

    head = norm(model.identity_classifier.parameters())
    network = norm([p for n, p in model.named_parameters() if not n.startswith("identity_classifier.")])
    return dict(class_centres=head, network=network, clip_all_5_scale=min(1.0, 5.0 / (head**2 + network**2) ** 0.5))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the demo data, the runs and the results")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each run (the demo's: 3)")
    ap.add_argument("--only", default="", help="comma-separated names of the choices to run (default: all)")
    ap.add_argument("--size", choices=sorted(SIZES), default="demo", help="the demo's data, or a tiny set (seconds)")
    args = ap.parse_args()
    from focusface.evaluate import evaluate
    from focusface.synthdata import make_demo_data
    from focusface.train import train
    from focusface.trainconfig import load_config

    out = Path(args.out)
    data = out / "demo"
    size = SIZES[args.size]
    if not (data / "train").is_dir():
        make_demo_data(data, workers=2, **size["data"])
    names = [n for n in args.only.split(",") if n] or list(CHOICES)
    results = {}
    for name in names:
        what, overrides = CHOICES[name]
        config = load_config(
            "configs/demo.yaml",
            train=str(data / "train"),
            val=str(data / "val.bin"),
            out=str(out / "runs" / name),
            epochs=args.epochs,
            progress=False,
            **dict(AUTHORS, **overrides, **size["run"]),
        )
        gradients = first_step_gradients(config, config.train)
        started = time.perf_counter()
        summary = train(config, overwrite=True)
        lines = [line for line in (out / "runs" / name / "train.log").read_text().splitlines() if " loss " in line]
        last = lines[-1]

        def value(key):
            return float(last.split(f" {key} ")[1].split()[0])

        results[name] = dict(
            what=what,
            setting=dict(grad_clip=config.grad_clip, bn_views=config.bn_views, trunk_init=config.trunk_init),
            first_step_gradient_norms=gradients,
            steps=summary["steps"],
            identity_loss=value("identity"),
            loss=value("loss"),
            val_uu_accuracy=summary["val"]["val/uu_accuracy"],
            val_um_accuracy=summary["val"]["val/um_accuracy"],
            val_um_eer=summary["val"]["val/um_eer"],
            wall_s=round(time.perf_counter() - started, 1),
        )
        held_out = evaluate(str(out / "runs" / name / "model.pt"), str(data / "eval.bin"), protocols="uu,um,mm")["eval"]
        results[name].update(
            eval_um_accuracy=held_out["um"]["accuracy"],
            eval_um_eer=held_out["um"]["eer"],
            eval_mm_accuracy=held_out["mm"]["accuracy"],
            mask_loss=value("mask"),
            mask_detection=held_out["um"]["mask_detection_accuracy"],
        )
        r = results[name]
        print(
            f"{name:>13}: grad |centres| {gradients['class_centres']:.2f} |network| {gradients['network']:.2f} "
            f"(clip-all-5 scale {gradients['clip_all_5_scale']:.2f}); after {r['steps']} steps identity loss "
            f"{r['identity_loss']:.3f}, mask loss {r['mask_loss']:.3f}; val U-M {r['val_um_accuracy'] * 100:.2f}%; eval U-M "
            f"{r['eval_um_accuracy'] * 100:.2f}% (EER {r['eval_um_eer'] * 100:.2f}%), M-M {r['eval_mm_accuracy'] * 100:.2f}%, "
            f"mask head right {r['mask_detection'] * 100:.1f}%; {r['wall_s']:.0f} s",
            flush=True,
        )
    table = [
        "| run | differs from the authors' choices | grad norm at step 1: centres / network | identity loss | "
        "mask loss | val U-M % | eval U-M % | eval U-M EER % | eval M-M % | mask head right % |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        g = r["first_step_gradient_norms"]
        table.append(
            f"| {name} | {r['what']} | {g['class_centres']:.2f} / {g['network']:.2f} | {r['identity_loss']:.3f} | "
            f"{r['mask_loss']:.3f} | {r['val_um_accuracy'] * 100:.2f} | {r['eval_um_accuracy'] * 100:.2f} | "
            f"{r['eval_um_eer'] * 100:.2f} | {r['eval_mm_accuracy'] * 100:.2f} | {r['mask_detection'] * 100:.1f} |"
        )
    (out / "choices.md").write_text("\n".join(table) + "\n")
    (out / "choices.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
