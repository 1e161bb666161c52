"""SelfConsistentSampler: SCDS (method.md §4), one network for diffusion sampling and jumps;
or, with ``student='flow'``, a diffusion sampler and an invertible one-step flow trained
together on its own weighted SDE draws (issue 27)."""

from __future__ import annotations

import numbers

import torch

from .._core.consistency import (
    endpoint_score_matching,
    first_jump,
    flow_map_loss,
    monotonicity_penalty,
    one_step_kl,
    one_step_log_variance,
    sample_jumps,
    sampler_jump,
    sampler_jump_jacobian,
    self_consistency_loss,
    volume_consistency,
)
from .._core.networks import ControlNet, FlowNet
from .._core.reference import FLOW_REFERENCES
from .._core.training import EMA
from ..energies._guard import reports_model_failures
from . import _validation as v
from ._diffusion import DiffusionSampler
from ._docs import refinement_doc
from ._flow_student import FLOW_LEARNING_RATE, MOMENT_DRAWS, FlowStudentMixin


def _power_of_two(n) -> bool:
    return n >= 2 and n & (n - 1) == 0


_WEIGHT = v.Constraint(numbers.Real, lambda w: 0 <= w < float("inf"), "a finite float >= 0")
_TEACHER_DECAY = 0.99  # EMA of the self-consistency teacher: a window of ~100 iterations
# kl_weight='auto': the jump's reverse KL raised its ESS at 0.1 (folded at 1); the flow's
# put GMM9's mode weights off at 0.1 (benchmarks/results/flow_distiller_study)
_AUTO_KL_WEIGHT = {"jump": 0.1, "flow": 0.0}


