"""ConsistentDistiller: a one-step sampler distilled from a fitted diffusion sampler with no
stored dataset: CDDS (method.md §3), a consistency function on the teacher's probability-flow
ODE, or an invertible flow fitted to the law of the teacher's SDE by weighted maximum
likelihood (issue 27)."""

from __future__ import annotations

import copy
import math
import numbers

import torch
from sklearn.base import clone

from .._core.consistency import coarse_indices, distillation_loss
from .._core.flow import euler_flow, heun_flow
from .._core.grids import uniform_grid
from .._core.logdet import map_log_abs_det
from .._core.networks import ConsistencyNet, FlowNet
from .._core.reference import FLOW_REFERENCES
from .._core.rollout import euler_maruyama, standard_normal
from .._core.training import EMA
from ..energies._guard import reports_model_failures
from . import _validation as v
from ._base import _BaseSampler
from ._diffusion import DiffusionSampler
from ._docs import refinement_doc
from ._flow_student import FLOW_LEARNING_RATE, MOMENT_DRAWS, FlowStudentMixin

_TEACHER_FLOWS = {"euler": euler_flow, "heun": heun_flow}
_LEARNING_RATES = {"consistency": 5e-3, "flow": FLOW_LEARNING_RATE}  # learning_rate='auto'


class ConsistentDistiller(FlowStudentMixin, _BaseSampler):
    """A one-step sampler distilled from a fitted diffusion sampler: one network evaluation
    per sample, with no stored dataset.

    Two students (``student``):

    ``'flow'``: an invertible coupling flow (:class:`~skcds._core.networks.FlowNet`) fitted
    to the law of the teacher's SDE. Each iteration draws fresh trajectories of the
    teacher's ``n_steps``-step SDE with their exact path log-weights and maximises the
    self-normalised weighted log-likelihood of their endpoints (the forward KL), so the
    student's target is ``rho`` itself, not the teacher's biased law; ``reverse_kl`` adds
    the reverse KL on the flow's own draws. The flow's log-density comes with each draw, so
    one-step weights are exact at every dimension (no Jacobian, no fold). ``n_steps=k``
    follows the flow's draw with ``k - 1`` independent Metropolis-Hastings steps that
    propose fresh flow draws: each step leaves ``rho`` invariant, so the law can only move
    closer to ``rho`` (in total variation) as ``k`` grows.

    ``'consistency'`` (CDDS, the paper's algorithm): a consistency function
    ``f(x_t, t) -> x_T`` is trained to map every state of a fitted diffusion sampler's
    probability-flow ODE to the ODE's endpoint. Each iteration integrates the teacher's ODE
    from fresh prior samples up to a random interval of a coarse time grid and pulls the
    student's output at the interval's start towards its output at the interval's end
    (stop-gradient), so no dataset of samples is stored. The parametrisation
    ``f = c_skip x + c_out F`` makes ``f`` the identity at the end time; ``F`` starts as a
    copy of the teacher's network.

    Sampling in one step is ``f(prior sample, 0)``; ``n_steps=k`` runs multistep consistency
    sampling, re-noising with the reference process's marginals between evaluations.
    One-step importance weights are valid: the one-step sampler is a deterministic map whose
    density follows from the prior's by change of variables with its exact Jacobian
    determinant (shared with :class:`SelfConsistentSampler`), with a warning if the map
    provably folds.

    Parameters
    ----------
    teacher : DiffusionSampler
        The diffusion sampler to distil. A fitted one is used as it is (never refit or
        modified); an unfitted one is cloned and fitted first on the same energy.
    energy : Energy, default=None
        Target density; defaults to the fitted teacher's.
    student : {'flow', 'consistency'}, default='flow'
        The one-step student: an invertible flow fitted to the teacher's SDE law, or CDDS's
        consistency function on the teacher's ODE (the paper's algorithm; see above).
    reverse_kl : float, default=0.0
        ``student='flow'``: weight of the reverse KL ``E_q[log q - log rho]`` added to the
        weighted forward KL (needs a differentiable ``log_prob``).
    n_intervals : int, default=17
        ``student='consistency'``: intervals of the coarse training grid, chosen evenly
        among the teacher's ``n_steps`` grid points (the reference code's 18 points on 128
        steps). Multistep sampling may use up to this many steps.
    max_iter : int, default=20_000
        Training iterations (the reference code uses 150 000).
    batch_size : int, default=512
        Teacher trajectories per iteration.
    learning_rate : 'auto' or float, default='auto'
        Initial Adam learning rate, in ``(0, 1]``; it decays in steps to 2% of this value
        over ``max_iter``. ``'auto'``: 5e-3 for the consistency student, 1e-3 for the flow.
    solver : {'euler', 'heun'}, default='euler'
        ``student='consistency'``: solver of the teacher's probability-flow ODE on its own
        grid: Euler (the reference code, one teacher evaluation per step) or Heun (second
        order, two).
    target : {'online', 'ema'}, default='online'
        The target network: the student itself under stop-gradient (reference code) or an
        exponential moving average of it (decay ``target_decay``).
    target_decay : float, default=0.95
        EMA decay of ``target='ema'``.
    loss : {'l2', 'pseudo_huber'}, default='l2'
        Squared error (reference code) or the pseudo-Huber loss of improved consistency
        training.
    device : str or torch.device, default='auto'
        ``'auto'`` picks CUDA when available.
    dtype : {'float32', 'float64'}, default='float32'
        Floating-point type of the student and the samples.
    n_threads : 'auto', int or None, default='auto'
        torch's CPU threads during ``fit``, restored after. ``'auto'``: one for small
        networks, which a busy machine cannot stall (see :ref:`threads`); ``None``:
        torch's setting.
    random_state : None, int or RandomState, default=None
        Seeds a private ``torch.Generator``; torch's global RNG is never used.
    verbose : int, default=0
        ``1`` shows a progress bar.
    warm_start : bool, default=False
        Continue training the fitted student for ``max_iter`` more iterations.
    max_time, early_stopping, n_iter_no_change, tol, monitor_every
        When training stops, as in :class:`DiffusionSampler` (monitored: the one-step
        map's change-of-variables weights).
    callbacks : list of callable, default=None
        Each is called as ``callback(estimator, record)`` after every iteration, e.g.
        :class:`skcds.callbacks.Checkpoint` to save the model periodically.

    Attributes
    ----------
    teacher_ : DiffusionSampler
        The fitted teacher: ``teacher`` itself if it was fitted, else a fitted clone.
    control_ : ConsistencyNet
        The student (online weights).
    energy_ : Energy
        The target the sampler works on, on ``device_`` and in ``dtype``: yours, or its
        whitened view :class:`~skcds.energies.AffineTransformed` (``energy_.base`` is yours)
        when preconditioned; ``energy_.transform`` maps its points to your coordinates.
    preconditioning_ : Preconditioning
        The change of variables chosen before training and why
        (:class:`~skcds.energies.Preconditioning`).
    reference_ : object
        The teacher's reference process.
    history_ : list of dict
        One row per iteration: ``loss``, ``interval`` (the coarse interval trained; the
        consistency student) or ``teacher_ess`` (the normalised ESS of the batch's weights;
        the flow), ``learning_rate``, ``grad_norm``, ``n_nonfinite``, ``skipped``, ``elapsed``.
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
    DiffusionSampler : the teacher.
    SelfConsistentSampler : one-step sampling trained from scratch, without a teacher.

    Notes
    -----
    Sampling uses only the student (``control_``, ``energy_`` and ``reference_``): a saved
    student samples without the teacher.

    The flow student learns from batches weighted by the teacher's path weights: the
    fewer effective draws per batch (``history_['teacher_ess']``), the noisier the mode
    weights it learns; a larger ``batch_size`` or a better teacher helps.

    References
    ----------
    .. [1] P. Jutras-Dubé, P. Pynadath, R. Zhang. "Single-Step Consistent Diffusion Samplers."
       arXiv:2502.07579, 2025.
    .. [2] Y. Song, P. Dhariwal, M. Chen, I. Sutskever. "Consistency Models." ICML, 2023.

    Examples
    --------
    >>> from skcds import ConsistentDistiller, DiffusionSampler
    >>> from skcds.energies import GaussianMixture
    >>> energy = GaussianMixture.grid()
    >>> teacher = DiffusionSampler(n_steps=16, max_iter=5, batch_size=64, random_state=0)
    >>> student = ConsistentDistiller(teacher.fit(energy), n_intervals=4, max_iter=5,
    ...                               batch_size=64, random_state=0).fit()
    >>> student.sample(3).shape
    (3, 2)
    """

    _parameter_constraints = {
        **{k: c for k, c in _BaseSampler._parameter_constraints.items() if k != "n_steps"},
        "student": v.one_of("consistency", "flow"),
        "reverse_kl": v.Constraint(
            numbers.Real, lambda r: r >= 0 and math.isfinite(r), "a float >= 0"
        ),
        "learning_rate": v.auto_or(v.LEARNING_RATE),
        "n_intervals": v.positive_int(),
        "solver": v.one_of(*_TEACHER_FLOWS),
        "target": v.one_of("online", "ema"),
        "target_decay": v.Constraint(numbers.Real, lambda m: 0 <= m < 1, "a float in [0, 1)"),
        "loss": v.one_of("l2", "pseudo_huber"),
    }
    _device_modules = (*_BaseSampler._device_modules, "_teacher_control")
    _ema_attributes = (*_BaseSampler._ema_attributes, "_target_ema")
    # models saved before the flow student existed distilled a consistency function
    _defaults_before_added = {**_BaseSampler._defaults_before_added, "student": "consistency"}

    def __init__(
        self,
        teacher=None,
        energy=None,
        *,
        student: str = "flow",
        reverse_kl: float = 0.0,
        n_intervals: int = 17,
        max_iter: int = 20_000,
        batch_size: int = 512,
        learning_rate="auto",
        solver: str = "euler",
        target: str = "online",
        target_decay: float = 0.95,
        loss: str = "l2",
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
        self.teacher = teacher
        self.energy = energy
        self.student = student
        self.reverse_kl = reverse_kl
        self.n_intervals = n_intervals
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.solver = solver
        self.target = target
        self.target_decay = target_decay
        self.loss = loss
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

    # ---------------------------------------------------------------- fit
    @reports_model_failures
    def fit(self, energy=None, y=None):
        """Distil the teacher on ``energy`` (fitting the teacher first if it is unfitted).

        Parameters
        ----------
        energy : Energy, optional
            Target density; defaults to the ``energy`` parameter, then to the fitted
            teacher's energy. With ``warm_start=True`` on a fitted distiller, none at all
            continues on the fitted ``energy_``.
        y : None
            Ignored; present for scikit-learn API consistency.

        Returns
        -------
        self

        Notes
        -----
        Ctrl-C stops training at the end of the running iteration, with a warning; the model
        keeps every completed iteration and ``warm_start=True`` continues from there. A
        second Ctrl-C stops at once.
        """
        v.validate_params(self, self._parameter_constraints)
        energy = energy if energy is not None else self.energy
        if self.warm_start and hasattr(self, "n_iter_"):
            return super().fit(energy)  # None: continue on the fitted energy_
        self.teacher_ = self._fitted_teacher(energy)
        energy = energy if energy is not None else self.teacher_._user_energy
        if energy.dim != self.teacher_.n_features_in_:
            raise ValueError(
                f"The teacher was fitted on {self.teacher_.n_features_in_} dimensions, but "
                f"'energy' has {energy.dim}."
            )
        n_points = self.n_intervals + 1
        if self.student == "consistency" and n_points > self.teacher_.n_steps + 1:
            raise ValueError(
                f"'n_intervals' must be at most the teacher's n_steps ({self.teacher_.n_steps}); "
                f"got {self.n_intervals}."
            )
        return super().fit(energy)

    def _fitted_teacher(self, energy) -> DiffusionSampler:
        if not isinstance(self.teacher, DiffusionSampler):
            raise TypeError(
                "ConsistentDistiller's 'teacher' must be a DiffusionSampler (fitted or not); "
                f"got {type(self.teacher).__name__}."
            )
        if self.teacher.reference not in FLOW_REFERENCES:
            raise ValueError(
                "ConsistentDistiller distils the probability-flow ODE of DIS: the teacher's "
                f"'reference' must be 'vp'; got {self.teacher.reference!r}."
            )
        if hasattr(self.teacher, "n_iter_"):
            return self.teacher  # used as it is: read, never refit or modified
        if energy is None:
            raise ValueError(
                "The teacher is not fitted, so ConsistentDistiller.fit needs an energy: call "
                "fit(energy), pass energy= to the constructor, or pass a fitted teacher."
            )
        return clone(self.teacher).fit(energy)

    def _make_reference(self):
        return self.teacher_.reference_

    def _check_conditional_support(self) -> None:
        super()._check_conditional_support()
        if self._context_dim != self.teacher_._context_dim:
            raise ValueError(
                f"ConsistentDistiller's energy has contexts of dimension {self._context_dim} "
                f"(0: none), its teacher was fitted on {self.teacher_._context_dim}: distil "
                "a teacher fitted on the same energy."
            )

    def _reads_score(self) -> bool:
        # the teacher's flow is the only dynamics (a saved student may have no teacher)
        teacher = getattr(self, "teacher_", None)
        return teacher is None or teacher._reads_score()

    def _choose_preconditioning(self, energy):
        # the student learns the teacher's flow, in the teacher's coordinates
        return self.teacher_._preconditioning

    @property
    def _learning_rate(self) -> float:
        if self.learning_rate == "auto":
            return _LEARNING_RATES[self.student]
        return self.learning_rate

    def _parameter_groups(self) -> list:
        if self.student == "flow":
            return self.control_.parameter_groups(self._learning_rate)
        return super()._parameter_groups()

    def _build(self, dim: int, generator: torch.Generator) -> ConsistencyNet | FlowNet:
        if self.student == "flow":
            # loc and scale: _initialize
            return FlowNet(dim, context_dim=self._context_dim, generator=generator)
        return ConsistencyNet.from_control(self.teacher_._sampling_control)

    def _initialize(self, energy) -> None:
        super()._initialize(energy)
        teacher = self.teacher_
        control = copy.deepcopy(teacher._sampling_control).requires_grad_(False)
        self._teacher_control = control.to(device=self.device_, dtype=self._dtype)
        self._teacher_n_steps = teacher.n_steps  # sampling needs the grid, not the teacher
        self._target_ema = EMA(self.control_, self.target_decay) if self.target == "ema" else None
        if self.student == "flow":
            contexts = self._domain_contexts(MOMENT_DRAWS, self._generator)
            with torch.no_grad(), self._conditioned(contexts):
                draws = self._teacher_sde(MOMENT_DRAWS, self._generator).x
                self._standardise_flow(self.control_, draws)
        else:
            self._coarse = coarse_indices(teacher.n_steps, self.n_intervals + 1)

    @property
    def _teacher_times(self) -> torch.Tensor:
        """The teacher's time grid, on the student's device and dtype."""
        end = self.reference_.terminal_time
        return uniform_grid(self._teacher_n_steps, end, dtype=self._dtype, device=self.device_)

    # ---------------------------------------------------------------- training
    def _teacher_flow(self, begin: int, end: int, x: torch.Tensor) -> torch.Tensor:
        """The teacher's probability flow from its grid index ``begin`` to ``end``."""
        flow = _TEACHER_FLOWS[self.solver]
        times = self._teacher_times[begin : end + 1]
        args = (self._teacher_control, self.reference_, self._dynamics_energy, times)
        return flow(*args, x, self._teacher_step)

    @property
    def _teacher_step(self) -> torch.Tensor | None:
        """The step-size input of the teacher's control on its grid (None for DIS)."""
        step = self.teacher_._step_conditioning(self.teacher_.n_steps)
        return None if step is None else step.to(self.device_, self._dtype)

    def _teacher_sde(self, n: int, generator: torch.Generator):
        """``n`` draws of the teacher's SDE on its own grid, with their path log-weights."""
        x0 = self._prior(n, generator)
        args = (self._teacher_control, self.reference_, self._dynamics_energy, self._teacher_times)
        return euler_maruyama(*args, x0, step=self._teacher_step, record=False, generator=generator)

    def _flow_training_steps(self):
        """Weighted maximum likelihood of the flow on fresh teacher draws (plus
        ``reverse_kl`` times the reverse KL on its own draws)."""
        with torch.no_grad():
            roll = self._teacher_sde(self._local_batch, self._generator)
        args = (roll.x, roll.log_weights, self.reverse_kl, self._generator)
        loss, logs, n_masked = self._flow_loss(self.control_, *args)
        yield {"loss": loss, **logs}, loss, n_masked

    def _training_steps(self, iteration: int):
        if self.student == "flow":
            yield from self._flow_training_steps()
            return
        n = len(self._coarse) - 1
        interval = int(torch.randint(n, (1,), generator=self._generator, device=self.device_))
        i1, i2 = self._coarse[interval], self._coarse[interval + 1]
        with torch.no_grad():
            x1 = self._teacher_flow(0, i1, self._prior(self._local_batch))
            x2 = self._teacher_flow(i1, i2, x1)
        end = self.reference_.terminal_time
        sigma1, sigma2 = end - self._teacher_times[i1], end - self._teacher_times[i2]
        target = self.control_ if self.target == "online" else self._target_ema.module
        loss, n_masked = distillation_loss(self.control_, target, sigma1, x1, sigma2, x2, self.loss)
        loss = loss / self.n_features_in_
        yield {"loss": loss, "interval": torch.tensor(float(interval))}, loss, n_masked
        if self.target == "ema":
            self._target_ema.update(self.control_)

    # ---------------------------------------------------------------- sampling
    def _sampling_steps(self, n_steps) -> int:
        if n_steps is None:
            return 1
        k = self._check_n(n_steps, "n_steps")
        if k > self.n_intervals and self.student == "consistency":
            raise ValueError(
                f"'n_steps' must be at most n_intervals={self.n_intervals} (the coarse grid the "
                f"student was trained on); got {n_steps}."
            )
        return k

    def _sampling_sigmas(self, n_steps: int) -> list[torch.Tensor]:
        """Noise levels ``T - t`` of the ``n_steps`` evaluations, from ``T`` down, on the
        coarse training grid (evenly spread; ``[T]`` for one step)."""
        positions = coarse_indices(self.n_intervals, n_steps + 1)[:-1]
        end = self.reference_.terminal_time
        return [end - self._teacher_times[self._coarse[p]] for p in positions]

    def _diagnosed_steps(self) -> list[int]:
        return [1]  # the only step count with a tractable density

    def _monitor_options(self) -> tuple[int, dict]:
        return 1, {}  # the one-step map's weights: the only ones the student has

    def _check_exact_weights(self, options: dict) -> None:
        if self.student == "consistency":  # the flow's log-determinant is always exact
            super()._check_exact_weights(options)

    @property
    def _sampling_flow(self):
        return self._sampling_control

    def _sample_chunk(self, n, n_steps, generator, log_weights, log_det="auto"):
        if self.student == "flow":
            return self._sample_flow(n, n_steps, generator, log_weights)
        log_det = self._log_det_method(log_det)
        if log_weights and n_steps > 1:
            raise ValueError(
                "Importance weights of ConsistentDistiller are defined for the one-step "
                "sampler only (n_steps=1): multistep consistency sampling re-noises between "
                f"evaluations, and the density of its output is intractable; got "
                f"n_steps={n_steps}."
            )
        net = self._sampling_control
        sigmas = self._sampling_sigmas(n_steps)
        x0 = self._prior(n, generator)
        x = net(sigmas[0], x0)
        for sigma in sigmas[1:]:
            alpha, var = self.reference_.marginal(self.reference_.terminal_time - sigma)
            noise = standard_normal(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = net(sigma, alpha * x + var.sqrt() * noise)
        if not log_weights:
            return x, None
        with torch.enable_grad():  # the Jacobian of the one-step map
            value, reversed_ = map_log_abs_det(
                lambda z: net(sigmas[0], z), x0, log_det=log_det, generator=generator
            )
        self._warn_if_folds(1, [reversed_])
        log_q = self.reference_.prior_log_prob(x0) - value
        return x, (self._dynamics_energy._log_prob(x) - log_q).detach()

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
        log_det: str = "auto",
        context=None,
    ):
        """Draw samples in ``n_steps`` network evaluations (one by default).

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        n_steps : int, optional
            Number of evaluations ``k``, at most ``n_intervals``; defaults to 1. For
            ``k > 1``, multistep consistency sampling: evaluate, re-noise to the next lower
            noise level with the reference marginals, evaluate again.
        random_state : None, int or RandomState, optional
            ``None`` continues the estimator's own generator; an int gives the same draws on
            every call.
        return_log_weights : bool, default=False
            Also return exact importance log-weights ``log rho(x) - log q(x)`` of the one-step
            map, by change of variables (``n_steps=1`` only; a ``ValueError`` otherwise).
        return_tensor : bool, default=False
            Return torch tensors on the model's device instead of numpy arrays.
        log_det : {'auto', 'exact', 'stochastic'}, default='auto'
            Log-determinant of the weights: ``'exact'`` (batched ``d x d`` Jacobians, with a
            warning if the map provably folds), ``'stochastic'`` (stochastic Lanczos
            quadrature; noisy, so ``exp`` of the weights is biased; no fold check) or
            ``'auto'`` (exact up to 256 dimensions).
        {refinement_parameters}
        {context_parameter}

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        log_weights : ndarray of shape (n_samples,)
            Only when ``return_log_weights=True``.
        """
        options = {"log_det": log_det, "context": context}
        x, w = self._draw(
            n_samples, n_steps, random_state, return_log_weights, mcmc_steps, imh_steps, **options
        )
        return self._output(x, w, return_log_weights, return_tensor)
