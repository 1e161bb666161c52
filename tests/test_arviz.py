"""ArviZ export: round trips, vector variables, the ArviZ >= 1.0 call form (a fake
``from_dict``, and arviz-base's where installed), and the input errors."""

import sys

import numpy as np
import pytest
import torch

from skcds._arviz import _groups_as_keywords, to_inference_data

N, D = 200, 3


@pytest.fixture
def az():
    return pytest.importorskip("arviz")


@pytest.fixture
def samples():
    return np.random.default_rng(0).normal(loc=[1.0, -2.0, 5.0], size=(N, D))


# --------------------------------------------------------------------------- round trips
def test_default_is_one_vector_variable_x(az, samples):
    idata = to_inference_data(samples)
    x = idata.posterior["x"]
    assert x.dims == ("chain", "draw", "x_dim_0") and x.shape == (1, N, D)
    np.testing.assert_array_equal(x.values[0], samples)
    assert "sample_stats" not in idata.groups()


def test_scalar_names_round_trip_and_summary_means(az, samples):
    log_w = np.random.default_rng(1).normal(size=N)
    lp = -0.5 * (samples**2).sum(1)
    idata = to_inference_data(samples, var_names=["a", "b", "c"], log_weights=log_w, log_density=lp)
    for j, name in enumerate("abc"):
        assert idata.posterior[name].shape == (1, N)
        np.testing.assert_array_equal(idata.posterior[name].values[0], samples[:, j])
    np.testing.assert_array_equal(idata.sample_stats["log_weight"].values[0], log_w)
    np.testing.assert_array_equal(idata.sample_stats["lp"].values[0], lp)
    summary = az.summary(idata, round_to="none")
    assert list(summary.index) == ["a", "b", "c"]
    np.testing.assert_allclose(summary["mean"].to_numpy(), samples.mean(0), rtol=1e-12)


def test_vector_variables_from_counts(az, samples):
    idata = to_inference_data(samples, var_names={"beta": 2, "sigma": 1})
    beta, sigma = idata.posterior["beta"], idata.posterior["sigma"]
    assert beta.dims == ("chain", "draw", "beta_dim_0") and beta.shape == (1, N, 2)
    assert sigma.dims == ("chain", "draw") and sigma.shape == (1, N)
    np.testing.assert_array_equal(beta.values[0], samples[:, :2])
    np.testing.assert_array_equal(sigma.values[0], samples[:, 2])
    summary = az.summary(idata, kind="stats", round_to="none")
    assert list(summary.index) == ["beta[0]", "beta[1]", "sigma"]
    np.testing.assert_allclose(summary["mean"].to_numpy(), samples.mean(0), rtol=1e-12)


def test_vector_variables_from_slices_with_labels(az, samples):
    idata = to_inference_data(
        samples,
        var_names={"sigma": slice(2, 3), "beta": slice(0, 2)},
        coords_names={"beta": ["intercept", "slope"]},
    )
    assert idata.posterior["sigma"].shape == (1, N, 1)  # a slice gives a vector
    beta = idata.posterior["beta"]
    assert list(beta.coords["beta_dim_0"].values) == ["intercept", "slope"]
    np.testing.assert_array_equal(beta.sel(beta_dim_0="slope").values[0], samples[:, 1])


def test_labels_of_the_default_variable(az, samples):
    idata = to_inference_data(samples, coords_names=["u", "v", "w"])
    np.testing.assert_array_equal(idata.posterior["x"].sel(x_dim_0="w").values[0], samples[:, 2])


def test_torch_input(az, samples):
    t = torch.from_numpy(samples).requires_grad_()
    idata = to_inference_data(t * 1.0, log_weights=torch.zeros(N))
    np.testing.assert_array_equal(idata.posterior["x"].values[0], samples)


# --------------------------------------------------------------------------- ArviZ >= 1.0
def _fake_v1(real_from_dict, calls):
    """An ArviZ-1.0-style ``from_dict(data, *, ...)`` built on the installed 0.x one."""

    def from_dict(data, *, name=None, sample_dims=None, coords=None, dims=None, attrs=None):
        calls.append({"data": data, "coords": coords, "dims": dims})
        return real_from_dict(**data, coords=coords, dims=dims)

    return from_dict


def test_arviz_1_call_form_with_a_fake(az, samples, monkeypatch):
    calls = []
    monkeypatch.setattr(az, "from_dict", _fake_v1(az.from_dict, calls))
    monkeypatch.setattr(az, "__version__", "1.3.0")
    log_w = np.zeros(N)
    idata = to_inference_data(
        samples, var_names={"beta": 2, "sigma": 1}, log_weights=log_w, log_density=log_w
    )
    (call,) = calls
    assert set(call["data"]) == {"posterior", "sample_stats"}
    assert set(call["data"]["posterior"]) == {"beta", "sigma"}
    assert set(call["data"]["sample_stats"]) == {"log_weight", "lp"}
    assert call["dims"] == {"beta": ["beta_dim_0"]}
    np.testing.assert_array_equal(idata.posterior["beta"].values[0], samples[:, :2])


