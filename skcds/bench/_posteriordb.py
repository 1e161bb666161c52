"""Four real posteriors from posteriordb, written in torch and checked against Stan's draws.

Each posterior's log density is written from its Stan model with :mod:`torch.distributions`,
as a user would write it (argument validation left on), in the **unconstrained**
parametrisation a sampler works in: a positive parameter ``s`` is sampled as ``log s`` and the
log-Jacobian ``log s`` is added. Stan's ``~`` drops normalising constants; these densities keep
them, so only ``log Z`` differs.

The data, the Stan code and Stan's reference draws are read from a local copy of posteriordb's
``posterior_database`` folder (:func:`find_posteriordb`); nothing is downloaded.
:func:`stein_discrepancy` checks a density against the reference draws with the Stein
identities ``E_p[d_i log p] = 0`` and ``E_p[(x_i - c) d_i log p] = -1``.

Notes
-----
The checks are only as sensitive as 10000 draws allow: a wrong density is caught when it moves
the posterior by more than a few hundredths of a posterior standard deviation. Dropping the
log-Jacobian of ``sigma`` moves ``log sigma`` by about ``Var(log sigma)``, which for the
concentrated posteriors (kidiq) is below what the draws resolve.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor
from torch import distributions as dist

from ..energies import Energy
from ..energies._utils import as_float64_array, check_positive_int, to_buffer

__all__ = [
    "POSTERIORS",
    "AutoRegressive",
    "BayesianLinearRegression",
    "EightSchoolsNoncentered",
    "KidscoreMomiq",
    "PosteriorSpec",
    "RealPosterior",
    "SteinZScores",
    "find_posteriordb",
    "load_posterior",
    "stein_discrepancy",
]

_ENV_VAR = "SKCDS_POSTERIORDB"
_RELATIVE = Path("..") / "shared" / "data" / "posteriordb" / "posterior_database"
# the folder above the skcds package; the project keeps its data beside it
_REPO_ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ energies
def _check_vector(value: ArrayLike, name: str, size: int | None = None) -> np.ndarray:
    """A finite float64 vector, of length ``size`` when given."""
    array = as_float64_array(value, name, 1)
    if size is not None and array.shape != (size,):
        raise ValueError(f"'{name}' must be of shape ({size},); got shape {array.shape}.")
    if array.size == 0:
        raise ValueError(f"'{name}' must not be empty.")
    return array


class EightSchoolsNoncentered(Energy):
    r"""Eight schools, non-centred (posteriordb ``eight_schools-eight_schools_noncentered``).

    Stan model::

        theta_trans ~ normal(0, 1);             // vector[J]
        y ~ normal(mu + tau * theta_trans, sigma);
        mu ~ normal(0, 5);
        tau ~ cauchy(0, 5);                     // real<lower=0>: half-Cauchy

    Coordinates ``x = (theta_trans[1..J], mu, log tau)``; the density includes the
    log-Jacobian ``log tau``.

    Parameters
    ----------
    y : array-like of shape (J,)
        Estimated treatment effects.
    sigma : array-like of shape (J,)
        Their standard errors (positive).

    Examples
    --------
    >>> import torch
    >>> energy = EightSchoolsNoncentered([28.0, 8.0], [15.0, 10.0])
    >>> energy.dim
    4
    >>> energy.log_prob(torch.zeros(1, 4, dtype=torch.float64)).shape
    torch.Size([1])
    """

    def __init__(self, y: ArrayLike, sigma: ArrayLike) -> None:
        super().__init__()
        self.y, self.sigma = y, sigma
        effects = _check_vector(y, "y")
        scales = _check_vector(sigma, "sigma", effects.size)
        if (scales <= 0).any():
            raise ValueError("'sigma' must be positive (standard errors).")
        self.n_schools = effects.size
        self.dim = self.n_schools + 2
        self.register_buffer("_y", to_buffer(effects))
        self.register_buffer("_sigma", to_buffer(scales))

    def _log_prob(self, x: Tensor) -> Tensor:
        theta_trans, mu, log_tau = x[:, : self.n_schools], x[:, -2], x[:, -1]
        tau = log_tau.exp()
        theta = mu[:, None] + tau[:, None] * theta_trans
        return (
            dist.Normal(x.new_tensor(0.0), x.new_tensor(1.0)).log_prob(theta_trans).sum(1)
            + dist.Normal(theta, self._sigma.to(x)).log_prob(self._y.to(x)).sum(1)
            + dist.Normal(x.new_tensor(0.0), x.new_tensor(5.0)).log_prob(mu)
            + dist.HalfCauchy(x.new_tensor(5.0)).log_prob(tau)
            + log_tau
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_schools={self.n_schools}"


class KidscoreMomiq(Energy):
    r"""Kid's test score on mother's IQ (posteriordb ``kidiq-kidscore_momiq``).

    Stan model::

        sigma ~ cauchy(0, 2.5);                 // real<lower=0>: half-Cauchy
        kid_score ~ normal(beta[1] + beta[2] * mom_iq, sigma);

    ``beta`` has Stan's implicit flat prior (the posterior is proper given the data).
    Coordinates ``x = (beta[1], beta[2], log sigma)``; the density includes the log-Jacobian
    ``log sigma``.

    Parameters
    ----------
    kid_score : array-like of shape (N,)
        Children's test scores.
    mom_iq : array-like of shape (N,)
        Mothers' IQ scores.

    Examples
    --------
    >>> import torch
    >>> energy = KidscoreMomiq([65.0, 98.0, 85.0], [121.1, 89.4, 115.4])
    >>> energy.log_prob(torch.tensor([[26.0, 0.6, 3.0]], dtype=torch.float64)).isfinite()
    tensor([True])
    """

    def __init__(self, kid_score: ArrayLike, mom_iq: ArrayLike) -> None:
        super().__init__()
        self.kid_score, self.mom_iq = kid_score, mom_iq
        scores = _check_vector(kid_score, "kid_score")
        iq = _check_vector(mom_iq, "mom_iq", scores.size)
        self.dim = 3
        self.register_buffer("_kid_score", to_buffer(scores))
        self.register_buffer("_mom_iq", to_buffer(iq))

    def _log_prob(self, x: Tensor) -> Tensor:
        beta, log_sigma = x[:, :2], x[:, 2]
        sigma = log_sigma.exp()
        mean = beta[:, :1] + beta[:, 1:] * self._mom_iq.to(x)
        return (
            dist.HalfCauchy(x.new_tensor(2.5)).log_prob(sigma)
            + dist.Normal(mean, sigma[:, None]).log_prob(self._kid_score.to(x)).sum(1)
            + log_sigma
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_samples={self._kid_score.shape[0]}"


class BayesianLinearRegression(Energy):
    r"""Bayesian linear regression (posteriordb ``sblrc-blr``).

    Stan model::

        target += normal_lpdf(beta | 0, 10);    // vector[D]
        target += normal_lpdf(sigma | 0, 10);   // real<lower=0>: half-normal
        target += normal_lpdf(y | X * beta, sigma);

    Coordinates ``x = (beta[1..D], log sigma)``; the density includes the log-Jacobian
    ``log sigma``.

    Parameters
    ----------
    X : array-like of shape (N, D)
        Design matrix (no bias column is added).
    y : array-like of shape (N,)
        Responses.

    Examples
    --------
    >>> import torch
    >>> energy = BayesianLinearRegression([[1.0, 0.5], [0.2, 1.0]], [1.5, 1.2])
    >>> energy.dim
    3
    """

    def __init__(self, X: ArrayLike, y: ArrayLike) -> None:
        super().__init__()
        self.X, self.y = X, y
        design = as_float64_array(X, "X", 2)
        if design.shape[0] == 0 or design.shape[1] == 0:
            raise ValueError(f"'X' must have at least one row and one column; got {design.shape}.")
        responses = _check_vector(y, "y", design.shape[0])
        self.dim = design.shape[1] + 1
        self.register_buffer("_X", to_buffer(design))
        self.register_buffer("_y", to_buffer(responses))

    def _log_prob(self, x: Tensor) -> Tensor:
        beta, log_sigma = x[:, :-1], x[:, -1]
        sigma = log_sigma.exp()
        zero, ten = x.new_tensor(0.0), x.new_tensor(10.0)
        return (
            dist.Normal(zero, ten).log_prob(beta).sum(1)
            + dist.HalfNormal(ten).log_prob(sigma)
            + dist.Normal(beta @ self._X.to(x).T, sigma[:, None]).log_prob(self._y.to(x)).sum(1)
            + log_sigma
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_samples={self._X.shape[0]}"


class AutoRegressive(Energy):
    r"""Autoregressive model of order ``K`` (posteriordb ``arK-arK``).

    Stan model::

        alpha ~ normal(0, 10);
        beta ~ normal(0, 10);                   // array[K]
        sigma ~ cauchy(0, 2.5);                 // real<lower=0>: half-Cauchy
        for (t in (K + 1):T)
          y[t] ~ normal(alpha + sum_k beta[k] * y[t - k], sigma);

    The first ``K`` observations are conditioned on, not modelled. Coordinates
    ``x = (alpha, beta[1..K], log sigma)``; the density includes the log-Jacobian ``log sigma``.

    Parameters
    ----------
    y : array-like of shape (T,)
        The time series, ``T > K``.
    K : int
        Order of the autoregression.

    Examples
    --------
    >>> import torch
    >>> energy = AutoRegressive([0.1, 0.3, -0.2, 0.4, 0.0], K=2)
    >>> energy.dim
    4
    """

    def __init__(self, y: ArrayLike, K: int) -> None:
        super().__init__()
        self.y, self.K = y, K
        order = check_positive_int(K, "K")
        series = _check_vector(y, "y")
        if series.size <= order:
            raise ValueError(f"'y' must be longer than K={order}; got {series.size} values.")
        self.dim = order + 2
        # column k-1 holds y[t - k] for t = K+1..T (Stan's 1-based indices)
        lags = np.stack([series[order - k : series.size - k] for k in range(1, order + 1)], 1)
        self.register_buffer("_lags", to_buffer(lags))
        self.register_buffer("_targets", to_buffer(series[order:]))

    def _log_prob(self, x: Tensor) -> Tensor:
        alpha, beta, log_sigma = x[:, 0], x[:, 1:-1], x[:, -1]
        sigma = log_sigma.exp()
        zero, ten = x.new_tensor(0.0), x.new_tensor(10.0)
        mean = alpha[:, None] + beta @ self._lags.to(x).T
        return (
            dist.Normal(zero, ten).log_prob(alpha)
            + dist.Normal(zero, ten).log_prob(beta).sum(1)
            + dist.HalfCauchy(x.new_tensor(2.5)).log_prob(sigma)
            + dist.Normal(mean, sigma[:, None]).log_prob(self._targets.to(x)).sum(1)
            + log_sigma
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, K={self.K}, n_terms={self._targets.shape[0]}"


# ------------------------------------------------------------- parameter maps and specs
def _names(base: str, n: int) -> list[str]:
    """Stan's element names ``base[1]``, ..., ``base[n]``."""
    return [f"{base}[{i}]" for i in range(1, n + 1)]


