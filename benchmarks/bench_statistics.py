"""The coverage of the report's 95% intervals and the size of its paired tests, measured on simulated sets with the
demo evaluation set's layout of people (`focusface.metrics.interval_coverage`, `test_size`): the metrics chapter's
simulation, larger. Prints one JSON line per scheme and per tau.

Run: python benchmarks/bench_statistics.py [--sets 1000] [--replicates 1000] [--size-sets 4000]
"""

import argparse
import json
import time

import numpy as np

from focusface.metrics import COVERAGE_SCHEMES, interval_coverage, test_size
from focusface.synthdata import sample_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=1000, help="simulated sets for each interval scheme")
    parser.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates of each interval")
    parser.add_argument("--size-sets", type=int, default=4000, help="simulated sets for each tau of the tests")
    parser.add_argument("--person-share", type=float, default=0.5)
    args = parser.parse_args()
    layout = sample_pairs(0, 0, 1000, pairs_per_fold=600)  # the demo's evaluation layout
    people = np.array([(a, b) for _, a, _, b, _, _ in layout])
    same = np.array([s for *_, s in layout])
    for scheme in COVERAGE_SCHEMES:
        started = time.perf_counter()
        coverage = interval_coverage(
            people, same, schemes=[scheme], sets=args.sets, n=args.replicates, seed=2, person_share=args.person_share
        )[scheme]
        line = dict(scheme=scheme, sets=args.sets, replicates=args.replicates, person_share=args.person_share)
        print(json.dumps(line | dict(coverage=coverage, seconds=round(time.perf_counter() - started, 1))), flush=True)
    for tau in (0, 1, 2, 3):
        size = test_size(people, tau=tau, sets=args.size_sets, seed=3)
        print(json.dumps(dict(tau=tau, sets=args.size_sets, size=size)), flush=True)


if __name__ == "__main__":
    main()
