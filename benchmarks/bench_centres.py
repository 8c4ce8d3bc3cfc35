"""How FocusFace starts on top of a pretrained model: random class centres (the trainer's initialisation), each
class's mean embedding under the pretrained model (`centres=class_means`), or random centres trained alone for the
first N steps (`head_warmup:N`: `head_warmup_steps=N`, the trunk held). Runs the demo pipeline's `focusface_ontop`
variant (params.yaml, on top of the pipeline's finished `arcface` model) once per choice, at the same number of
steps, and prints, per run, the validation accuracy (U-U, U-M) before the first step, every 10 steps and at the
end, and the identity loss of the first logged window.

Run after `dvc repro` (it reads outputs/data and outputs/runs/arcface):
    python benchmarks/bench_centres.py --out /tmp/centres [--params params.yaml]
        [--choices random class_means head_warmup:10]
"""

import argparse
import json
import time
from pathlib import Path

from focusface.experiment import load_params, variant_config, variant_settings
from focusface.results import training_history
from focusface.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--variant", default="focusface_ontop")
    parser.add_argument("--choices", nargs="+", default=["random", "class_means", "head_warmup:10"])
    args = parser.parse_args()
    params = load_params(args.params)
    index = json.loads(Path("outputs/data/index.json").read_text())
    for choice in args.choices:
        name, _, warmup = choice.partition(":")
        chosen = dict(head_warmup_steps=int(warmup), centres="random") if name == "head_warmup" else dict(centres=name)
        settings = dict(variant_settings(params, args.variant), val_every=10, val_at_start=True) | chosen
        run = Path(args.out, choice.replace(":", "_"))
        started = time.perf_counter()
        summary = train(variant_config(index, run, settings), overwrite=True)
        at = {}
        for metric in ("val/uu_accuracy", "val/um_accuracy"):
            steps, values = training_history(run, metric)
            at[metric] = dict(zip(steps.astype(int).tolist(), values.round(4).tolist()))
        start = summary.get("val_start") or {}
        loss_steps, losses = training_history(run, "train/identity")
        line = dict(
            centres=choice,
            steps=summary["steps"],
            val_start={k: round(v, 4) for k, v in start.items() if k.endswith("_accuracy")},
            val_by_step=at,
            val_end={k: round(v, 4) for k, v in summary["val"].items() if k.endswith("_accuracy")},
            first_identity_loss=round(float(losses[0]), 3) if len(losses) else None,
            seconds=round(time.perf_counter() - started, 1),
        )
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