def _eight_schools_recover(reference: dict) -> dict:
    """Add ``theta_trans[j] = (theta[j] - mu) / tau``: the draws hold only the derived theta."""
    out = dict(reference)
    j = 1
    while f"theta[{j}]" in reference:
        out[f"theta_trans[{j}]"] = (reference[f"theta[{j}]"] - reference["mu"]) / reference["tau"]
        j += 1
    return out


def _eight_schools_derive(params: dict) -> dict:
    """Add Stan's transformed parameter ``theta[j] = mu + tau * theta_trans[j]``."""
    out = dict(params)
    j = 1
    while f"theta_trans[{j}]" in params:
        out[f"theta[{j}]"] = params["mu"] + params["tau"] * params[f"theta_trans[{j}]"]
        j += 1
    return out


@dataclass(frozen=True)
class PosteriorSpec:
    """How one posteriordb posterior maps to a torch energy.

    Attributes
    ----------
    name : str
        posteriordb's posterior name, e.g. ``'kidiq-kidscore_momiq'``.
    model_name, data_name : str
        posteriordb's model and data names (checked against the posterior's metadata).
    param_names : tuple of str
        Unconstrained coordinates in order; a ``log_`` prefix marks a positive parameter
        sampled on the log scale.
    build : callable
        ``build(data) -> Energy`` from the posterior's data dict.
    recover : callable or None
        Adds parameters the reference draws lack, computed from those they hold.
    derive : callable or None
        Adds Stan's transformed parameters to a dict of constrained parameters.
    """

    name: str
    model_name: str
    data_name: str
    param_names: tuple[str, ...]
    build: Callable[[dict], Energy]
    recover: Callable[[dict], dict] | None = None
    derive: Callable[[dict], dict] | None = None

    def to_unconstrained(self, constrained: dict) -> np.ndarray:
        """Stack named constrained draws into unconstrained coordinates.

        Parameters
        ----------
        constrained : dict of str to array-like of shape (n,)
            Constrained draws by Stan name (``'sigma'``, ``'beta[1]'``, ...).

        Returns
        -------
        numpy.ndarray of shape (n, dim)
        """
        values = self.recover(constrained) if self.recover else constrained
        columns = []
        for name in self.param_names:
            if name.startswith("log_"):
                columns.append(np.log(np.asarray(values[name[4:]], dtype=np.float64)))
            else:
                columns.append(np.asarray(values[name], dtype=np.float64))
        return np.stack(columns, axis=1)

    def to_constrained(self, x: ArrayLike) -> dict:
        """Map unconstrained points to named constrained parameters (and derived ones).

        Parameters
        ----------
        x : array-like of shape (n, dim)
            Points in the unconstrained coordinates :attr:`param_names`.

        Returns
        -------
        dict of str to numpy.ndarray of shape (n,)
            Each constrained parameter by Stan name, plus Stan's transformed parameters.
        """
        array = as_float64_array(x, "x", 2)
        if array.shape[1] != len(self.param_names):
            raise ValueError(
                f"'x' must be of shape (n, {len(self.param_names)}); got shape {array.shape}."
            )
        params = {}
        for name, column in zip(self.param_names, array.T, strict=True):
            if name.startswith("log_"):
                params[name[4:]] = np.exp(column)
            else:
                params[name] = column.copy()
        return self.derive(params) if self.derive else params


