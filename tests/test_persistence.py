"""skcds.save / skcds.load: round trips, and files that must be refused without running."""

import os
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

import skcds
from skcds import (
    BayesianLogisticRegression,
    ConsistentDistiller,
    DiffusionSampler,
    SelfConsistentSampler,
)
from skcds.energies import Funnel, GaussianMixture, from_log_prob
from skcds.exceptions import IncompatibleModelError

TINY = {"n_steps": 8, "max_iter": 6, "batch_size": 16, "random_state": 0}
ENERGY = GaussianMixture.grid()


@pytest.fixture(scope="module")
def samplers():
    dis = DiffusionSampler(**TINY).fit(ENERGY)
    return {
        "dis": dis,
        "scds": SelfConsistentSampler(**TINY).fit(ENERGY),
        "cdds": ConsistentDistiller(dis, n_intervals=4, max_iter=6, batch_size=16).fit(ENERGY),
    }


@pytest.mark.parametrize("name", ["dis", "scds", "cdds"])
def test_fitted_samplers_round_trip_and_continue_training(samplers, name, tmp_path):
    sampler = samplers[name]
    skcds.save(sampler, tmp_path / "model")
    loaded = skcds.load(tmp_path / "model")
    assert (
        type(loaded) is type(sampler) and loaded.get_params().keys() == sampler.get_params().keys()
    )
    np.testing.assert_array_equal(
        loaded.sample(7, random_state=1), sampler.sample(7, random_state=1)
    )
    assert loaded.history_ == sampler.history_
    loaded.set_params(warm_start=True, max_iter=2).fit(ENERGY)
    assert loaded.n_iter_ == sampler.n_iter_ + 2


def test_unfitted_estimator_and_its_energy_round_trip(tmp_path):
    skcds.save(DiffusionSampler(Funnel(dim=4), n_steps=16), tmp_path / "m")
    loaded = skcds.load(tmp_path / "m")
    assert loaded.n_steps == 16 and loaded.energy.get_params() == {"dim": 4, "scale": 3.0}
    assert not hasattr(loaded, "n_iter_")


def test_classifier_with_string_labels_round_trips(tmp_path):
    X, y = make_classification(n_samples=40, n_features=3, n_redundant=0, random_state=0)
    sampler = SelfConsistentSampler(n_steps=4, max_iter=5, batch_size=16)
    clf = BayesianLogisticRegression(sampler, n_posterior_samples=20, random_state=0)
    clf.fit(X, np.array(["neg", "pos"])[y])
    skcds.save(clf, tmp_path / "clf")
    loaded = skcds.load(tmp_path / "clf")
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X))


def test_user_defined_energy_is_given_back_at_loading(tmp_path):
    energy = from_log_prob(lambda x: -0.5 * x.square().sum(-1), dim=2)
    sampler = DiffusionSampler(**TINY).fit(energy)
    skcds.save(sampler, tmp_path / "m")
    with pytest.raises(ValueError, match=r"user-defined energy.*skcds.load\(path, energy=...\)"):
        skcds.load(tmp_path / "m")
    loaded = skcds.load(tmp_path / "m", energy=energy)
    np.testing.assert_array_equal(
        loaded.sample(3, random_state=0), sampler.sample(3, random_state=0)
    )


def test_what_is_not_data_is_refused_at_saving(tmp_path):
    with pytest.raises(TypeError, match="stores skcds estimators"):
        skcds.save(torch.nn.Linear(2, 2), tmp_path / "m")
    with pytest.raises(TypeError, match="cannot store 'callbacks'"):
        skcds.save(DiffusionSampler(callbacks=[print]), tmp_path / "m")


class _Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_pickle_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": "skcds-model", "estimator": _Payload(str(marker))}, tmp_path / "evil")
    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump(_Payload(str(marker)), handle)
    for name in ("evil", "evil.pkl"):
        with pytest.raises(IncompatibleModelError, match="a pickle with code is refused"):
            skcds.load(tmp_path / name)
    assert not marker.exists()


def test_corrupt_truncated_and_foreign_files_get_clear_errors(samplers, tmp_path):
    skcds.save(samplers["dis"], tmp_path / "good")
    data = (tmp_path / "good").read_bytes()
    (tmp_path / "truncated").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage").write_bytes(os.urandom(256))
    joblib.dump(samplers["dis"], tmp_path / "joblib")
    for name in ("truncated", "garbage", "joblib"):
        with pytest.raises(IncompatibleModelError, match="not a loadable skcds model file"):
            skcds.load(tmp_path / name)
    torch.save(samplers["dis"].control_.state_dict(), tmp_path / "state_dict")
    with pytest.raises(IncompatibleModelError, match="no 'skcds-model' header"):
        skcds.load(tmp_path / "state_dict")
    with pytest.raises(FileNotFoundError):
        skcds.load(tmp_path / "missing")


def test_another_skcds_version_is_refused(samplers, tmp_path):
    skcds.save(samplers["dis"], tmp_path / "m")
    payload = torch.load(tmp_path / "m", weights_only=True)
    payload["skcds_version"] = "0.0.1"
    torch.save(payload, tmp_path / "old")
    with pytest.raises(IncompatibleModelError, match="saved by skcds 0.0.1"):
        skcds.load(tmp_path / "old")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_trained_model_loads_on_cpu(tmp_path):
    sampler = DiffusionSampler(**TINY, device="cuda").fit(ENERGY)
    skcds.save(sampler, tmp_path / "m")
    assert skcds.load(tmp_path / "m").sample(3).shape == (3, 2)


def test_a_float64_model_round_trips_without_rounding(tmp_path):
    """skcds.load rebuilt networks in float32 and rounded a float64 model's weights."""
    from skcds import DiffusionSampler
    from skcds.energies import GaussianMixture

    sampler = DiffusionSampler(n_steps=8, max_iter=3, batch_size=16, dtype="float64")
    sampler.set_params(random_state=0).fit(GaussianMixture.grid())
    skcds.save(sampler, tmp_path / "model.skcds")
    loaded = skcds.load(tmp_path / "model.skcds")
    for a, b in zip(loaded.control_.parameters(), sampler.control_.parameters(), strict=True):
        assert a.dtype == torch.float64 and torch.equal(a, b)
