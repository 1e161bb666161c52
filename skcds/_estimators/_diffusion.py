"""DiffusionSampler: the DIS diffusion sampler (method.md §2), teacher and many-step baseline."""

from __future__ import annotations

import warnings

import torch

from .._core.flow import euler_flow
from .._core.grids import uniform_grid
from .._core.losses import floor_zero_density, get_loss
from .._core.networks import ControlNet
from .._core.rollout import (
    CapturedSDE,
    euler_maruyama,
    standard_normal,
    training_log_rnd,
)
from ..energies._guard import reports_model_failures
from . import _validation as v
from ._base import _BaseSampler
from ._docs import refinement_doc


class DiffusionSampler(_BaseSampler):
    """Time-reversed diffusion sampler (DIS) trained on an energy alone.

    A controlled SDE transports the Gaussian prior to the target ``rho / Z`` along the time
    reversal of a fixed variance-preserving noising process. The control is trained with the
    log-variance divergence between the generative and the reference path measures (Berner,
    Richter and Ullrich, 2024); no samples of the target are needed.

    Parameters
    ----------
    energy : Energy, default=None
        Target density; may instead be passed to :meth:`fit`.
    n_steps : int, default=128
        Number of Euler–Maruyama steps ``N`` of the training time grid on ``[0, 1]``.
    max_iter : int, default=20_000
        Training iterations (the paper's budget; on the 9-mode GMM about 6 minutes on an H100,
        17 ms per iteration, and 75 minutes on two CPU cores, 0.22 s per iteration;
        early stopping usually ends training much sooner).
    batch_size : int, default=512
        Trajectories per iteration.
    learning_rate : float, default=5e-3
        Initial Adam learning rate, in ``(0, 1]``; it decays in steps to 2% of this value
        over ``max_iter``.
    loss : {'log_variance', 'kl'}, default='log_variance'
        Divergence between path measures. ``'log_variance'`` runs a detached rollout (fast,
        CUDA-graph capturable); ``'kl'`` differentiates through the whole SDE.
    reference : {'vp', 'ou', 'brownian'}, default='vp'
        Reference process, which makes the sampler one of the paper's baselines:
        ``'vp'`` is DIS (time reversal of a variance-preserving noising, truncated Gaussian
        prior), ``'ou'`` is DDS (the stationary Ornstein–Uhlenbeck process, same prior) and
        ``'brownian'`` is PIS (scaled Brownian motion ``sqrt(0.2) W`` on ``[0, 5]`` from a
        Dirac at 0). With ``'ou'`` and ``'brownian'`` the control's Langevin-style term is the
        target score alone and ``method='ode'`` is unavailable. The reference code trains
        PIS and DDS with the log-variance loss, the paper says KL: both work.
    width : int, default=64
        Width of the control network.
    langevin : bool, default=True
        Give the control its Langevin-style term, which reads the target score
        ``grad log rho`` at every step. ``False`` drops it: the control is the network
        alone, the target is evaluated only at the end of each path (once per trajectory
        with the log-variance loss) and never differentiated, and ``method='ode'`` weights
        need no Hessian. For energies without a gradient, or whose gradient is expensive
        (a numpy log-density differentiated by finite differences costs ``2 * dim`` calls
        per step); training needs more iterations for the same quality.
    precondition : {'auto', 'laplace', 'none'}, default='auto'
        The change of variables training happens in, found once before it
        (:func:`skcds.energies.precondition`, stored as ``preconditioning_``):
        ``'laplace'`` whitens the target by its mode and the inverse Hessian there, so that a
        posterior far from unit scale looks like the ``N(0, I)`` prior; ``'auto'`` does so
        only when the target is unimodal, not already near ``N(0, I)`` and better fitted by
        its Laplace approximation than by the prior (the built-in synthetic targets are left
        alone); ``'none'`` trains in your coordinates. Exact: samples come back in your
        coordinates, log-weights and ``log Z`` are unchanged.
    execution : {'auto', 'eager', 'cuda_graph'}, default='auto'
        How the training rollout runs: ``'cuda_graph'`` captures the ``N``-step loop in one
        CUDA graph (CUDA only, log-variance loss only); ``'auto'`` uses it when possible and
        falls back to eager execution with a warning if capture fails.
    device : str or torch.device, default='auto'
        ``'auto'`` picks CUDA when available.
    dtype : {'float32', 'float64'}, default='float32'
        Floating-point type of the networks and samples.
    n_threads : 'auto', int or None, default='auto'
        torch's CPU threads during ``fit``, restored after. ``'auto'``: one for small
        networks, which a busy machine cannot stall (see :ref:`threads`); ``None``:
        torch's setting.
    random_state : None, int or RandomState, default=None
        Seeds a private ``torch.Generator``; torch's global RNG is never used.
    verbose : int, default=0
        ``1`` shows a progress bar with the loss and ETA.
    warm_start : bool, default=False
        Continue training the fitted model for ``max_iter`` more iterations.
    max_time : float, default=None
        Wall-clock budget of one ``fit`` in seconds, checked after every iteration (so it
        is respected within one iteration); ``None``: no budget.
    early_stopping : bool, default=True
        Stop once the monitored ELBO has not improved by more than ``tol`` for
        ``n_iter_no_change`` consecutive checks, before ``max_iter``.
    n_iter_no_change : int, default=3
        Checks without improvement that stop training (with ``early_stopping``).
    tol : float, default=0.05
        Improvement of the best monitored ELBO, in nats, that counts; above the noise of
        the monitor (the standard error of the ELBO of 512 samples was 0.02-0.05 on GMM9
        and MW54; with ``tol=0.01`` noise kept counting as improvement).
    monitor_every : int, default=200
        Iterations between checks: the ELBO and ESS of 512 fresh samples with valid
        weights (the ``n_steps``-step SDE's path weights), recorded as ``history_``
        columns ``elbo`` and ``ess`` on the checked rows and shown in the progress bar.
        Their own random generator: the training draws are those of an unmonitored run.
        ``stop_reason_`` says why training stopped.
    callbacks : list of callable, default=None
        Each is called as ``callback(estimator, record)`` after every iteration, e.g.
        :class:`skcds.callbacks.Checkpoint` to save the model periodically.

    Attributes
    ----------
    control_ : torch.nn.Module
        The trained control network (online weights).
    energy_ : Energy
        The target the sampler works on, on ``device_`` and in ``dtype``: yours, or its
        whitened view :class:`~skcds.energies.AffineTransformed` (``energy_.base`` is yours)
        when preconditioned; ``energy_.transform`` maps its points to your coordinates.
    preconditioning_ : Preconditioning
        The change of variables chosen before training and why
        (:class:`~skcds.energies.Preconditioning`).
    reference_ : object
        The reference process.
    history_ : list of dict
        One row per iteration: ``iteration``, ``loss``, ``learning_rate``, ``grad_norm``,
        ``n_nonfinite`` (samples masked out of the loss), ``skipped`` (non-finite update
        skipped), ``elapsed`` (seconds since training began).
    n_iter_ : int
        Completed iterations.
    stop_reason_ : str
        Why the last ``fit`` stopped: ``'max_iter'``, ``'converged'`` (early stopping),
        ``'max_time'``, ``'diverged'`` or ``'interrupted'``.
    n_features_in_ : int
        Dimension of the target.
    device_ : torch.device
        Resolved device.

    See Also
    --------
    ConsistentDistiller : distils a fitted DiffusionSampler into a one-step sampler.
    SelfConsistentSampler : one-step sampling trained from scratch.

    References
    ----------
    .. [1] J. Berner, L. Richter, K. Ullrich. "An optimal control perspective on diffusion-based
       generative modeling." TMLR, 2024.
    .. [2] P. Jutras-Dubé, P. Pynadath, R. Zhang. "Single-Step Consistent Diffusion Samplers."
       arXiv:2502.07579, 2025.

    Examples
    --------
    >>> from skcds import DiffusionSampler
    >>> from skcds.energies import GaussianMixture
    >>> energy = GaussianMixture.grid()
    >>> sampler = DiffusionSampler(n_steps=16, max_iter=5, batch_size=64, random_state=0)
    >>> sampler.fit(energy).sample(3).shape
    (3, 2)
    """

    _parameter_constraints = {
        **_BaseSampler._parameter_constraints,
        "loss": v.one_of("log_variance", "kl"),
        "reference": v.one_of("vp", "ou", "brownian"),
        "width": v.positive_int(),
        "langevin": v.Constraint(bool, None, "a bool"),
        "execution": v.one_of("auto", "eager", "cuda_graph"),
        "precondition": v.one_of("auto", "laplace", "none"),
    }
    # models saved before preconditioning existed trained in the user's coordinates
    _defaults_before_added = {**_BaseSampler._defaults_before_added, "precondition": "none"}

    def __init__(
        self,
        energy=None,
        *,
        n_steps: int = 128,
        max_iter: int = 20_000,
        batch_size: int = 512,
        learning_rate: float = 5e-3,
        loss: str = "log_variance",
        reference: str = "vp",
        width: int = 64,
        langevin: bool = True,
        precondition: str = "auto",
        execution: str = "auto",
        device="auto",
        dtype="float32",
        n_threads="auto",
        random_state=None,
        verbose: int = 0,
        warm_start: bool = False,
        callbacks=None,
        max_time=None,
        early_stopping: bool = True,
        n_iter_no_change: int = 3,
        tol: float = 0.05,
        monitor_every: int = 200,
    ) -> None:
        self.energy = energy
        self.n_steps = n_steps
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.loss = loss
        self.reference = reference
        self.width = width
        self.langevin = langevin
        self.precondition = precondition
        self.execution = execution
        self.device = device
        self.dtype = dtype
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.callbacks = callbacks
        self.max_time = max_time
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.monitor_every = monitor_every

    def _build(self, dim: int, generator: torch.Generator) -> ControlNet:
        return ControlNet(
            dim,
            width=self.width,
            langevin=self.reference_.langevin if self.langevin else "none",
            terminal_time=self.reference_.terminal_time,
            context_dim=self._context_dim,
            generator=generator,
        )

    def _reads_score(self) -> bool:
        return self.langevin

    def _grid(self, n_steps: int) -> torch.Tensor:
        return uniform_grid(
            n_steps, self.reference_.terminal_time, dtype=self._dtype, device=self.device_
        )

    def _use_graph(self) -> bool:
        wanted = self.execution == "cuda_graph" or (
            self.execution == "auto"
            and self.device_.type == "cuda"
            and self.loss == "log_variance"  # the KL loss differentiates through the rollout
            and not getattr(self, "_graph_failed", False)
            and not self._conditional  # a graph would keep the first batch's contexts
        )
        if wanted and (self.device_.type != "cuda" or self.loss != "log_variance"):
            raise ValueError(
                "execution='cuda_graph' needs device='cuda' and loss='log_variance'; got "
                f"device={str(self.device_)!r} and loss={self.loss!r}."
            )
        return wanted

    def _step_conditioning(self, n_steps: int) -> torch.Tensor | None:
        """The step-size input of the control on an ``n_steps`` grid (none for DIS)."""
        return None

    def _detached_rollout(self, times, x0, noise, step):
        """The no-grad training rollout: replayed from a CUDA graph when enabled."""
        args = (self.control_, self.reference_, self._dynamics_energy, times)
        if not self._use_graph():
            return euler_maruyama(*args, x0, noise, step)
        key = ("sde", *x0.shape, times.shape[0])
        if key not in self._captured:
            try:
                self._captured[key] = CapturedSDE(*args, x0, step)
            except RuntimeError as error:
                if self.execution == "cuda_graph":
                    raise
                warnings.warn(
                    f"CUDA graph capture failed ({error}); training eagerly.", stacklevel=4
                )
                self._graph_failed = True
                return euler_maruyama(*args, x0, noise, step)
        return self._captured[key](x0, noise)

    def _diffusion_loss(self):
        """``(loss, n_nonfinite, rollout)`` of the divergence on one batch of SDE paths."""
        times, step = self._grid(self.n_steps), self._step_conditioning(self.n_steps)
        x0 = self._prior(self._local_batch)
        if self.loss == "kl":
            roll = euler_maruyama(
                self.control_,
                self.reference_,
                self._dynamics_energy,
                times,
                x0,
                step=step,
                generator=self._generator,
            )
            rnd = roll.log_rnd
        else:
            noise = standard_normal(
                (self.n_steps, *x0.shape),
                generator=self._generator,
                dtype=x0.dtype,
                device=x0.device,
                batch_axis=1,
            )
            with torch.no_grad():
                roll = self._detached_rollout(times, x0, noise, step)
            rnd = training_log_rnd(self.control_, self.reference_, times, roll, step)
        log_w = floor_zero_density(roll.log_target) - rnd
        value, n_nonfinite = get_loss(self.loss)(log_w, groups=self._context_groups)
        return value / self.n_features_in_, n_nonfinite, roll

    def _training_steps(self, iteration: int):
        loss, n_nonfinite, _ = self._diffusion_loss()
        yield {"loss": loss}, loss, n_nonfinite

    def _monitor_options(self) -> tuple[int, dict]:
        return self.n_steps, {"method": "sde"}  # path weights: valid, no Jacobians

    def _sample_chunk(self, n, n_steps, generator, log_weights, method="sde", log_det="auto"):
        if method not in ("sde", "ode"):
            raise ValueError(f"'method' must be one of ['ode', 'sde']; got {method!r}.")
        if method == "ode" and not self.reference_.has_flow:
            raise ValueError(
                f"method='ode' needs reference='vp' (the DIS probability-flow ODE); this "
                f"sampler has reference={self.reference!r}. Use method='sde'."
            )
        log_det = self._log_det_method(log_det)
        times, step = self._grid(n_steps), self._step_conditioning(n_steps)
        x0 = self._prior(n, generator)
        args = (self._sampling_control, self.reference_, self._dynamics_energy, times, x0)
        if method == "ode":
            if not log_weights:
                return euler_flow(*args, step), None
            with torch.enable_grad():  # Jacobians of the map need autograd
                x, log_q, reversed_fractions = euler_flow(
                    *args, step, log_density=True, log_det=log_det, generator=generator
                )
            self._warn_if_folds(n_steps, reversed_fractions)
            return x.detach(), (self._dynamics_energy._log_prob(x) - log_q).detach()
        roll = euler_maruyama(*args, step=step, record=False, generator=generator)
        return roll.x, roll.log_weights if log_weights else None

    @reports_model_failures
    @refinement_doc
    def sample(
        self,
        n_samples: int = 1,
        *,
        n_steps=None,
        random_state=None,
        return_log_weights=False,
        return_tensor=False,
        mcmc_steps: int = 0,
        imh_steps: int = 0,
        method: str = "sde",
        log_det: str = "auto",
        context=None,
    ):
        """Draw samples by simulating the trained SDE (or its probability-flow ODE).

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        n_steps : int, optional
            Number of steps of the sampling grid; defaults to the training ``n_steps``.
        random_state : None, int or RandomState, optional
            ``None`` continues the estimator's own generator; an int gives the same draws on
            every call.
        return_log_weights : bool, default=False
            Also return the importance log-weights, exact for the sampler run at any
            ``n_steps``: so their mean is a true ELBO and ``mean(exp(log_w))`` an unbiased
            estimate of ``Z``. For the SDE they are path weights; for the ODE, a deterministic
            map, they come from its exact density by change of variables (a ``d x d``
            Jacobian per sample and step; needs a target whose score torch can differentiate)
            and are exact where the map is injective; for the ODE, ``mean(exp(log_w))`` misses
            the target mass outside the image of the truncated prior.
        return_tensor : bool, default=False
            Return torch tensors on the model's device instead of numpy arrays.
        method : {'sde', 'ode'}, default='sde'
            Euler–Maruyama on the controlled SDE, or Euler on its probability-flow ODE.
        log_det : {'auto', 'exact', 'stochastic'}, default='auto'
            How ODE log-weights get the log-determinants: ``'exact'`` (batched ``d x d``
            Jacobians; a warning if the map provably folds), ``'stochastic'`` (stochastic
            Lanczos quadrature from Jacobian-vector products: noisy, so ``exp`` of the weights
            is biased; no fold check) or ``'auto'`` (exact up to 256 dimensions).
        {refinement_parameters}
        {context_parameter}

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        log_weights : ndarray of shape (n_samples,)
            Only when ``return_log_weights=True``.
        """
        options = {"method": method, "log_det": log_det, "context": context}
        x, w = self._draw(
            n_samples, n_steps, random_state, return_log_weights, mcmc_steps, imh_steps, **options
        )
        return self._output(x, w, return_log_weights, return_tensor)