def test_arviz_1_call_form_with_arviz_base(samples, monkeypatch):
    arviz_base = pytest.importorskip("arviz_base")  # the 1.x converters, where installed
    import skcds._arviz

    monkeypatch.setattr(skcds._arviz, "_import_arviz", lambda: arviz_base)
    tree = to_inference_data(samples, var_names={"beta": 2, "sigma": 1}, log_weights=np.ones(N))
    np.testing.assert_array_equal(tree["posterior"]["beta"].values[0], samples[:, :2])
    np.testing.assert_array_equal(tree["sample_stats"]["log_weight"].values[0], np.ones(N))


def _v0(posterior=None, *, sample_stats=None, coords=None, dims=None): ...


def _v1(data, *, name=None, coords=None, dims=None): ...


class _Unreadable:
    __signature__ = "not a signature"  # inspect.signature raises TypeError

    def __call__(self, *args, **kwargs): ...


@pytest.mark.parametrize(
    "from_dict, version, expected",
    [
        (_v0, "1.0.0", True),  # the signature wins over the version
        (_v1, "0.23.4", False),
        (_Unreadable(), "0.23.4", True),
        (_Unreadable(), "1.0.0rc1", False),
        (_Unreadable(), "unknown", True),
    ],
)
def test_call_form_detection(from_dict, version, expected):
    assert _groups_as_keywords(from_dict, version) is expected


def test_installed_arviz_is_detected_right(az):
    major = int(az.__version__.split(".")[0])
    assert _groups_as_keywords(az.from_dict, az.__version__) is (major < 1)


# --------------------------------------------------------------------------- errors
def test_missing_arviz_raises_with_the_install_hint(samples, monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)  # makes `import arviz` fail
    with pytest.raises(ImportError, match=r"needs ArviZ.*pip install arviz"):
        to_inference_data(samples)


@pytest.mark.parametrize(
    "var_names, error, message",
    [
        (
            ["a", "b"],
            ValueError,
            "'var_names' has 2 name(s) for the 3 column(s) of 'samples'; give one name per "
            "column, or a dict of name -> number of columns.",
        ),
        (["a", "b", "a"], ValueError, "'var_names' has repeated names: ['a', 'b', 'a']."),
        (
            {"beta": 2},
            ValueError,
            "'var_names' must cover each of the 3 column(s) of 'samples' exactly once; "
            "missing: [2], repeated: [].",
        ),
        (
            {"beta": 2, "sigma": 2},
            ValueError,
            "'var_names' needs more columns than the 3 of 'samples' (at 'sigma'); the blocks "
            "must cover the columns exactly once.",
        ),
        (
            {"a": slice(0, 2), "b": slice(1, 3)},
            ValueError,
            "'var_names' must cover each of the 3 column(s) of 'samples' exactly once; "
            "missing: [], repeated: [1].",
        ),
        (
            {"a": 0, "b": 3},
            ValueError,
            "'var_names['a']' must be a positive number of columns; got 0.",
        ),
        (
            {"a": 3.0},
            TypeError,
            "'var_names['a']' must be a number of columns or a slice; got float.",
        ),
        (
            "abc",
            TypeError,
            "'var_names' must be None, a list of names (one per column) or a dict of name -> "
            "number of columns or slice; got str.",
        ),
        (
            ["chain", "b", "c"],
            ValueError,
            "variable names must be non-empty strings other than ('chain', 'draw'); got 'chain'.",
        ),
    ],
)
def test_bad_var_names(samples, var_names, error, message):
    with pytest.raises(error) as excinfo:
        to_inference_data(samples, var_names=var_names)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"log_weights": np.zeros(N - 1)},
            f"'log_weights' must be of shape ({N},) to match 'samples'; got (199,).",
        ),
        (
            {"log_density": np.zeros((N, 1))},
            f"'log_density' must be of shape ({N},) to match 'samples'; got ({N}, 1).",
        ),
        (
            {"coords_names": ["u", "v"]},
            "'coords_names['x']' has 2 label(s) for 3 entries.",
        ),
        (
            {"var_names": ["a", "b", "c"], "coords_names": {"a": ["u"]}},
            "'coords_names' names 'a', which is not a vector variable; the vector variables "
            "are [].",
        ),
        (
            {"var_names": {"beta": 3}, "coords_names": ["u", "v", "w"]},
            "'coords_names' must be a dict of vector-variable name -> labels when 'var_names' "
            "is given; a plain sequence labels the columns of 'x' only.",
        ),
    ],
)
def test_bad_weights_and_labels(samples, kwargs, message):
    with pytest.raises(ValueError) as excinfo:
        to_inference_data(samples, **kwargs)
    assert str(excinfo.value) == message


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 2)), np.zeros((4, 0))])
def test_samples_must_be_two_dimensional_and_non_empty(bad):
    with pytest.raises(ValueError, match=r"'samples' must be of shape \(n_samples, n_features\)"):
        to_inference_data(bad)


def test_samples_must_be_numeric():
    with pytest.raises(TypeError, match="'samples' must be a real numeric array; got dtype <U1"):
        to_inference_data(np.array([["a", "b"]]))
