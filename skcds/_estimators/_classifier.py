"""BayesianLogisticRegression: a classifier that fits any skcds sampler on the logistic
regression posterior and predicts by averaging over posterior samples."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from .._version import __version__
from ..energies import LogisticRegressionPosterior, laplace_approximation
from . import _validation as v
from ._base import _BaseSampler, check_saved_version

__all__ = ["BayesianLogisticRegression"]


def _default_sampler():
    from ._self_consistent import SelfConsistentSampler

    return SelfConsistentSampler(n_steps=32, max_iter=400, batch_size=256)


class BayesianLogisticRegression(ClassifierMixin, BaseEstimator):
    """Bayesian logistic regression with posterior samples from any skcds sampler.

    ``fit(X, y)`` builds the posterior over the weights ``w`` (with an intercept) under the
    prior ``N(0, prior_scale^2 I)``,
    :class:`~skcds.energies.LogisticRegressionPosterior`, fits a clone of ``sampler`` on it
    and draws ``n_posterior_samples`` weight vectors once. :meth:`predict_proba` averages
    ``sigmoid(x . w)`` over them (the posterior predictive), so prediction costs one matrix
    product, and with a one-step sampler the posterior costs one network evaluation per
    sample.

    Parameters
    ----------
    sampler : skcds sampler, default=None
        Any skcds sampler, unfitted; it is cloned and fitted on the posterior. ``None`` uses
        ``SelfConsistentSampler(n_steps=32, max_iter=400, batch_size=256)``.
    prior_scale : float, default=1.0
        Standard deviation of the Gaussian prior on every weight (intercept included).
    fit_intercept : bool, default=True
        Add a column of ones to ``X``.
    n_posterior_samples : int, default=1000
        Posterior samples drawn at ``fit`` and averaged by :meth:`predict_proba`.
    precondition : {'laplace', 'none'}, default='laplace'
        ``'laplace'`` finds the posterior mode and the Hessian there and fits the sampler on
        the whitened posterior (:class:`~skcds.energies.AffineTransformed`), which is close
        to the samplers' ``N(0, I)`` prior; samples are mapped back. Exact: only the
        coordinates change. ``'none'`` fits the sampler on the raw posterior.
    sampling_steps : int, default=None
        ``n_steps`` of the sampler's ``sample``; ``None`` uses the sampler's default (one step
        for :class:`~skcds.SelfConsistentSampler` and :class:`~skcds.ConsistentDistiller`).
    random_state : None or int, default=None
        Seeds the sampler (overriding its own ``random_state``) and the posterior draws.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        The two class labels; ``classes_[1]`` is the positive class.
    sampler_ : skcds sampler
        The sampler fitted on the posterior.
    posterior_samples_ : ndarray of shape (n_posterior_samples, n_weights)
        Weight vectors drawn from the fitted sampler (intercept first when
        ``fit_intercept``).
    coef_ : ndarray of shape (1, n_features)
        Posterior mean of the feature weights.
    intercept_ : ndarray of shape (1,)
        Posterior mean of the intercept (0 without ``fit_intercept``).
    n_features_in_ : int
        Number of features seen by ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from skcds import BayesianLogisticRegression, SelfConsistentSampler
    >>> X, y = make_classification(n_samples=60, n_features=3, n_redundant=0, random_state=0)
    >>> sampler = SelfConsistentSampler(n_steps=8, max_iter=30, batch_size=64)
    >>> clf = BayesianLogisticRegression(sampler, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """

    def __init__(
        self,
        sampler=None,
        *,
        prior_scale: float = 1.0,
        fit_intercept: bool = True,
        n_posterior_samples: int = 1000,
        precondition: str = "laplace",
        sampling_steps=None,
        random_state=None,
    ) -> None:
        self.sampler = sampler
        self.prior_scale = prior_scale
        self.fit_intercept = fit_intercept
        self.n_posterior_samples = n_posterior_samples
        self.precondition = precondition
        self.sampling_steps = sampling_steps
        self.random_state = random_state

    _parameter_constraints = {
        "prior_scale": v.positive_float(),
        "fit_intercept": v.Constraint(bool, None, "a bool"),
        "n_posterior_samples": v.positive_int(),
        "precondition": v.one_of("laplace", "none"),
        "sampling_steps": v.optional(v.positive_int()),
        "random_state": v.RANDOM_STATE,
    }

    def __getstate__(self):
        return {**super().__getstate__(), "_skcds_version": __version__}

    def __setstate__(self, state):
        check_saved_version(type(self).__name__, state.pop("_skcds_version", None))
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _design(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return np.hstack([np.ones((X.shape[0], 1)), X]) if self.fit_intercept else X

    def fit(self, X, y):
        """Fit the sampler on the posterior of ``(X, y)`` and draw the posterior samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Two classes, of any label type.

        Returns
        -------
        self
        """
        v.validate_params(self, self._parameter_constraints)
        sampler = _default_sampler() if self.sampler is None else self.sampler
        if not isinstance(sampler, _BaseSampler):
            raise TypeError(
                "BayesianLogisticRegression's 'sampler' must be an skcds sampler "
                f"(DiffusionSampler, SelfConsistentSampler, ...); got {type(sampler).__name__}."
            )
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) != 2:
            n = len(classes)
            raise ValueError(
                "Only binary classification is supported. The type of the target is "
                f"{type_of_target(y, input_name='y')}: 'y' of BayesianLogisticRegression must "
                f"have exactly 2 classes; got {n} class{'' if n == 1 else 'es'}: "
                f"{classes.tolist()[:10]}."
            )
        self.classes_ = classes
        energy = LogisticRegressionPosterior(self._design(X), y_index, self.prior_scale)
        if self.precondition == "laplace":
            energy = laplace_approximation(energy).apply(energy)
        self.sampler_ = clone(sampler)
        if self.random_state is not None:
            self.sampler_.set_params(random_state=self.random_state)
        self.sampler_.fit(energy)
        draws = self.sampler_.sample(
            self.n_posterior_samples,
            n_steps=self.sampling_steps,
            random_state=self.random_state,
            return_tensor=True,
        )
        self.posterior_samples_ = draws.detach().cpu().double().numpy()
        mean = self.posterior_samples_.mean(axis=0)
        self.intercept_ = mean[:1] if self.fit_intercept else np.zeros(1)
        self.coef_ = (mean[1:] if self.fit_intercept else mean)[None, :]
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Posterior predictive class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, 2)
            Columns in the order of ``classes_``.
        """
        check_is_fitted(self, "posterior_samples_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        logits = torch.from_numpy(self._design(X) @ self.posterior_samples_.T)
        positive = torch.sigmoid(logits).mean(dim=1).numpy()
        return np.column_stack([1.0 - positive, positive])

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy of :meth:`predict` on ``X`` against ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        float
        """
        return super().score(X, y, sample_weight=sample_weight)

    def predict(self, X) -> np.ndarray:
        """The most probable class under the posterior predictive.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        positive = self.predict_proba(X)[:, 1] > 0.5
        return self.classes_[positive.astype(int)]
