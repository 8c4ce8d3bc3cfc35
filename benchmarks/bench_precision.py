"""What inference precision changes: each demo model evaluated on the demo's evaluation set (U-U, U-M, M-M, the
pipeline's masks) in float32 and in bfloat16, as `focusface evaluate --precision` runs it. Prints one JSON line per
model and precision (the table's metrics, the embedding rate) and, per model, the largest change of each metric.

Run after `dvc repro` (it reads the pipeline's models and evaluation set):
    python benchmarks/bench_precision.py [--variants arcface focusface] [--precisions fp32 bf16] [--device cpu]
"""

import argparse
import json
import platform
import time

import torch

from focusface.evaluate import TABLE_METRICS, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="outputs/data/demo/eval.bin")
    parser.add_argument("--runs", default="outputs/runs")
    parser.add_argument("--variants", nargs="+", default=["arcface", "arcface_aug", "focusface", "focusface_ontop"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for variant in args.variants:
        by_precision = {}
        for precision in args.precisions:
            started = time.perf_counter()
            metrics = evaluate(
                f"{args.runs}/{variant}/seed0/model.pt",
                [args.set],
                protocols="uu,um,mm",
                device=args.device,
                figures=False,
                precision=precision,
            )
            seconds = time.perf_counter() - started
            (table,) = metrics.values()
            by_precision[precision] = {
                p: {k: round(m[k], 6) for k in TABLE_METRICS if isinstance(m.get(k), float)}
                for p, m in table.items()
                if p in ("uu", "um", "mm")
            }
            line = dict(
                variant=variant, precision=precision, seconds=round(seconds, 1), metrics=by_precision[precision]
            )
            print(
                json.dumps(line | dict(torch_threads=torch.get_num_threads(), machine=platform.machine())), flush=True
            )
        base, *others = args.precisions
        for other in others:
            change = {
                p: {k: round(abs(v - by_precision[other][p][k]), 6) for k, v in values.items()}
                for p, values in by_precision[base].items()
            }
            print(json.dumps(dict(variant=variant, largest_change=f"{other} vs {base}", change=change)), flush=True)


if __name__ == "__main__":
    main()
