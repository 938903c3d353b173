"""Inputs as users have them (``nitrod_rs.models``' rules): every dtype, list and layout gives
the predictions of the uint8 path after the documented conversion; everything else is an error
that says which conversion to use; N x H x W x C is transposed with one note; one image is one
sample."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nitrod_rs
from nitrod_rs import CNN, MLP, _checks

RNG = np.random.default_rng(11)
# Structured enough that the trained models' predictions differ between images.
X_MLP = RNG.integers(0, 256, size=(192, 12, 12), dtype=np.uint8)
Y_MLP = (X_MLP.reshape(192, -1).mean(axis=1) > 127).astype(np.int64) + 2 * (X_MLP[:, 0, 0] > 127)
X_CNN = RNG.integers(0, 256, size=(96, 3, 8, 8), dtype=np.uint8)
Y_CNN = (X_CNN[:, 0].reshape(96, -1).mean(axis=1) > 127).astype(np.int64)


@pytest.fixture(scope="module")
def mlp() -> MLP:
    m = MLP([144, 24, 4], seed=3)
    m.fit(X_MLP, Y_MLP, epochs=2, batch_size=32, lr_inv=64, lr_amp_factor=8, progress=False)
    return m


@pytest.fixture(scope="module")
def cnn() -> CNN:
    m = CNN([4, "M"], [8], input_shape=(3, 8, 8), classes=2, seed=1)
    m.fit(X_CNN, Y_CNN, epochs=1, batch_size=32, lr_inv=64, lr_amp_factor=8, progress=False)
    return m


@pytest.fixture(autouse=True)
def fresh_notes():  # type: ignore[no-untyped-def]
    """Each test sees the once-per-process layout note afresh."""
    _checks._NOTED.clear()
    yield
    _checks._NOTED.clear()


# -- the conversions, against the uint8 path -----------------------------------------------------


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def _strided(a: np.ndarray) -> np.ndarray:
    """``a`` as a view with a step of 2 along every axis (not contiguous)."""
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    return big[tuple(slice(None, None, 2) for _ in a.shape)]


#: Each form of the same pixels: name -> (convert, needs the image maximum above 1).
FORMS = {
    "uint8": (lambda a: a, False),
    "float32 in [0, 1]": (lambda a: a.astype(np.float32) / np.float32(255), False),
    "float64 in [0, 1]": (lambda a: a / 255.0, False),
    "float16 in [0, 1]": (lambda a: (a / 255.0).astype(np.float16), False),
    "float32 in [0, 255]": (lambda a: a.astype(np.float32), True),
    "float64 in [0, 255], off by < 0.5": (lambda a: a + 0.49 * (a < 255) - 0.49 * (a > 0), True),
    "int16": (lambda a: a.astype(np.int16), False),
    "int32 big-endian": (lambda a: a.astype(">i4"), False),
    "int64": (lambda a: a.astype(np.int64), False),
    "uint16": (lambda a: a.astype(np.uint16), False),
    "uint64": (lambda a: a.astype(np.uint64), False),
    "list": (lambda a: a.tolist(), False),
    "Fortran order": (np.asfortranarray, False),
    "strided": (_strided, False),
    "reversed twice": (lambda a: a[::-1][::-1], False),
    "negative strides": (lambda a: np.flip(np.flip(a, -1).copy(), -1), False),
    "read-only": (_readonly, False),
}


def _images(shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """Batches of uint8 images of ``shape`` (one sample's), 1..6 of them."""
    return st.integers(1, 6).flatmap(lambda n: st.builds(
        lambda seed, low, high: np.random.default_rng(seed).integers(
            low, max(low, high) + 1, size=(n, *shape), dtype=np.uint8),
        st.integers(0, 2**32 - 1), st.integers(0, 255), st.integers(0, 255)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=_images((12, 12)), form=st.sampled_from(sorted(FORMS)))
def test_every_form_predicts_as_the_uint8_path_mlp(mlp, x, form):  # type: ignore[no-untyped-def]
    convert, needs_high = FORMS[form]
    assume(not needs_high or x.max() > 1)
    want = mlp.predict_scores(x)
    np.testing.assert_array_equal(mlp.predict_scores(convert(x)), want)
    np.testing.assert_array_equal(mlp.predict(convert(x)), want.argmax(axis=1))
    # Rows and N x H x W x 1 are the same samples.
    np.testing.assert_array_equal(mlp.predict_scores(convert(x.reshape(len(x), -1))), want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(mlp.predict_scores(convert(x[..., None])), want)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=_images((3, 8, 8)), form=st.sampled_from(sorted(FORMS)), nhwc=st.booleans())
def test_every_form_predicts_as_the_uint8_path_cnn(cnn, x, form, nhwc):  # type: ignore[no-untyped-def]
    convert, needs_high = FORMS[form]
    assume(not needs_high or x.max() > 1)
    want = cnn.predict_scores(x)
    given_x = convert(x.transpose(0, 2, 3, 1) if nhwc else x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(cnn.predict_scores(given_x), want)
        np.testing.assert_array_equal(cnn.evaluate(given_x, Y_CNN[:len(x)])["correct"],
                                      int((want.argmax(axis=1) == Y_CNN[:len(x)]).sum()))


def test_float_images_train_to_the_same_bits_as_uint8():
    """fit on [0, 1] floats fits the same statistics and trains the same weights."""
    runs = []
    for x in (X_MLP, X_MLP / 255.0, X_MLP.astype(np.int32).tolist()):
        m = MLP([144, 16, 4], seed=5)
        m.fit(x, Y_MLP.astype(np.uint8), epochs=2, batch_size=32, lr_inv=64, lr_amp_factor=8,
              validation_data=[x, list(Y_MLP)], progress=False)
        runs.append((m.normalization, m.state_dict(), m.history["val_correct"]))
    for stats, state, val in runs[1:]:
        assert stats == runs[0][0] and val == runs[0][2]
        for k, v in state.items():
            np.testing.assert_array_equal(v, runs[0][1][k])


def test_float_rule_is_round_half_to_even_of_x_times_255():
    m = MLP([4, 2], seed=0)
    rows, _ = _checks.mlp_images(np.array([[0.0, 0.5 / 255, 1.5 / 255, 1.0]]), "x", 4)
    assert rows.dtype == np.uint8 and rows.tolist() == [[0, 0, 2, 255]]
    rows, _ = _checks.mlp_images(np.array([[0.0, 2.5, 3.5, 255.0]]), "x", 4)
    assert rows.tolist() == [[0, 2, 4, 255]]
    # int8 is already normalised: used as it is (no statistics needed).
    x8 = np.array([[-128, -1, 0, 127]], np.int8)
    assert m.predict_scores(x8).shape == (1, 2)


def test_int8_and_uint8_are_zero_copy_and_other_layouts_copy_only_when_needed():
    x = np.zeros((3, 4, 4), np.uint8)
    rows, _ = _checks.mlp_images(x, "x", 16)
    assert np.shares_memory(rows, x)
    x8 = np.zeros((3, 16), np.int8)
    assert np.shares_memory(_checks.mlp_images(x8, "x", 16)[0], x8)
    ro = _readonly(x)
    assert np.shares_memory(_checks.mlp_images(ro, "x", 16)[0], ro)
    f = np.asfortranarray(np.zeros((3, 16), np.uint8))
    rows = _checks.mlp_images(f, "x", 16)[0]
    assert rows.flags.c_contiguous and not np.shares_memory(rows, f)


# -- errors that say how to fix the input --------------------------------------------------------


@pytest.mark.parametrize("x,exc,words", [
    (np.full((2, 144), np.nan), ValueError, r"NaN or infinite .*np.nan_to_num"),
    (np.full((2, 144), np.inf, np.float32), ValueError, "NaN or infinite"),
    (np.full((2, 144), -0.5), ValueError, r"float values in \[-0.5, -0.5\].*astype\(np.int8\)"),
    (np.full((2, 144), 256.0), ValueError, r"\[0, 1\].*\[0, 255\]"),
    (np.full((2, 144), 300, np.int16), ValueError, "must lie in 0..255"),
    (np.full((2, 144), -5, np.int64), ValueError, r"astype\(np.int8\)"),
    (np.zeros((2, 144), bool), TypeError, r"astype\(np.uint8\) \* 255"),
    (np.zeros((2, 144), np.complex64), TypeError, "uint8 pixels"),
    (np.array([["a"] * 144] * 2), TypeError, "uint8 pixels"),
    ([["a"] * 144] * 2, TypeError, "not numbers"),
    ([[0] * 144, [0] * 3], TypeError, "cannot be read as images"),
    (np.ma.masked_equal(np.zeros((2, 144), np.uint8), 0), TypeError, r"filled\(0\)"),
    (None, TypeError, "numpy array"),
    ("pixels", TypeError, "numpy array"),
    (np.zeros(144, np.uint8), ValueError, r"reshape\(1, -1\)"),
    (np.zeros((2, 100), np.uint8), ValueError, "expects 144"),
    (np.zeros((0, 144), np.uint8), ValueError, "empty"),
])
def test_bad_images_say_how_to_fix_them(mlp, x, exc, words):  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=words):
        mlp.fit(x, [0, 1], epochs=1, progress=False)
    if not (isinstance(x, np.ndarray) and x.ndim == 1):
        with pytest.raises(exc, match=words):
            mlp.predict(x)


def test_one_sample_in_fit_says_how_to_add_the_sample_axis(mlp):  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"one sample: add the sample axis, y?x\[None\]"):
        mlp.evaluate(X_MLP[0], [0])


@pytest.mark.parametrize("y,exc,words", [
    (np.zeros(192, np.float64), TypeError, r"astype\(np.int64\)"),
    (np.zeros(192, bool), TypeError, "integer dtype"),
    (np.eye(4, dtype=np.int64)[Y_MLP], ValueError, r"one-hot: pass y.argmax\(axis=1\)"),
    (np.full(192, 4), ValueError, "0..3"),
    (np.zeros(5, np.int64), ValueError, "5 labels but there are 192 samples"),
])
def test_bad_labels_say_how_to_fix_them(y, exc, words):  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=words):
        MLP([144, 4]).fit(X_MLP, y, epochs=1, progress=False)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32,
                                   np.int64, np.uint64, ">i8"])
