"""RecordIO read speed: random access + JPEG decode of 112x112 faces, focusface vs mxnet 1.9.1, one process.

focusface alone (its own venv):     python benchmarks/bench_io.py
against mxnet (mxnet venv, see tests/fixtures/mxnet/make_fixtures.py for how to make it):
                                    PYTHONPATH=. /tmp/mxvenv/bin/python benchmarks/bench_io.py
Options: --images N (records in the test rec), --index-lines N (size of the synthetic .idx to parse).

The rec is built from the LFW development sample when $FOCUSFACE_LFW_SAMPLE points at it (real 112x112
aligned JPEGs, quality 95), otherwise from synthetic images.
"""

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from focusface.images import decode_image, encode_image
from focusface.recordio import RecordReader, RecordWriter, encode_chunks, pack_record, parse_index, unpack_record

LFW = Path(os.environ.get("FOCUSFACE_LFW_SAMPLE", "/nonexistent")) / "aligned"


def source_jpegs():
    if LFW.is_dir():
        return [p.read_bytes() for p in sorted(LFW.glob("*/*.jpg"))], f"LFW sample ({LFW})"
    rng = np.random.default_rng(0)
    images = []
    for i in range(64):
        img = np.clip(rng.normal(128, 40, (112, 112, 3)), 0, 255).astype(np.uint8)
        images.append(encode_image(img, ".jpg", 95))
    return images, "synthetic noise images"


def build_rec(folder, n):
    jpegs, origin = source_jpegs()
    with RecordWriter(folder / "bench.rec", folder / "bench.idx") as writer:
        for key in range(n):
            writer.write(key, pack_record(key % 1000, jpegs[key % len(jpegs)]))
    return origin


def rate(fn, keys):
    fn(keys[:200])  # warm-up: page cache, decoder
    start = time.perf_counter()
    fn(keys)
    return len(keys) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--index-lines", type=int, default=5_822_653)
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, opencv {cv2.__version__}, one process")
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        origin = build_rec(folder, args.images)
        keys = np.random.default_rng(0).permutation(args.images)
        print(f"rec: {args.images} records of {origin}, read in random order")

        reader = RecordReader(folder / "bench.rec", folder / "bench.idx")

        def focusface_read(ks):
            for k in ks:
                _, _, payload = unpack_record(reader[int(k)])
                decode_image(payload)

        ff = rate(focusface_read, keys)
        print(f"focusface RecordReader + decode_image: {ff:8.0f} images/s")

        try:
            import mxnet as mx
        except ImportError:
            mx = None
        if mx is not None:
            mxr = mx.recordio.MXIndexedRecordIO(str(folder / "bench.idx"), str(folder / "bench.rec"), "r")

            def mxnet_read(ks):
                for k in ks:
                    _, payload = mx.recordio.unpack(mxr.read_idx(int(k)))
                    mx.image.imdecode(payload).asnumpy()

            mxv = rate(mxnet_read, keys)
            print(f"mxnet {mx.__version__} read_idx + mx.image.imdecode: {mxv:8.0f} images/s")
            print(f"focusface / mxnet: {ff / mxv:.1f}x")

        # MS1MV2-sized index: parse time, memory of the parsed arrays, and the open of a reader on it
        n = args.index_lines
        with open(folder / "big.idx", "w") as f:
            for lo in range(0, n, 500_000):
                ks = np.arange(lo, min(n, lo + 500_000))
                f.write("".join(f"{k}\t{k * 3000}\n" for k in ks.tolist()))
        with open(folder / "big.rec", "wb") as f:  # a sparse file as large as the offsets say, two real records
            f.truncate(n * 3000)
            for k in (n // 2, n - 1):
                f.seek(k * 3000)
                f.write(encode_chunks(pack_record(0, b"x" * 2000)))
        tracemalloc.start()
        start = time.perf_counter()
        parsed_keys, parsed_offsets = parse_index(folder / "big.idx")
        parse_s = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        start = time.perf_counter()
        big = RecordReader(folder / "big.rec", folder / "big.idx")
        open_s = time.perf_counter() - start
        # the same open with the index already parsed (e.g. a second reader, or a cached index)
        import focusface.recordio as fio

        real_parse = fio.parse_index
        fio.parse_index = lambda path, k=parsed_keys, o=parsed_offsets: (k.copy(), o.copy())
        start = time.perf_counter()
        RecordReader(folder / "big.rec", folder / "big.idx")
        after_parse_s = time.perf_counter() - start
        fio.parse_index = real_parse
        del parsed_keys, parsed_offsets
        start = time.perf_counter()
        big[n - 1]
        big[n // 2]
        first_read_ms = (time.perf_counter() - start) * 1000
        held = big.keys.nbytes + big.offsets.nbytes + big._ends.nbytes
        print(
            f".idx of {n} lines ({os.path.getsize(folder / 'big.idx') / 1e6:.0f} MB): parse_index {parse_s:.2f} s, "
            f"peak memory while parsing {peak / 1e6:.0f} MB (tracemalloc); RecordReader open (parse + checks) "
            f"{open_s:.2f} s, of which {after_parse_s:.2f} s once the index is parsed; arrays held by the "
            f"reader {held / 1e6:.0f} MB; two random reads right after opening {first_read_ms:.2f} ms"
        )


if __name__ == "__main__":
    main()
