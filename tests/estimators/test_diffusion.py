import io
import math
import pickle
import warnings
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from skcds import DiffusionSampler
from skcds.energies import Energy, GaussianMixture, from_log_prob
from skcds.exceptions import IncompatibleModelError

TINY = {"n_steps": 8, "max_iter": 3, "batch_size": 16}
DATA = Path(__file__).parent / "data"


def gaussian_log_prob(x):
    """N((1, -1), diag(0.5^2, 1.5^2)), normalised."""
    mean = torch.tensor([1.0, -1.0], dtype=x.dtype)
    std = torch.tensor([0.5, 1.5], dtype=x.dtype)
    z = (x - mean) / std
    return -0.5 * (z**2).sum(-1) - torch.log(std).sum() - math.log(2 * math.pi)


GAUSSIAN = from_log_prob(gaussian_log_prob, dim=2)


@pytest.fixture(scope="module")
def fitted():
    return DiffusionSampler(**TINY, random_state=0).fit(GaussianMixture.grid())


def test_fit_sets_attributes_and_history(fitted):
    assert fitted.n_iter_ == 3 and fitted.n_features_in_ == 2
    assert fitted.device_ == torch.device("cpu")
    assert set(fitted.history_[0]) == {
        "iteration",
        "loss",
        "learning_rate",
        "grad_norm",
        "n_nonfinite",
        "skipped",
        "elapsed",
    }
    assert [r["iteration"] for r in fitted.history_] == [0, 1, 2]


def test_sample_shapes_dtypes_and_log_weights(fitted):
    X, log_w = fitted.sample(7, return_log_weights=True)
    assert X.shape == (7, 2) and log_w.shape == (7,)
    assert X.dtype == np.float32 and np.isfinite(log_w).all()
    tensor = fitted.sample(4, n_steps=3, return_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (4, 2)
    assert fitted.sample(5, method="ode").shape == (5, 2)


def test_int_random_state_gives_identical_draws_and_none_advances(fitted):
    np.testing.assert_array_equal(
        fitted.sample(5, random_state=3), fitted.sample(5, random_state=3)
    )
    assert not np.array_equal(fitted.sample(5), fitted.sample(5))


def test_fit_is_deterministic_under_random_state():
    a = DiffusionSampler(**TINY, random_state=4).fit(GaussianMixture.grid())
    b = DiffusionSampler(**TINY, random_state=4).fit(GaussianMixture.grid())
    assert [r["loss"] for r in a.history_] == [r["loss"] for r in b.history_]
    np.testing.assert_array_equal(a.sample(3, random_state=0), b.sample(3, random_state=0))


def test_training_does_not_touch_the_global_rng():
    state = torch.random.get_rng_state()
    DiffusionSampler(**TINY, random_state=0).fit(GaussianMixture.grid()).sample(3)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_energy_from_constructor_and_clone():
    sampler = DiffusionSampler(GaussianMixture.grid(), **TINY, random_state=0)
    assert clone(sampler).fit().n_iter_ == 3


def test_warm_start_continues_and_callbacks_see_every_row():
    rows = []
    sampler = DiffusionSampler(
        **TINY,
        random_state=0,
        warm_start=True,
        callbacks=[lambda est, row: rows.append(row["iteration"])],
    )
    sampler.fit(GaussianMixture.grid()).fit(GaussianMixture.grid())
    assert sampler.n_iter_ == 6 and rows == list(range(6))


def test_kl_loss_trains():
    sampler = DiffusionSampler(**TINY, loss="kl", random_state=0).fit(GaussianMixture.grid())
    assert not any(r["skipped"] for r in sampler.history_)


@pytest.mark.parametrize("reference", ["ou", "brownian"])
@pytest.mark.parametrize("loss", ["kl", "log_variance"])
def test_baselines_pis_and_dds_train_and_give_valid_weights(reference, loss):
    """PIS ('brownian') and DDS ('ou') with either loss: the score-type control, the
    process's own horizon, finite log-weights whose ELBO stays below the known log Z = 0."""
    sampler = DiffusionSampler(**TINY, reference=reference, loss=loss, random_state=0)
    sampler.fit(GAUSSIAN)
    assert sampler.control_.langevin == "score"
    assert not any(r["skipped"] for r in sampler.history_)
    x, log_w = sampler.sample(4000, random_state=0, return_log_weights=True)
    assert x.shape == (4000, 2) and np.isfinite(log_w).all()
    est = sampler.estimate_log_normalizer(4000, random_state=1)
    assert est.elbo < 3 * est.elbo_stderr
    with pytest.raises(ValueError, match=f"method='ode' needs reference='vp'.*{reference!r}"):
        sampler.sample(3, method="ode")


def test_pis_starts_every_path_at_the_origin():
    sampler = DiffusionSampler(**TINY, reference="brownian", random_state=0).fit(GAUSSIAN)
    assert sampler.reference_.terminal_time == 5.0
    assert torch.count_nonzero(sampler._prior(5)) == 0


@pytest.mark.filterwarnings("ignore::skcds.exceptions.UnreliableWeightsWarning")  # tiny models
def test_estimate_log_normalizer_and_score(fitted):
    est = fitted.estimate_log_normalizer(500, random_state=0)
    assert 0 < est.ess <= 1 and est.stderr > 0 and est.elbo <= est.log_z
    assert fitted.score() == fitted.score()  # fixed random_state: comparable across models
    assert fitted.score() == pytest.approx(
        fitted.estimate_log_normalizer(4096, random_state=0).elbo
    )


def test_not_fitted():
    with pytest.raises(NotFittedError):
        DiffusionSampler().sample(3)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"loss": "log_varaince"},
            "The 'loss' parameter of DiffusionSampler must be one of ['kl', 'log_variance']. "
            "Got 'log_varaince' instead. Did you mean 'log_variance'?",
        ),
        (
            {"n_steps": 0},
            "The 'n_steps' parameter of DiffusionSampler must be an int >= 1. Got 0 instead.",
        ),
        (
            {"learning_rate": -1.0},
            "The 'learning_rate' parameter of DiffusionSampler must be a float in (0, 1]. "
            "Got -1.0 instead.",
        ),
        (
            {"batch_size": 1},
            "The 'batch_size' parameter of DiffusionSampler must be an int >= 2. Got 1 instead.",
        ),
        (
            {"max_iter": 2.5},
            "The 'max_iter' parameter of DiffusionSampler must be an int >= 1. Got 2.5 instead.",
        ),
        (
            {"device": "gpu"},
            "The 'device' parameter of DiffusionSampler must be 'auto' or a torch device such "
            "as 'cpu' or 'cuda:0'. Got 'gpu' instead.",
        ),
        (
            {"random_state": "seed"},
            "The 'random_state' parameter of DiffusionSampler must be None, an int in "
            "[0, 2**32) or a RandomState. Got 'seed' instead.",
        ),
        (
            {"callbacks": [1]},
            "The 'callbacks' parameter of DiffusionSampler must be None or a list of "
            "callables. Got [1] instead.",
        ),
        (
            {"reference": "pis"},
            "The 'reference' parameter of DiffusionSampler must be one of ['brownian', 'ou', "
            "'vp']. Got 'pis' instead.",
        ),
        (
            {"execution": "graph"},
            "The 'execution' parameter of DiffusionSampler must be one of ['auto', 'cuda_graph', "
            "'eager']. Got 'graph' instead. Did you mean 'cuda_graph'?",
        ),
    ],
)
def test_invalid_parameters_have_whole_messages(params, message):
    with pytest.raises(ValueError) as error:
        DiffusionSampler(**{**TINY, **params}).fit(GaussianMixture.grid())
    assert str(error.value) == message