def test_labels_of_any_integer_dtype_list_or_column(dtype):  # type: ignore[no-untyped-def]
    states = []
    for y in (Y_MLP.astype(dtype), Y_MLP.astype(dtype).reshape(-1, 1), Y_MLP.tolist()):
        m = MLP([144, 8, 4], seed=0)
        m.fit(X_MLP, y, epochs=1, batch_size=64, progress=False)
        states.append(m.state_dict()["linear_01"])
        assert m.evaluate(X_MLP, y)["total"] == 192
    for s in states[1:]:
        np.testing.assert_array_equal(s, states[0])


# -- layouts --------------------------------------------------------------------------------------


def test_cnn_nhwc_is_transposed_with_one_note(cnn):  # type: ignore[no-untyped-def]
    nhwc = X_CNN.transpose(0, 2, 3, 1)
    with pytest.warns(UserWarning, match=r"N x H x W x C .*transpose\(0, 3, 1, 2\)"):
        got = cnn.predict(nhwc)
    np.testing.assert_array_equal(got, cnn.predict(X_CNN))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the note is given once per process
        np.testing.assert_array_equal(cnn.predict(nhwc), got)


def test_cnn_rejects_other_layouts_with_the_expected_shape(cnn):  # type: ignore[no-untyped-def]
    for bad in (X_CNN.transpose(0, 2, 1, 3), X_CNN[:, :1], X_CNN.reshape(96, -1)):
        with pytest.raises(ValueError, match=r"\(3, 8, 8\).*N x H x W x C"):
            cnn.predict(bad)