POSTERIORS: dict[str, PosteriorSpec] = {
    "eight_schools": PosteriorSpec(
        name="eight_schools-eight_schools_noncentered",
        model_name="eight_schools_noncentered",
        data_name="eight_schools",
        param_names=(*_names("theta_trans", 8), "mu", "log_tau"),
        build=lambda d: EightSchoolsNoncentered(d["y"], d["sigma"]),
        recover=_eight_schools_recover,
        derive=_eight_schools_derive,
    ),
    "kidiq": PosteriorSpec(
        name="kidiq-kidscore_momiq",
        model_name="kidscore_momiq",
        data_name="kidiq",
        param_names=(*_names("beta", 2), "log_sigma"),
        build=lambda d: KidscoreMomiq(d["kid_score"], d["mom_iq"]),
    ),
    "sblrc": PosteriorSpec(
        name="sblrc-blr",
        model_name="blr",
        data_name="sblrc",
        param_names=(*_names("beta", 5), "log_sigma"),
        build=lambda d: BayesianLinearRegression(d["X"], d["y"]),
    ),
    "arK": PosteriorSpec(
        name="arK-arK",
        model_name="arK",
        data_name="arK",
        param_names=("alpha", *_names("beta", 5), "log_sigma"),
        build=lambda d: AutoRegressive(d["y"], int(d["K"])),
    ),
}
"""The four posteriors by short key; each spec's ``name`` is posteriordb's name."""


