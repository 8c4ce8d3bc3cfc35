"""All verification metrics and curve data from 10 million scores.

Run: python benchmarks/bench_metrics.py [--genuine N] [--impostor N]
"""

import argparse
import time

import numpy as np

from focusface.metrics import Scores, curve, verification_metrics


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--genuine", type=int, default=1_000_000)
    parser.add_argument("--impostor", type=int, default=9_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.55, 0.15, args.genuine).astype(np.float32)
    impostor = rng.normal(0.05, 0.12, args.impostor).astype(np.float32)
    for run in range(2):
        start = time.perf_counter()
        scores = Scores(genuine, impostor)
        metrics = verification_metrics(scores, None)
        roc = curve(scores, None)
        elapsed = time.perf_counter() - start
        print(
            f"run {run + 1}: {args.genuine:,} genuine + {args.impostor:,} impostor scores -> all metrics and "
            f"{len(roc['threshold'])} curve points in {elapsed:.2f} s"
        )
    print({k: round(v, 5) for k, v in metrics.items() if k in ("eer", "fmr100", "fmr1000", "zero_fmr", "auc", "fdr")})


if __name__ == "__main__":
    main()