class SelfConsistentSampler(FlowStudentMixin, DiffusionSampler):
    """Self-consistent diffusion sampler: a diffusion sampler and a one-step sampler trained
    together from the energy alone.

    By default (``student='flow'``) the one-step sampler is an invertible coupling flow
    (:class:`~skcds._core.networks.FlowNet`) trained beside the diffusion sampler: each
    iteration takes an optimiser step of the diffusion loss on a batch of SDE paths, as
    :class:`DiffusionSampler`, then one of the flow's self-normalised weighted
    log-likelihood of the same paths' endpoints, weighted by their exact path weights (plus
    ``kl_weight`` times its reverse KL), so the flow learns ``rho`` from the SDE's law, not
    the probability flow's. Its draws come with their exact log-density, so one-step
    weights are exact at every dimension; ``n_steps=k`` adds ``k - 1`` independent
    Metropolis-Hastings steps proposing fresh flow draws, which leave ``rho`` invariant;
    ``method='sde'`` samples the diffusion sampler itself.

    With ``student='jump'`` (SCDS, the paper's design) one step-conditioned control
    ``u(t, x, d)`` is trained from the energy alone. At the grid step ``d = T / N`` it is a
    diffusion sampler, trained with the log-variance loss on SDE paths as
    :class:`DiffusionSampler`; a self-consistency loss makes one Euler step of the
    probability-flow ODE of size ``2d`` land where two steps of size ``d`` land, for every
    power-of-two ``d`` and start on the grid. Sampling with ``k`` steps runs ``k`` Euler
    steps of size ``T / k``: one network evaluation for ``k = 1``.
    Its importance weights are valid in every mode, unlike the paper's one-step "boundary
    likelihood": the ``k``-step sampler is a deterministic map whose density follows from the
    prior by change of variables with the exact Jacobian determinant of each step (see
    :mod:`skcds._core.flow`), so the ELBO of :meth:`score` is a true lower bound of ``log Z``
    and :meth:`estimate_log_normalizer` estimates ``Z`` by importance sampling without bias,
    up to the target mass outside the image of the truncated prior (negligible for targets well
    inside it). If a map provably folds, which invalidates the formula, an
    :class:`~skcds.exceptions.InvalidWeightsWarning` says so.

    Parameters
    ----------
    energy : Energy, default=None
        Target density; may instead be passed to :meth:`fit`.
    n_steps : int, default=32
        Steps ``N`` of the training grid on ``[0, 1]``: of the SDE the flow learns from, or
        of the jump's grid; a power of two. With ``student='jump'``, sampling may use any
        ``k`` that divides it (the paper trains 128). 32 because the flow learns more per
        CPU second from a cheaper SDE whose bias its weights correct (GMM9, 150 s of one
        thread: 0.85 times the W1 floor with 32 steps, 1.21 with 128;
        ``benchmarks/results/flow_distiller_study``).
    max_iter : int, default=20_000
        Training iterations.
    batch_size : int, default=512
        Trajectories per iteration; each contributes one jump to the self-consistency loss.
    learning_rate : float, default=5e-3
        Initial Adam learning rate, in ``(0, 1]``; it decays in steps to 2% of this value
        over ``max_iter``.
    student : {'flow', 'jump'}, default='flow'
        The one-step sampler: an invertible flow trained on the SDE's weighted draws (see
        above; ``update``, ``consistency_weight``, ``consistency_target``,
        ``flow_map_weight`` and ``fold_weight`` then do nothing), or the network's own jump
        (SCDS, the paper's design, with the terms below).
    update : {'alternate', 'sum'}, default='alternate'
        ``'alternate'``: an optimiser step on the diffusion loss, then one on the
        self-consistency loss at the updated weights (the reference code). ``'sum'``: one step
        on ``diffusion + consistency_weight * consistency`` (the paper's Algorithm 2).
    consistency_weight : float, default=1.0
        Weight of the self-consistency loss (``update='sum'``) or scale of its step
        (``'alternate'``).
    consistency_target : {'online', 'ema'}, default='online'
        Network that takes the two half jumps of the self-consistency target: the online
        weights under stop-gradient (the paper) or an exponential moving average of them
        (decay 0.99).
    flow_map_weight : float, default=1.0
        Weight of the flow-map self-distillation (beyond the paper): on a quarter of the
        batch, the network's own ``N``-step flow (the diffusion sampler it also is) is run
        from the prior, and the one-step jump and one random jump per row are regressed onto
        it. Its targets are not bootstrapped through ``log2 N`` levels of jumps, and they lie
        where a ``k``-step sampler goes. ``0`` turns it off.
    fold_weight : float, default=10.0
        Weight of the monotonicity penalty (beyond the paper) on the exact Jacobians of the
        first jump of the 1-step sampler and of one ``k``-step sampler per iteration: a hinge
        on the smallest eigenvalue of ``(J + J^T) / 2`` below 0.01. The 1-step map is
        penalised at the batch's prior draws and at as many prior draws widened 1.5 times
        (clamped to the prior's box), so that its tails, which few training draws visit, stay
        monotone too. A map monotone everywhere is injective, so its change-of-variables
        weights stay valid. ``0`` turns it off.
    kl_weight : 'auto' or float, default='auto'
        Weight of the one-step map's reverse KL to the target from its exact density
        (beyond the paper): it trains the one-step sampler on the energy directly, past the
        quality of its own many-step flow. Needs the target's gradient, so it is skipped
        when ``langevin=False``. A weight of 1 made the one-step map fold (18 % of samples
        reversed) in ``benchmarks/one_step_study.py``. ``flow_map_weight=0, fold_weight=0,
        kl_weight=0`` is the paper's algorithm. With ``student='flow'``: the weight of the
        flow's reverse KL beside its weighted forward KL. ``'auto'``: 0.1 for the jump, 0
        for the flow.
    loss : {'log_variance', 'kl'}, default='log_variance'
        Divergence of the diffusion loss, as in :class:`DiffusionSampler`.
    reference : {'vp'}, default='vp'
        Reference (noising) process.
    width : int, default=64
        Width of the control network.
    langevin : bool, default=True
        Give the control its Langevin-style term (the target score at every step);
        ``False`` drops it, for energies without a (cheap) gradient, as in
        :class:`DiffusionSampler`.
    precondition : {'auto', 'laplace', 'none'}, default='auto'
        The change of variables training happens in, as in :class:`DiffusionSampler`.
    execution : {'auto', 'eager', 'cuda_graph'}, default='auto'
        How the training SDE rollout runs, as in :class:`DiffusionSampler`.
    device : str or torch.device, default='auto'
        ``'auto'`` picks CUDA when available.
    dtype : {'float32', 'float64'}, default='float32'
        Floating-point type of the network and samples.
    n_threads : 'auto', int or None, default='auto'
        torch's CPU threads during ``fit``, restored after. ``'auto'``: one for small
        networks, which a busy machine cannot stall (see :ref:`threads`); ``None``:
        torch's setting.
    random_state : None, int or RandomState, default=None
        Seeds a private ``torch.Generator``; torch's global RNG is never used.
    verbose : int, default=0
        ``1`` shows a progress bar.
    warm_start : bool, default=False
        Continue training the fitted model for ``max_iter`` more iterations.
    max_time, early_stopping, n_iter_no_change, tol, monitor_every
        When training stops, as in :class:`DiffusionSampler` (monitored: the flow's
        one-step weights, or with ``student='jump'`` the ``n_steps``-step SDE's path
        weights).
    callbacks : list of callable, default=None
        Each is called as ``callback(estimator, record)`` after every iteration, e.g.
        :class:`skcds.callbacks.Checkpoint` to save the model periodically.

    Attributes
    ----------
    control_ : torch.nn.Module
        The step-conditioned control (online weights).
    flow_ : FlowNet or None
        The flow student (online weights) with ``student='flow'``.
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
        One row per iteration: ``loss`` (diffusion), ``consistency_loss``, and where enabled
        ``flow_map_loss``, ``fold_penalty`` and ``one_step_kl`` (each unweighted, divided by
        the dimension; ``one_step_kl`` is ``KL - log Z``, so it may be negative), or with
        ``student='flow'`` ``flow_loss`` and ``teacher_ess`` (the normalised ESS of the
        batch's path weights the flow learns from), ``learning_rate``, ``grad_norm``,
        ``n_nonfinite``, ``skipped``, ``elapsed``.
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
    DiffusionSampler : the many-step diffusion sampler.
    ConsistentDistiller : one-step sampling distilled from a fitted DiffusionSampler.

    References
    ----------
    .. [1] P. Jutras-Dubé, P. Pynadath, R. Zhang. "Single-Step Consistent Diffusion Samplers."
       arXiv:2502.07579, 2025.

    Examples
    --------
    >>> from skcds import SelfConsistentSampler
    >>> from skcds.energies import GaussianMixture
    >>> sampler = SelfConsistentSampler(n_steps=16, max_iter=5, batch_size=64, random_state=0)
    >>> sampler.fit(GaussianMixture.grid()).sample(3).shape
    (3, 2)
    >>> sampler.sample(3, n_steps=4).shape
    (3, 2)
    """

    _parameter_constraints = {
        **DiffusionSampler._parameter_constraints,
        "n_steps": v.Constraint(numbers.Integral, _power_of_two, "a power of two >= 2"),
        # the jumps follow the probability-flow ODE: only references that have one
        "reference": v.one_of(*FLOW_REFERENCES),
        "student": v.one_of("jump", "flow"),
        "update": v.one_of("alternate", "sum"),
        "consistency_weight": _WEIGHT,
        "consistency_target": v.one_of("online", "ema"),
        "flow_map_weight": _WEIGHT,
        "fold_weight": _WEIGHT,
        "kl_weight": v.auto_or(_WEIGHT),
    }
    _device_modules = (*DiffusionSampler._device_modules, "flow_")
    _ema_attributes = ("_ema", "_teacher", "_flow_ema")
    # models saved before these terms existed were trained by the paper's algorithm
    _defaults_before_added = {
        **DiffusionSampler._defaults_before_added,
        "student": "jump",
        "flow_map_weight": 0.0,
        "fold_weight": 0.0,
        "kl_weight": 0.0,
    }
    # the fold penalty's k-step sampler: its first jump only, or a random one of its jumps
    _penalise_later_jumps = False
    _sde_match_weight = 0.0  # study switch
    # study switches: the reverse KL also on the last jump of the k-step sampler drawn for the
    # fold penalty (its earlier jumps fixed), and the fold penalty on that jump too
    _kl_last_jump = False
    _penalise_last_jump = False
    # study switch: the one-step term as the log-variance of its weights instead of the KL
    _one_step_log_variance = False
    # study switch: a jump of any length adds one grid step's worth of the Langevin term
    _damp_long_jumps = False
    # study switches: jump lengths of the self-consistency loss drawn in proportion to their
    # level (long jumps most often), and the weight of OSDS's volume consistency
    _favour_long_jumps = False
    _volume_weight = 0.0
    # the 1-step map's fold penalty also at as many prior draws widened by this factor
    # (clamped to the truncated prior's box): they visit the tails, where the last folds are
    # (MW54, two seeds: 34 and 43 of 100 000 prior draws reversed without, 2 and 1 with;
    # benchmarks/results/one_step_study_s24); 0 gives the default of before (a study switch)
    _fold_spread = 1.5
    # study switch: weight of the denoising score matching of the grid control on the SDE's
    # endpoints (its flow carried to where its SDE ends)
    _score_match_weight = 0.0

    def __init__(
        self,
        energy=None,
        *,
        n_steps: int = 32,
        max_iter: int = 20_000,
        batch_size: int = 512,
        learning_rate: float = 5e-3,
        student: str = "flow",
        update: str = "alternate",
        consistency_weight: float = 1.0,
        consistency_target: str = "online",
        flow_map_weight: float = 1.0,
        fold_weight: float = 10.0,
        kl_weight="auto",
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
        super().__init__(
            energy,
            n_steps=n_steps,
            max_iter=max_iter,
            batch_size=batch_size,
            learning_rate=learning_rate,
            loss=loss,
            reference=reference,
            width=width,
            langevin=langevin,
            precondition=precondition,
            execution=execution,
            device=device,
            dtype=dtype,
            n_threads=n_threads,
            random_state=random_state,
            verbose=verbose,
            warm_start=warm_start,
            callbacks=callbacks,
            max_time=max_time,
            early_stopping=early_stopping,
            n_iter_no_change=n_iter_no_change,
            tol=tol,
            monitor_every=monitor_every,
        )
        self.student = student
        self.update = update
        self.consistency_weight = consistency_weight
        self.consistency_target = consistency_target
        self.flow_map_weight = flow_map_weight
        self.fold_weight = fold_weight
        self.kl_weight = kl_weight

    def _initialize(self, energy) -> None:
        super()._initialize(energy)
        ema = self.consistency_target == "ema"
        self._teacher = EMA(self.control_, cap=_TEACHER_DECAY) if ema else None

    def _update_ema(self, iteration: int) -> None:
        super()._update_ema(iteration)
        if getattr(self, "_teacher", None) is not None:
            self._teacher.update(self.control_)
        if self.student == "flow" and self._ema_due(iteration):
            if self._flow_ema is None:
                self._flow_ema = EMA(self.flow_)
            self._flow_ema.update(self.flow_)

    def _build_more(self, generator: torch.Generator) -> None:
        """The flow student, at the scale of the untrained sampler's SDE draws."""
        self.flow_, self._flow_ema = None, None
        if self.student != "flow":
            return
        flow = FlowNet(self.n_features_in_, context_dim=self._context_dim, generator=generator)
        self.flow_ = flow.to(device=self.device_, dtype=self._dtype)
        seed = int(torch.randint(2**62, (1,), generator=generator))
        draws = torch.Generator(device=self.device_).manual_seed(seed)
        with torch.no_grad(), self._conditioned(self._domain_contexts(MOMENT_DRAWS, draws)):
            x, _ = self._sample_chunk(MOMENT_DRAWS, self.n_steps, draws, False, method="sde")
        self._standardise_flow(self.flow_, x)

    def _parameter_groups(self) -> list:
        groups = [{"params": list(self.control_.parameters())}]
        if self.student == "flow":
            groups += self.flow_.parameter_groups(FLOW_LEARNING_RATE)
        return groups

    @property
    def _sampling_flow(self):
        return self._flow_ema.module if self._flow_ema is not None else self.flow_

    @property
    def _teacher_control(self):
        """The network that takes the targets' steps (EMA weights or the online ones)."""
        teacher = getattr(self, "_teacher", None)
        return None if teacher is None else teacher.module

    def _build(self, dim: int, generator: torch.Generator) -> ControlNet:
        return ControlNet(
            dim,
            width=self.width,
            langevin="lerp" if self.langevin else "none",
            step_conditioned=True,
            terminal_time=self.reference_.terminal_time,
            langevin_step=self.reference_.terminal_time / self.n_steps
            if self._damp_long_jumps
            else None,
            context_dim=self._context_dim,
            generator=generator,
        )

    def _step_conditioning(self, n_steps: int) -> torch.Tensor:
        step = self.reference_.terminal_time / n_steps
        return torch.tensor([step], dtype=self._dtype, device=self.device_)

    def _consistency_loss(self, roll) -> tuple[torch.Tensor, dict]:
        """The jump losses of one iteration: ``(weighted sum, {history column: term})``,
        every term divided by the dimension."""
        starts, lengths = sample_jumps(
            self.n_steps,
            self._local_batch,
            generator=self._generator,
            device=self.device_,
            favour_long=self._favour_long_jumps,
        )
        args = (self.control_, self.reference_, self._dynamics_energy, self._grid(self.n_steps))
        xs, scores = roll.xs.detach(), roll.scores.detach()
        # rows masked here are those of trajectories the diffusion loss already counted
        teacher = self._teacher_control
        terms = {
            "consistency_loss": (
                self.consistency_weight,
                self_consistency_loss(*args, xs, scores, starts, lengths, teacher)[0],
            )
        }
        m = max(2, self._local_batch // 4)
        x0, score0 = xs[0, :m], scores[0, :m]  # the rollout's scores: not evaluated again
        if self.flow_map_weight:
            jumps = (starts[:m], lengths[:m])  # rows m.. keep their own jumps above
            flow_map = flow_map_loss(*args, x0, *jumps, teacher, score0)[0]
            terms["flow_map_loss"] = (self.flow_map_weight, flow_map)
        if self.fold_weight or self._kl_weight:
            terms.update(self._one_step_terms(args, x0, score0, xs[-1]))
        if self._score_match_weight:
            ends = endpoint_score_matching(*args, xs[-1], self._generator)
            terms["score_match"] = (self._score_match_weight, ends)
        if self._volume_weight:
            terms["volume_consistency"] = (self._volume_weight, self._volume_term(args, x0, score0))
        dim = self.n_features_in_
        total = sum(weight * term for weight, term in terms.values()) / dim
        return total, {name: term / dim for name, (_, term) in terms.items()}

    @property
    def _kl_weight(self) -> float:
        """The reverse KL differentiates the target: not for gradient-free energies."""
        if not self.langevin:
            return 0.0
        if self.kl_weight == "auto":
            return _AUTO_KL_WEIGHT[self.student]
        return self.kl_weight

    def _one_step_terms(self, args, x0, score0, sde_ends=None) -> dict:
        """Terms from the exact Jacobians of first jumps (from t = 0: no Hessian): the
        monotonicity penalty of the 1-step map and of one k-step sampler's first jump,
        k = 2, 4, ... drawn in turn, and the 1-step map's reverse KL. ``score0``: the target
        score at ``x0``, recorded by the rollout."""
        control, process, energy, times = args
        total = times[-1]
        x1, jac = first_jump(control, process, energy, x0, total, score0)
        terms = {}
        if self._kl_weight:
            log_abs = torch.linalg.slogdet(jac)[1]
            divergence = one_step_log_variance if self._one_step_log_variance else one_step_kl
            terms["one_step_kl"] = (self._kl_weight, divergence(process, energy, x0, x1, log_abs))
        if self._sde_match_weight:
            terms["sde_match"] = (self._sde_match_weight, self._sde_match(x1, sde_ends))
        if self.fold_weight:
            k = self._random_sampler_steps()
            index = 0
            if self._penalise_later_jumps:
                index = int(torch.randint(0, k, (), generator=self._generator, device=self.device_))
            jac_k = sampler_jump_jacobian(control, process, energy, x0, total / k, index, score0)
            penalty = monotonicity_penalty(jac)[0] + monotonicity_penalty(jac_k)[0]
            if self._fold_spread:
                penalty = penalty + self._tail_penalty(args, x0.shape[0])
            if self._kl_last_jump and self._kl_weight:
                end, jac_last = sampler_jump(control, process, energy, x0, total / k, k - 1, score0)
                log_abs = torch.linalg.slogdet(jac_last)[1]
                kl_last = one_step_kl(process, energy, x0, end, log_abs)
                terms["last_jump_kl"] = (self._kl_weight, kl_last)
                if self._penalise_last_jump:
                    penalty = penalty + monotonicity_penalty(jac_last)[0]
            terms["fold_penalty"] = (self.fold_weight, penalty)
        return terms

    def _tail_penalty(self, args, m: int):
        """The 1-step map's monotonicity penalty at ``m`` prior draws scaled by
        ``_fold_spread``: folds left in the prior's tails, where few training rows land."""
        control, process, energy, times = args
        radius = process.truncation_radius
        x = (self._fold_spread * self._prior(m)).clamp(-radius, radius)
        _, jac = first_jump(control, process, energy, x, times[-1])
        return monotonicity_penalty(jac)[0]

    def _random_sampler_steps(self) -> int:
        """A number of sampling steps ``k = 2, 4, ..., N``, uniform over the levels."""
        levels = self.n_steps.bit_length() - 1
        level = torch.randint(1, levels + 1, (), generator=self._generator, device=self.device_)
        return 2 ** int(level)

    def _volume_term(self, args, x0, score0):
        """Volume consistency of a jump of ``2 T / k`` from t = 0 against two of ``T / k``,
        ``k = 2, 4, ..., N`` drawn in turn (``k = 2``: the 1-step map against the 2-step one)."""
        control, process, energy, times = args
        k = self._random_sampler_steps()
        teacher = self._teacher_control
        return volume_consistency(control, process, energy, x0, times[-1] / k, teacher, score0)

    def _sde_match(self, x1, sde_ends):
        """d x squared sliced W2 between one-step samples and the SDE's endpoints (study)."""
        import ot

        keep = torch.isfinite(sde_ends).all(-1)
        ends = sde_ends[keep]
        d = x1.shape[-1]
        proj = torch.randn(d, 64, generator=self._generator, device=self.device_, dtype=x1.dtype)
        proj = proj / proj.norm(dim=0, keepdim=True)
        keep1 = torch.isfinite(x1).all(-1)
        return d * ot.sliced_wasserstein_distance(x1[keep1], ends, projections=proj) ** 2

    def _training_steps(self, iteration: int):
        loss, n_nonfinite, roll = self._diffusion_loss()
        if self.student == "flow":
            yield {"loss": loss}, loss, n_nonfinite, list(self.control_.parameters())
            args = (roll.x, roll.log_weights, self._kl_weight, self._generator)
            flow_loss, logs, _ = self._flow_loss(self.flow_, *args)
            yield {"flow_loss": flow_loss, **logs}, flow_loss, 0, list(self.flow_.parameters())
            return
        if self.update == "sum":
            consistency, terms = self._consistency_loss(roll)
            yield {"loss": loss, **terms}, loss + consistency, n_nonfinite
        else:
            yield {"loss": loss}, loss, n_nonfinite
            consistency, terms = self._consistency_loss(roll)  # at the updated weights
            yield terms, consistency, 0

    def _sampling_steps(self, n_steps) -> int:
        if n_steps is None:
            return 1
        k = self._check_n(n_steps, "n_steps")
        if self.n_steps % k and self.student == "jump":
            options = ", ".join(str(2**j) for j in range(self.n_steps.bit_length()))
            raise ValueError(
                f"'n_steps' must divide the training grid of {self.n_steps} steps (one of "
                f"{options}); got {n_steps}."
            )
        return k

    def _diagnosed_steps(self) -> list[int]:
        if self.student == "flow":
            return [1]  # k > 1 adds Metropolis-Hastings steps: no density
        return sorted({*(k for k in (1, 2, 4, 8) if k <= self.n_steps), self.n_steps})

    def _monitor_options(self) -> tuple[int, dict]:
        if self.student == "flow":
            return 1, {"method": "flow"}  # stop on what sample() gives by default
        return super()._monitor_options()

    @property
    def _default_method(self) -> str:
        return "flow" if self.student == "flow" else "ode"

    def _check_exact_weights(self, options: dict) -> None:
        method = options.get("method") or self._default_method
        if method != "flow":  # the flow's log-determinant is always exact
            super()._check_exact_weights({**options, "method": method})

    def _sample_chunk(self, n, n_steps, generator, log_weights, method=None, log_det="auto"):
        method = method or self._default_method
        if method == "flow":
            if self.student != "flow":
                raise ValueError(
                    "method='flow' samples from the flow student, which this sampler does "
                    "not have (student='jump'); fit with student='flow', or use method='ode' "
                    "or 'sde'."
                )
            return self._sample_flow(n, n_steps, generator, log_weights)
        return super()._sample_chunk(n, n_steps, generator, log_weights, method, log_det)

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
        method=None,
        log_det: str = "auto",
        context=None,
    ):
        """Draw samples in ``n_steps`` network evaluations (one by default).

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        n_steps : int, optional
            Number of sampling steps ``k``; any divisor of the training ``n_steps``
            (1, 2, 4, …), any ``k >= 1`` with ``student='flow'``. Defaults to 1.
        random_state : None, int or RandomState, optional
            ``None`` continues the estimator's own generator; an int gives the same draws on
            every call.
        return_log_weights : bool, default=False
            Also return exact importance log-weights ``log rho(x) - log q(x)``: by change of
            variables through the ``k``-step map (``method='ode'``; a ``d x d`` Jacobian per
            sample and step, and the target's Hessian for steps after the first), or the
            discrete path weights of the SDE (``method='sde'``).
        return_tensor : bool, default=False
            Return torch tensors on the model's device instead of numpy arrays.
        method : {'flow', 'ode', 'sde'}, optional
            ``'flow'`` (the default with ``student='flow'``): the flow's draw, then
            ``k - 1`` independent Metropolis-Hastings steps proposing fresh flow draws
            (weights for ``k = 1`` only). ``'ode'`` (the default with ``student='jump'``):
            ``k`` Euler jumps of the probability flow (the consistent sampler).
            ``'sde'``: Euler–Maruyama on the controlled SDE with ``k`` steps (the diffusion
            sampler the network also is; meant for ``k = n_steps``).
        log_det : {'auto', 'exact', 'stochastic'}, default='auto'
            Log-determinants of the ODE weights: ``'exact'`` (batched ``d x d`` Jacobians,
            with a warning if the map provably folds), ``'stochastic'`` (stochastic Lanczos
            quadrature; noisy, so ``exp`` of the weights is biased; no fold check) or
            ``'auto'`` (exact up to 256 dimensions). See the user guide.
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