# ------------------------------------------------------------------------------ loading
def find_posteriordb(path: str | os.PathLike | None = None) -> Path:
    """Locate posteriordb's ``posterior_database`` folder; never downloads.

    Parameters
    ----------
    path : path-like, optional
        The ``posterior_database`` folder, or a folder that contains one. When given, only
        this is tried. Otherwise the first that exists of: the folder named by the
        environment variable ``SKCDS_POSTERIORDB``, then
        ``../shared/data/posteriordb/posterior_database`` relative to the current directory
        and relative to the repository root (the folder above the ``skcds`` package).

    Returns
    -------
    pathlib.Path
        A folder holding ``posteriors/``, ``models/``, ``data/`` and
        ``reference_posteriors/``.

    Raises
    ------
    FileNotFoundError
        When no candidate exists; the message names every place looked in.

    Examples
    --------
    >>> try:
    ...     folder = find_posteriordb()
    ... except FileNotFoundError:  # the data lives outside the package
    ...     pass
    """
    if path is not None:
        candidates = [Path(path)]
    else:
        candidates = [Path(os.environ[_ENV_VAR])] if os.environ.get(_ENV_VAR) else []
        candidates += [Path.cwd() / _RELATIVE, _REPO_ROOT / _RELATIVE]
    looked: list[Path] = []
    for candidate in candidates:
        for folder in (candidate, candidate / "posterior_database"):
            if folder in looked:
                continue
            looked.append(folder)
            if (folder / "posteriors").is_dir():
                return folder
    where = ", ".join(str(folder) for folder in looked)
    raise FileNotFoundError(
        f"Could not find posteriordb's 'posterior_database' folder; looked in: {where}. Pass "
        f"path='/path/to/posterior_database', or set the {_ENV_VAR} environment variable to "
        "it. skcds never downloads data."
    )


