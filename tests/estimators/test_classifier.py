import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcds import BayesianLogisticRegression, DiffusionSampler, SelfConsistentSampler

# LogisticRegression scores 0.958 on it (training and 3-fold CV)
X, Y = make_classification(
    n_samples=120, n_features=4, n_informative=2, n_redundant=0, class_sep=2.0, random_state=1
)
SAMPLER = SelfConsistentSampler(n_steps=8, max_iter=60, batch_size=64)


@pytest.fixture(scope="module")
def fitted():
    return BayesianLogisticRegression(SAMPLER, n_posterior_samples=300, random_state=0).fit(X, Y)


def test_fit_predict_and_attributes(fitted):
    proba = fitted.predict_proba(X)
    assert proba.shape == (120, 2) and np.allclose(proba.sum(1), 1.0)
    assert fitted.posterior_samples_.shape == (300, 5)  # intercept + 4 weights
    assert fitted.coef_.shape == (1, 4) and fitted.intercept_.shape == (1,)
    assert fitted.score(X, Y) >= 0.9
    assert SAMPLER.__dict__.get("n_iter_") is None  # the given sampler is cloned, not fitted


def test_posterior_mean_points_like_the_maximum_likelihood_fit(fitted):
    reference = LogisticRegression(C=1.0).fit(X, Y).coef_[0]
    cosine = (
        fitted.coef_[0] @ reference / np.linalg.norm(fitted.coef_[0]) / np.linalg.norm(reference)
    )
    assert cosine > 0.9


@pytest.mark.parametrize(
    "labels", [np.array(["no", "yes"]), np.array([-1, 1]), np.array([False, True])]
)
def test_binary_labels_of_any_type(labels):
    y = labels[Y]
    clf = BayesianLogisticRegression(SAMPLER, n_posterior_samples=50, random_state=0).fit(X, y)
    assert list(clf.classes_) == list(labels)
    assert set(clf.predict(X)) <= set(labels)


def test_multiclass_and_foreign_samplers_are_refused():
    with pytest.raises(ValueError, match="Only binary classification is supported.*got 3 classes"):
        BayesianLogisticRegression(SAMPLER).fit(X, Y + (X[:, 0] > 1))
    with pytest.raises(TypeError, match="'sampler' must be an skcds sampler.*LogisticRegression"):
        BayesianLogisticRegression(LogisticRegression()).fit(X, Y)


def test_pipeline_cross_validation_and_grid_search():
    pipe = make_pipeline(
        StandardScaler(),
        BayesianLogisticRegression(SAMPLER, n_posterior_samples=100, random_state=0),
    )
    assert cross_val_score(pipe, X, Y, cv=3).mean() >= 0.9
    grid = GridSearchCV(pipe, {"bayesianlogisticregression__prior_scale": [0.3, 3.0]}, cv=2)
    grid.fit(X, Y)
    assert grid.best_params_["bayesianlogisticregression__prior_scale"] in (0.3, 3.0)
    assert grid.score(X, Y) >= 0.9


def test_any_skcds_sampler_and_nested_params():
    dis = DiffusionSampler(n_steps=8, max_iter=20, batch_size=32)
    clf = BayesianLogisticRegression(dis, n_posterior_samples=50, random_state=1)
    clf.set_params(sampler__max_iter=10)
    assert clone(clf).get_params()["sampler__max_iter"] == 10
    clf.fit(X, Y)
    assert clf.sampler_.n_iter_ == 10 and clf.sampler_.random_state == 1


def test_joblib_round_trip_of_a_pipeline_carries_the_version(tmp_path):

    import joblib

    from skcds.exceptions import IncompatibleModelError

    pipe = make_pipeline(
        StandardScaler(),
        BayesianLogisticRegression(SAMPLER, n_posterior_samples=50, random_state=0),
    ).fit(X, Y)
    joblib.dump(pipe, tmp_path / "pipe.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "pipe.joblib").predict(X), pipe.predict(X))
    clf = pipe[-1]
    state = clf.__getstate__()
    assert state["_skcds_version"] == __import__("skcds").__version__
    state["_skcds_version"] = "0.0.1"
    with pytest.raises(IncompatibleModelError, match="saved by skcds 0.0.1"):
        BayesianLogisticRegression().__setstate__(state)


def test_laplace_whitening_is_exact_and_none_samples_the_raw_posterior():
    """Both paths sample the same posterior; whitening only changes the coordinates. The
    whitened energy's mode is the origin (the Laplace mode) and its Hessian there is -I."""
    import torch

    clf = BayesianLogisticRegression(SAMPLER, n_posterior_samples=200, random_state=0).fit(X, Y)
    whitened = clf.sampler_.energy_.double()
    origin = torch.zeros(1, 5, dtype=torch.float64)
    assert float(whitened._grad_log_prob(origin).abs().max()) < 1e-4
    hessian = whitened._hessian_log_prob(origin)[0]
    torch.testing.assert_close(hessian, -torch.eye(5, dtype=torch.float64), atol=1e-4, rtol=0)
    raw = BayesianLogisticRegression(SAMPLER, precondition="none", n_posterior_samples=200)
    raw.fit(X, Y)
    assert type(raw.sampler_.energy_).__name__ == "LogisticRegressionPosterior"
    assert raw.score(X, Y) >= 0.85
    with pytest.raises(ValueError, match="'precondition' parameter .* must be one of"):
        BayesianLogisticRegression(precondition="qr").fit(X, Y)


@pytest.mark.parametrize(
    "param, value",
    [
        ("prior_scale", 0.0),
        ("prior_scale", float("nan")),
        ("fit_intercept", "yes"),
        ("n_posterior_samples", 0),
        ("precondition", "laplas"),
        ("sampling_steps", 0),
        ("sampling_steps", 2.0),
        ("random_state", -1),
        ("random_state", "seed"),
    ],
)
def test_every_parameter_is_validated_before_any_training(param, value):
    classifier = BayesianLogisticRegression(**{param: value})
    with pytest.raises(ValueError, match=f"The '{param}' parameter of BayesianLogisticRegression"):
        classifier.fit(X, Y)
    assert not hasattr(classifier, "sampler_")