def test_mlp_nhwc_rgb_reads_channels_by_the_statistics():
    """A 3-channel MLP (statistics per channel) given N x H x W x C gets the same rows as from
    N x C x H x W, never channels read as rows."""
    x = RNG.integers(0, 256, size=(64, 3, 6, 6), dtype=np.uint8)
    x[:, 1] //= 4  # channels with different statistics
    y = RNG.integers(0, 3, size=64)
    m = MLP([108, 8, 3], seed=0)
    m.fit(x, y, epochs=1, batch_size=32, progress=False)
    assert len(m.normalization[0]) == 3
    want = m.predict_scores(x)
    with pytest.warns(UserWarning, match="N x H x W x C"):
        np.testing.assert_array_equal(m.predict_scores(x.transpose(0, 2, 3, 1)), want)
    # Without statistics, int8 N x H x W x 3 is recognised by its last axis.
    x8 = (x.astype(np.int16) - 128).astype(np.int8)
    np.testing.assert_array_equal(m.predict_scores(x8.transpose(0, 2, 3, 1)),
                                  m.predict_scores(x8))


def test_mlp_n_h_w_and_n_h_w_1_flatten(mlp):  # type: ignore[no-untyped-def]
    want = mlp.predict(X_MLP.reshape(192, -1))
    np.testing.assert_array_equal(mlp.predict(X_MLP), want)
    np.testing.assert_array_equal(mlp.predict(X_MLP[:, None]), want)
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(mlp.predict(X_MLP[..., None]), want)


def test_single_image_is_one_sample(mlp, cnn):  # type: ignore[no-untyped-def]
    for one in (X_MLP[0], X_MLP[0].ravel(), X_MLP[0][None], X_MLP[0] / 255.0):
        got = mlp.predict(one)
        assert got.shape == (1,) and got[0] == mlp.predict(X_MLP[:1])[0]
        assert mlp.predict_scores(one).shape == (1, 4)
    c0 = X_CNN[0]
    assert cnn.predict(c0).shape == (1,)
    with pytest.warns(UserWarning):
        assert cnn.predict(c0.transpose(1, 2, 0)).tolist() == cnn.predict(c0).tolist()
    gray = CNN([2], [4], input_shape=(1, 6, 6), classes=2)
    gray._m.set_normalization(([0], [64]))
    img = np.zeros((6, 6), np.uint8)
    assert gray.predict(img).shape == (1,)
    assert gray.predict(np.zeros((5, 6, 6), np.uint8)).shape == (5,)


def test_validation_and_test_data_take_the_same_forms():
    x, y = X_MLP, Y_MLP
    m = MLP([144, 4], seed=0)
    h = m.fit(x, y, epochs=1, batch_size=64, progress=False,
              validation_data=(x / 255.0, y.astype(np.int8)), test_data=[x.tolist(), y.tolist()])
    e = h.epochs[0]
    assert e["val_correct"] == e["test_correct"] == m.evaluate(x, y)["correct"]


def test_public_names_unchanged():
    assert nitrod_rs.MLP is MLP and nitrod_rs.CNN is CNN