def _read_json(file: Path):
    """The JSON in ``file``, or in the single member of ``file`` when it ends in ``.zip``."""
    if not file.is_file():
        raise FileNotFoundError(f"posteriordb file {str(file)!r} does not exist.")
    if file.suffix == ".zip":
        with zipfile.ZipFile(file) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise ValueError(f"{str(file)!r} must hold one JSON file; it holds {members}.")
            return json.loads(archive.read(members[0]))
    return json.loads(file.read_text())


def _spec(name: str) -> tuple[str, PosteriorSpec]:
    """The short key and spec of a posterior given by short key or posteriordb name."""
    if name in POSTERIORS:
        return name, POSTERIORS[name]
    for key, spec in POSTERIORS.items():
        if spec.name == name:
            return key, spec
    valid = sorted(POSTERIORS) + sorted(spec.name for spec in POSTERIORS.values())
    raise ValueError(f"Unknown posterior {name!r}; valid names are {valid}.")


@dataclass(frozen=True)
class RealPosterior:
    """A posteriordb posterior as a torch energy, with Stan's reference draws.

    Attributes
    ----------
    name : str
        posteriordb's posterior name.
    energy : skcds.energies.Energy
        Unnormalised log density in the unconstrained coordinates :attr:`param_names`.
    param_names : list of str
        Unconstrained coordinates, in order (``log_sigma`` for a positive ``sigma``).
    reference_unconstrained : numpy.ndarray of shape (n_draws, dim)
        The reference draws in the unconstrained coordinates; chains are concatenated in
        order (10 chains of 1000 thinned draws).
    reference : dict of str to numpy.ndarray of shape (n_draws,)
        The reference draws as posteriordb gives them (constrained, Stan names).
    data : dict
        The model's data, as read from posteriordb.
    model_code : str
        The Stan program.
    spec : PosteriorSpec
        The parameter maps this posterior uses.
    """

    name: str
    energy: Energy
    param_names: list[str]
    reference_unconstrained: np.ndarray
    reference: dict
    data: dict = field(repr=False)
    model_code: str = field(repr=False)
    spec: PosteriorSpec = field(repr=False)

    @property
    def dim(self) -> int:
        """Number of unconstrained coordinates."""
        return len(self.param_names)

    def to_constrained(self, x: ArrayLike) -> dict:
        """Map unconstrained samples to named constrained draws comparable with :attr:`reference`.

        Parameters
        ----------
        x : array-like of shape (n, dim)
            Samples in the coordinates :attr:`param_names` (numpy or torch).

        Returns
        -------
        dict of str to numpy.ndarray of shape (n,)
            Every key of :attr:`reference` (Stan's transformed parameters included, e.g.
            eight schools' ``theta[j]``) and every sampled parameter.
        """
        return self.spec.to_constrained(x)


