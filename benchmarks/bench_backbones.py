"""Backbone speed on this machine: tiny forward+backward (batch 32) and r18/r50/r100 forward throughput.

Run: python benchmarks/bench_backbones.py [--threads N]
"""

import argparse
import platform
import time

import torch

from focusface.model import FocusFace


def timeit(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}")

    model = FocusFace("tiny", num_classes=1000).train()
    images, labels = torch.rand(32, 3, 112, 112) * 2 - 1, torch.randint(0, 1000, (32,))

    def step():
        model.zero_grad(set_to_none=True)
        out = model(images)
        loss = torch.nn.functional.cross_entropy(model.identity_classifier(out.identity_embedding, labels), labels)
        (loss + out.mask_logits.mean()).backward()

    best, median = timeit(step, 10)
    print(f"tiny  forward+backward, batch 32: best {best * 1000:.0f} ms, median {median * 1000:.0f} ms")

    for name, batch in (("tiny", 64), ("r18", 16), ("r50", 16), ("r100", 16)):
        model = FocusFace(name).eval()
        images = torch.rand(batch, 3, 112, 112) * 2 - 1
        with torch.inference_mode():
            best, median = timeit(lambda: model(images), 3)
        print(f"{name:>5} forward, batch {batch}: {batch / median:7.1f} images/s (median of 3)")


if __name__ == "__main__":
    main()
