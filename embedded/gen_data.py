#!/usr/bin/env python3
"""Generate the firmware's embedded dataset from the real Fashion-MNIST files.

Reads the IDX files (Debian package `dataset-fashion-mnist`, /usr/share/datasets/fashion-mnist),
reduces every 28×28 image to 14×14 by integer 2×2 average pooling, `(a + b + c + d + 2) // 4`
(round half up, exact in integers), and writes the first N_TRAIN training and N_TEST test images:

    data/train_x.bin  N_TRAIN × 196 bytes (u8 pixels, row-major)
    data/train_y.bin  N_TRAIN bytes (labels 0..9)
    data/test_x.bin   N_TEST × 196 bytes
    data/test_y.bin   N_TEST bytes

Only the Python standard library is used; the output is deterministic (same input → same bytes)
and a file is rewritten only when its content changes, so `make embedded` stays idempotent and
does not force a firmware rebuild.

Usage: gen_data.py [--src DIR] [--out DIR] [--train N] [--test N]
"""
import argparse
import gzip
import hashlib
import os
import struct
import sys

SIDE = 28
POOLED = SIDE // 2


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        data = f.read()
    got, n = struct.unpack(">II", data[:8])
    if got != magic:
        sys.exit(f"{path}: magic {got:#x}, expected {magic:#x}")
    if magic == 0x803:
        rows, cols = struct.unpack(">II", data[8:16])
        if (rows, cols) != (SIDE, SIDE) or len(data) != 16 + n * rows * cols:
            sys.exit(f"{path}: unexpected geometry or size")
        return n, data[16:]
    if len(data) != 8 + n:
        sys.exit(f"{path}: unexpected size")
    return n, data[8:]


def pool2x2(img):
    out = bytearray(POOLED * POOLED)
    for i in range(POOLED):
        r0 = 2 * i * SIDE
        r1 = r0 + SIDE
        for j in range(POOLED):
            c = 2 * j
            s = img[r0 + c] + img[r0 + c + 1] + img[r1 + c] + img[r1 + c + 1]
            out[i * POOLED + j] = (s + 2) // 4
    return bytes(out)


def subset(src, prefix, count):
    n, pixels = read_idx(os.path.join(src, f"{prefix}-images-idx3-ubyte.gz"), 0x803)
    m, labels = read_idx(os.path.join(src, f"{prefix}-labels-idx1-ubyte.gz"), 0x801)
    if n != m or count > n:
        sys.exit(f"{prefix}: {n} images, {m} labels, {count} requested")
    size = SIDE * SIDE
    x = b"".join(pool2x2(pixels[k * size:(k + 1) * size]) for k in range(count))
    return x, bytes(labels[:count])


def write_if_changed(path, data):
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return "unchanged"
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return "written"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default=os.path.join(here, "data"))
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--test", type=int, default=1000)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for prefix, name, count in (("train", "train", a.train), ("t10k", "test", a.test)):
        x, y = subset(a.src, prefix, count)
        for suffix, data in (("x", x), ("y", y)):
            path = os.path.join(a.out, f"{name}_{suffix}.bin")
            state = write_if_changed(path, data)
            digest = hashlib.sha256(data).hexdigest()[:16]
            print(f"{path}: {len(data)} bytes sha256:{digest}… ({state})")


if __name__ == "__main__":
    main()