def load_posterior(name: str, path: str | os.PathLike | None = None) -> RealPosterior:
    """Load one of :data:`POSTERIORS` with its data and reference draws.

    Parameters
    ----------
    name : str
        Short key (``'eight_schools'``, ``'kidiq'``, ``'sblrc'``, ``'arK'``) or posteriordb
        name (e.g. ``'kidiq-kidscore_momiq'``).
    path : path-like, optional
        posteriordb's ``posterior_database`` folder; see :func:`find_posteriordb`.

    Returns
    -------
    RealPosterior

    Raises
    ------
    FileNotFoundError
        When the database or one of its files is missing.
    ValueError
        When ``name`` is unknown, or the database's metadata does not match the model
        written here.

    Examples
    --------
    >>> try:
    ...     posterior = load_posterior("kidiq")
    ... except FileNotFoundError:  # the data lives outside the package
    ...     posterior = None
    >>> posterior is None or posterior.param_names == ["beta[1]", "beta[2]", "log_sigma"]
    True
    """
    _, spec = _spec(name)
    root = find_posteriordb(path)
    meta = _read_json(root / "posteriors" / f"{spec.name}.json")
    found = (meta.get("model_name"), meta.get("data_name"))
    if found != (spec.model_name, spec.data_name):
        raise ValueError(
            f"posteriordb's {spec.name!r} uses model and data {found}; the torch density here "
            f"is written for {(spec.model_name, spec.data_name)}."
        )
    reference_name = meta.get("reference_posterior_name") or spec.name
    data = _read_json(root / "data" / "data" / f"{spec.data_name}.json.zip")
    code = (root / "models" / "stan" / f"{spec.model_name}.stan").read_text()
    chains = _read_json(
        root / "reference_posteriors" / "draws" / "draws" / f"{reference_name}.json.zip"
    )
    reference = {
        key: np.concatenate([np.asarray(c[key], dtype=np.float64) for c in chains])
        for key in chains[0]
    }
    return RealPosterior(
        name=spec.name,
        energy=spec.build(data),
        param_names=list(spec.param_names),
        reference_unconstrained=spec.to_unconstrained(reference),
        reference=reference,
        data=data,
        model_code=code,
        spec=spec,
    )


