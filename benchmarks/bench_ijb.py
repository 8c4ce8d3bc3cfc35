"""IJB-C's 1:1 protocol at its real size with random features: how long reading the meta files, pooling 469,375
image features into 23,124 templates, scoring 15,658,489 template pairs and reading TAR at FAR take, and the peak
memory each step allocates beyond its inputs (numpy's allocations, traced), and the person-level bootstrap of the
TAR (`tar_at_far_intervals`) at that size. Prints one JSON line per step.

The layout: 3,531 gallery templates (G1 + G2) and 19,593 probe templates, images spread over templates and media
at random, 19,557 genuine pairs and 15,638,932 impostor pairs drawn at random between gallery and probe
templates. The scores of random features are meaningless: this measures time and memory only.

Each gallery template is one person (3,531); each probe template a random one of them, a genuine pair's probe its
gallery template's person.

Run: python benchmarks/bench_ijb.py [--scale 1.0] [--no-files] [--replicates 200]
"""

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from focusface.ijb import (
    insightface_tar_at_far,
    read_meta,
    tar_at_far,
    tar_at_far_intervals,
    template_features,
    template_pair_scores,
)

IJBC = dict(images=469_375, gallery=3_531, probes=19_593, genuine=19_557, impostor=15_638_932, dim=512)


def measured(step: str, function, *args, **kwargs):
    "Run `function`, print its time and traced peak allocation, return its result."
    tracemalloc.start()
    started = time.perf_counter()
    out = function(*args, **kwargs)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps(dict(step=step, seconds=round(seconds, 2), peak_mb=round(peak / 2**20))), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="a share of IJB-C's counts (1.0: the real size)")
    parser.add_argument("--no-files", action="store_true", help="skip writing and reading the meta files")
    parser.add_argument("--replicates", type=int, default=200, help="bootstrap replicates of the intervals (0: none)")
    args = parser.parse_args()
    n = {k: max(2, int(round(v * args.scale))) if k != "dim" else v for k, v in IJBC.items()}
    rng = np.random.default_rng(0)
    templates_total = n["gallery"] + n["probes"]
    templates = np.sort(rng.integers(1, templates_total + 1, n["images"]))  # template ids 1..T, every one used
    templates[:templates_total] = np.arange(1, templates_total + 1)
    media = templates * 100 + rng.integers(0, 6, n["images"])  # up to 6 media per template
    features = rng.standard_normal((n["images"], n["dim"]), dtype=np.float32)
    scores = rng.uniform(0.5, 1.0, n["images"])
    pairs = np.empty((n["genuine"] + n["impostor"], 2), np.int64)
    pairs[:, 0] = rng.integers(1, n["gallery"] + 1, len(pairs))
    pairs[:, 1] = rng.integers(n["gallery"] + 1, templates_total + 1, len(pairs))
    issame = np.zeros(len(pairs), bool)
    issame[rng.choice(len(pairs), n["genuine"], replace=False)] = True
    print(json.dumps(dict(layout=n, templates=templates_total, pairs=len(pairs))), flush=True)
    if not args.no_files:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "ijbc_template_pair_label.txt")
            np.savetxt(path, np.c_[pairs, issame], fmt="%d")
            print(json.dumps(dict(file=path.name, mb=round(path.stat().st_size / 2**20))), flush=True)
            measured("read the template pair file", read_meta, path, "template_pair_label")
    ids, pooled = measured("pool images into templates", template_features, features, templates, media, scores)
    similarity = measured("score the template pairs", template_pair_scores, ids, pooled, pairs)
    measured("TAR at FAR, strict", tar_at_far, similarity, issame)
    measured("TAR at FAR, insightface's", insightface_tar_at_far, similarity, issame)
    if args.replicates:
        person = np.r_[0, np.arange(n["gallery"]), rng.integers(0, n["gallery"], n["probes"])]  # by template id
        people = person[pairs]
        people[issame, 1] = people[issame, 0]
        for replicates in (1, args.replicates):  # the difference: the cost of a replicate beyond the set-up
            measured(
                f"TAR intervals, people resampled, {replicates} replicate(s)",
                tar_at_far_intervals,
                similarity,
                issame,
                people,
                n=replicates,
            )


if __name__ == "__main__":
    main()