def test_array_as_energy_is_a_type_error():
    with pytest.raises(TypeError) as error:
        DiffusionSampler(**TINY).fit(np.zeros((10, 2)))
    assert str(error.value) == (
        "DiffusionSampler.fit expects an skcds.energies.Energy as 'energy'; got an array-like "
        "(ndarray). Wrap a log-density with skcds.energies.from_log_prob(fn, dim) or an energy "
        "with from_energy(fn, dim)."
    )


def test_missing_energy_is_explained():
    with pytest.raises(ValueError, match=r"^DiffusionSampler.fit needs an energy: call fit"):
        DiffusionSampler(**TINY).fit()


def test_bad_sampling_arguments(fitted):
    with pytest.raises(ValueError) as error:
        fitted.sample(0)
    assert str(error.value) == "'n_samples' must be an int >= 1; got 0."
    with pytest.raises(ValueError) as error:
        fitted.sample(3, method="euler")
    assert str(error.value) == "'method' must be one of ['ode', 'sde']; got 'euler'."


def test_joblib_round_trip_keeps_samples_and_can_continue(fitted, tmp_path):
    joblib.dump(fitted, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(
        loaded.sample(5, random_state=1), fitted.sample(5, random_state=1)
    )
    loaded.set_params(warm_start=True).fit(GaussianMixture.grid())
    assert loaded.n_iter_ == 6


def test_cuda_trained_model_loads_on_cpu():
    """A model trained on an H100 (CUDA graph, tests/estimators/data) loads and samples on CPU."""
    loaded = joblib.load(DATA / "dis_cuda_0.1.0.dev0.joblib")
    assert loaded.device_ == torch.device("cpu") or torch.cuda.is_available()
    assert np.isfinite(loaded.sample(10, random_state=0)).all()


def test_foreign_version_is_refused(fitted):
    state = fitted.__getstate__()
    state["_skcds_version"] = "9.9.0"
    payload = pickle.dumps(state)
    clone_ = DiffusionSampler.__new__(DiffusionSampler)
    with pytest.raises(IncompatibleModelError) as error:
        clone_.__setstate__(pickle.loads(payload))
    assert "was saved by skcds 9.9.0" in str(error.value)


def test_pickle_of_unfitted_estimator(tmp_path):
    buffer = io.BytesIO()
    joblib.dump(DiffusionSampler(**TINY), buffer)
    buffer.seek(0)
    assert joblib.load(buffer).get_params()["n_steps"] == 8


def _half_plane_log_prob(x):
    """A standard normal restricted to x_0 < 0 (zero density, -inf, elsewhere)."""
    inside = -0.5 * (x**2).sum(-1)
    return torch.where(x[:, 0] < 0, inside, torch.full_like(inside, -math.inf))


class _NaNScoreOnHalfPlane(Energy):
    """A standard normal whose score is NaN for x_0 > 0: a trajectory that meets it dies,
    and its weight is non-finite."""

    def __init__(self) -> None:
        super().__init__()
        self.dim = 2

    def _log_prob(self, x):
        return -0.5 * (x**2).sum(-1)

    def _grad_log_prob(self, x):
        return torch.where(x[:, :1] > 0, torch.nan, -x)


def test_frequent_nonfinite_weights_warn_once_and_training_goes_on():
    from skcds.exceptions import NonFiniteWarning

    sampler = DiffusionSampler(n_steps=8, max_iter=12, batch_size=64, random_state=0)
    with pytest.warns(NonFiniteWarning, match=r"% of the samples of the last 10 iterations"):
        sampler.fit(_NaNScoreOnHalfPlane())
    assert sampler.n_iter_ == 12 and sum(r["n_nonfinite"] for r in sampler.history_) > 0
    assert all(torch.isfinite(p).all() for p in sampler.control_.parameters())


def test_zero_density_draws_stay_in_the_loss():
    """A log-density of -inf (zero density) is not a failure: those draws train with a
    stand-in density below the batch's (skcds._core.losses.floor_zero_density)."""
    sampler = DiffusionSampler(n_steps=8, max_iter=12, batch_size=64, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sampler.fit(from_log_prob(_half_plane_log_prob, dim=2))
    assert sum(r["n_nonfinite"] for r in sampler.history_) == 0


def test_nothing_finite_is_a_clear_error_and_no_update_is_taken():
    from skcds.exceptions import EnergyError

    point = from_log_prob(  # finite only on a sliver the sampler never hits
        lambda x: torch.where(
            x[:, 0].abs() < 1e-9, -0.5 * (x**2).sum(-1), torch.full_like(x[:, 0], -math.inf)
        ),
        dim=2,
    )
    sampler = DiffusionSampler(n_steps=8, max_iter=5, batch_size=32, random_state=0)
    with pytest.raises(EnergyError, match="all 32 samples of iteration 0 were non-finite"):
        sampler.fit(point)
    assert sampler.n_iter_ == 0 and sampler.history_ == []


@pytest.mark.parametrize(
    "log_prob",
    [
        lambda x: x.sum(-1),  # grows: not normalizable
        lambda x: 0.0 * x.sum(-1),  # flat
        lambda x: 0.5 * (x**2).sum(-1),  # an energy passed as a log-density (sign error)
    ],
    ids=["growing", "flat", "sign-error"],
)
def test_an_obviously_improper_density_gets_a_warning(log_prob):
    from skcds.exceptions import ImproperDensityWarning

    with pytest.warns(ImproperDensityWarning, match="does not decay.*Check the sign"):
        DiffusionSampler(**TINY, random_state=0).fit(from_log_prob(log_prob, dim=2))


def test_proper_densities_get_no_improper_warning():
    # filterwarnings=error: any warning would fail these fits
    DiffusionSampler(**TINY, random_state=0).fit(GAUSSIAN)
    DiffusionSampler(**TINY, random_state=0).fit(GaussianMixture.grid())


@pytest.mark.parametrize("method", ["sde", "ode"])
def test_independent_mh_on_path_and_map_weights(fitted, method):
    """``imh_steps`` with the SDE's path weights (valid on paths, so on their end points) and
    with the ODE's change-of-variables weights: samples of the right shape, reproducible,
    and different from the uncorrected draws."""
    raw = fitted.sample(200, random_state=0, method=method)
    corrected = fitted.sample(200, random_state=0, method=method, imh_steps=3)
    assert corrected.shape == raw.shape and np.isfinite(corrected).all()
    assert not np.array_equal(corrected, raw)
    again = fitted.sample(200, random_state=0, method=method, imh_steps=3)
    np.testing.assert_array_equal(corrected, again)