# -------------------------------------------------------------------------- Stein check
@dataclass(frozen=True)
class SteinZScores:
    """z-scores of two Stein identities, per coordinate, from draws of the target.

    Attributes
    ----------
    score : numpy.ndarray of shape (dim,)
        ``mean(d_i log p) / stderr``: the identity ``E_p[d_i log p] = 0``.
    scaled_score : numpy.ndarray of shape (dim,)
        ``(mean((x_i - mean x_i) d_i log p) + 1) / stderr``: the identity
        ``E_p[(x_i - c) d_i log p] = -1``; sensitive to a wrong spread where the first is
        sensitive to a wrong location.
    n_draws : int
        Number of draws used.
    """

    score: np.ndarray
    scaled_score: np.ndarray
    n_draws: int

    @property
    def max_abs_z(self) -> float:
        """Largest ``|z|`` over both identities and all coordinates (NaN if any is NaN)."""
        both = np.concatenate([self.score, self.scaled_score])
        return float(np.max(np.abs(both)))

    def passes(self, threshold: float = 4.5) -> bool:
        """Whether every ``|z|`` is below ``threshold`` (and finite).

        Parameters
        ----------
        threshold : float, default=4.5
            With ``2 * dim <= 20`` z-scores, the chance that the right density fails from
            Monte Carlo error alone is about ``1e-4`` (independent draws).

        Returns
        -------
        bool
        """
        return bool(np.isfinite(self.max_abs_z) and self.max_abs_z < threshold)


def stein_discrepancy(
    energy: Energy, x: ArrayLike | Tensor, *, batch_size: int = 2048
) -> SteinZScores:
    """Check a density against draws from it with Stein identities.

    For ``x ~ p`` (and ``p`` vanishing fast enough at the boundary),
    ``E[d_i log p(x)] = 0`` and ``E[(x_i - c) d_i log p(x)] = -1`` for every coordinate ``i``
    and constant ``c``. A density that differs from the one the draws come from (a dropped
    Jacobian, a wrong scale, perturbed data) breaks them. The scores are evaluated in float64.

    Parameters
    ----------
    energy : skcds.energies.Energy
        The density to check, in the coordinates of ``x``.
    x : array-like or torch.Tensor of shape (n, dim)
        Draws believed to come from ``energy`` (e.g. a posterior's
        ``reference_unconstrained``).
    batch_size : int, default=2048
        Draws per score evaluation (bounds memory).

    Returns
    -------
    SteinZScores
        Per-coordinate z-scores; ``result.passes()`` is the verdict.

    Notes
    -----
    The standard errors treat the draws as independent; posteriordb's thinned reference draws
    have lag-1 autocorrelation below 0.05. A coordinate whose score is non-finite at any draw
    gets a NaN z-score, and the check fails. ``c`` is the draws' mean, which keeps the second
    identity's variance small when the posterior sits far from 0.

    Examples
    --------
    >>> import torch
    >>> from skcds.energies import from_log_prob
    >>> gauss = from_log_prob(lambda x: -0.5 * (x**2).sum(1), dim=2)
    >>> draws = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    >>> stein_discrepancy(gauss, draws).passes()
    True
    >>> shifted = from_log_prob(lambda x: -0.5 * ((x - 0.2) ** 2).sum(1), dim=2)
    >>> stein_discrepancy(shifted, draws).passes()
    False
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    draws = as_float64_array(x, "x", 2)
    if draws.shape[1] != energy.dim or draws.shape[0] < 2:
        raise ValueError(
            f"'x' must be of shape (n, {energy.dim}) with n >= 2; got shape {draws.shape}."
        )
    anchor = next(energy.buffers(), None)
    device = anchor.device if anchor is not None else torch.device("cpu")
    scores = np.concatenate(
        [
            energy.grad_log_prob(torch.as_tensor(chunk, device=device)).detach().cpu().numpy()
            for chunk in np.array_split(draws, math.ceil(draws.shape[0] / batch_size))
        ]
    )
    n = draws.shape[0]
    scaled = (draws - draws.mean(0)) * scores
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        score_z = scores.mean(0) / (scores.std(0, ddof=1) / math.sqrt(n))
        scaled_z = (scaled.mean(0) + 1.0) / (scaled.std(0, ddof=1) / math.sqrt(n))
    # a non-finite score anywhere makes its coordinate's moments meaningless
    bad = ~np.isfinite(scores).all(0)
    score_z[bad], scaled_z[bad] = np.nan, np.nan
    return SteinZScores(score=score_z, scaled_score=scaled_z, n_draws=n)
