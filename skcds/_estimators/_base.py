"""The scikit-learn layer shared by every sampler: the fit template, sampling in chunks,
log Z estimation, scoring, training history, callbacks and CPU-portable persistence.
Subclasses fill small hooks; no sampler mathematics lives here."""

from __future__ import annotations

import copy
import inspect
import math
import numbers
import signal
import threading
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._core import distributed, mcmc
from .._core.reference import get_reference
from .._core.threads import fit_threads, intra_op_threads
from .._core.training import (
    EMA,
    apply_clip_schedule,
    flat_parameters,
    make_optimizer,
    make_scheduler,
    optimizer_step,
)
from .._version import __version__, is_compatible
from .._warnings import weight_check
from ..energies import ConditionalEnergy
from ..energies._guard import dynamics_view, reports_model_failures
from ..energies._precondition import Preconditioning, precondition
from ..exceptions import (
    ConvergenceWarning,
    EnergyError,
    IncompatibleModelError,
    InvalidWeightsWarning,
    NonFiniteWarning,
    UnreliableWeightsWarning,
)
from . import _validation as v
from ._context import ConditioningMixin
from ._docs import refinement_doc
from ._preparation import check_energy, prepare_energy
from ._stopping import MONITOR_SAMPLES, Stopper

_SAMPLE_CHUNK = 65_536
_MCMC_PILOT = 256  # chains that tune the MALA step of sample(mcmc_steps=...), then discarded
_EMA_WINDOW, _EMA_EVERY = 1500, 5
_NONFINITE_WINDOW, _NONFINITE_WARN_RATE = 100, 0.1  # warn above 10% over 100 iterations
_UNPICKLED = ("_captured",)
EXACT_LOG_DET_MAX_DIM = 256  # log_det='auto' forms d x d Jacobians up to this dimension


def _map_tensors(obj, fn):
    """Apply ``fn`` to every tensor in nested dicts, lists and tuples (optimizer states)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(val, fn) for k, val in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(val, fn) for val in obj)
    return obj


class _DeferredInterrupt:
    """Within the block, a first SIGINT only sets ``requested``; a second one raises
    ``KeyboardInterrupt`` at once. Signal handlers can be set in the main thread only:
    elsewhere the block changes nothing."""

    def __enter__(self):
        self.requested, self._previous = False, None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc_info) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def check_saved_version(owner: str, version: str | None) -> None:
    """Refuse a pickle written by another minor version of skcds (or by none)."""
    if not is_compatible(version):
        raise IncompatibleModelError(
            f"This {owner} was saved by skcds {version or '(unknown)'}; "
            f"skcds {__version__} cannot load it. Refit it or install that version."
        )


class _BaseSampler(ConditioningMixin, DensityMixin, BaseEstimator):
    """Template for skcds samplers; see :class:`skcds.DiffusionSampler` for the parameters."""

    _device_modules = ("control_", "energy_")  # moved to CPU for pickling, back on loading
    _ema_attributes = ("_ema",)  # EMA objects whose modules are moved likewise

    _parameter_constraints: dict = {
        "n_steps": v.positive_int(),
        "max_iter": v.positive_int(),
        "batch_size": v.Constraint(int, lambda n: n >= 2, "an int >= 2"),
        "learning_rate": v.LEARNING_RATE,
        "verbose": v.Constraint(int, lambda n: n >= 0, "an int >= 0"),
        "warm_start": v.Constraint(bool, None, "a bool"),
        "dtype": v.DTYPE,
        "device": v.DEVICE,
        "n_threads": v.N_THREADS,
        "random_state": v.RANDOM_STATE,
        "callbacks": v.CALLBACKS,
        "max_time": v.optional(v.positive_float()),
        "early_stopping": v.Constraint(bool, None, "a bool"),
        "n_iter_no_change": v.positive_int(),
        "tol": v.Constraint(numbers.Real, lambda t: t >= 0 and math.isfinite(t), "a float >= 0"),
        "monitor_every": v.positive_int(),
    }
    # values that reproduce how a model saved before a parameter existed was trained, where
    # they differ from the parameter's default: before early stopping, for max_iter
    _defaults_before_added: dict = {"early_stopping": False}

    # ---------------------------------------------------------------- hooks
    def _build(self, dim: int, generator: torch.Generator) -> torch.nn.Module:
        """Return the trainable module (on CPU; the template moves it)."""
        raise NotImplementedError

    def _build_more(self, generator: torch.Generator) -> None:
        """Build further trained modules, after ``control_`` and before the optimiser."""

    def _training_steps(self, iteration: int):
        """Yield ``(logs, loss, n_nonfinite)`` once per optimiser step of one iteration.

        The loop steps the optimiser on each ``loss`` before resuming the generator, so a
        later loss of the same iteration sees the updated parameters (alternating updates).
        ``logs`` maps ``history_`` columns to the loss terms (tensors) to record. A fourth
        element, a list of parameters, limits the step to them (default: all of
        :meth:`_parameter_groups`'s).
        """
        raise NotImplementedError

    def _sample_chunk(self, n: int, n_steps: int, generator, log_weights: bool, **options):
        """Return ``(x, log_w or None)`` tensors for ``n`` samples."""
        raise NotImplementedError

    # ---------------------------------------------------------------- fit
    @reports_model_failures
    def fit(self, energy=None, y=None):
        """Train the sampler on ``energy`` (or on the constructor's ``energy``).

        Parameters
        ----------
        energy : Energy, optional
            Target density; defaults to the ``energy`` parameter. With ``warm_start=True``
            on a fitted sampler, none at all continues on the fitted ``energy_``.
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
        owner = type(self).__name__
        energy = energy if energy is not None else self.energy
        if self.warm_start and hasattr(self, "n_iter_"):
            if energy is not None:
                self._replace_energy(check_energy(energy, owner))
        else:
            self._initialize(check_energy(energy, owner))
        self._ema_start = self.n_iter_ + max(0, self.max_iter - _EMA_WINDOW)
        self._nonfinite_warned = False
        work = (self._local_batch, self.control_, self.n_features_in_)
        with intra_op_threads(fit_threads(self.n_threads, self.device_, *work)):
            self._train(self.max_iter)
        return self

    def _initialize(self, energy) -> None:
        self.device_ = v.resolve_device(self.device)
        self._dtype = v.resolve_dtype(self.dtype)
        self._generator = v.make_generator(self.random_state, self.device_)
        self._check_world()
        # every rank must start from the same weights and draw the same global batch
        self._generator.manual_seed(distributed.broadcast_int(self._generator.initial_seed()))
        init_generator = torch.Generator().manual_seed(int(self._generator.initial_seed()) + 1)
        self.reference_ = self._make_reference()
        self.energy_, self.preconditioning_ = prepare_energy(
            energy,
            device=self.device_,
            dtype=self._dtype,
            probe=self._prior(16, dim=energy.dim),
            score=self._reads_score(),
            preconditioning=self._choose_preconditioning,
        )
        self.n_features_in_ = energy.dim
        self._check_conditional_support()
        module = self._build(energy.dim, init_generator)
        self.control_ = module.to(device=self.device_, dtype=self._dtype)
        self._ema, self._captured = None, {}  # before _build_more: it may sample
        self._build_more(init_generator)
        self._optimizer = make_optimizer(self._parameter_groups(), self._learning_rate)
        self._scheduler = make_scheduler(self._optimizer, self.max_iter)
        self.history_, self.n_iter_ = [], 0

    @property
    def _learning_rate(self) -> float:
        """The initial learning rate (``learning_rate``, where a sampler has no 'auto')."""
        return self.learning_rate

    def _parameter_groups(self) -> list:
        """What the optimiser trains: ``control_``'s parameters (or parameter groups)."""
        return list(self.control_.parameters())

    def _replace_energy(self, energy) -> None:
        """A warm start on ``energy``: same dimension, checked on a probe batch of its own
        (the training generator's draws stay those of an uninterrupted run)."""
        if energy.dim != self.n_features_in_:
            raise ValueError(
                f"{type(self).__name__} was fitted on {self.n_features_in_} dimensions; a warm "
                f"start cannot continue on an energy of {energy.dim}."
            )
        context_dim = getattr(energy, "context_dim", 0)
        if context_dim != self._context_dim:
            raise ValueError(
                f"{type(self).__name__} was fitted on contexts of dimension "
                f"{self._context_dim} (0: none); a warm start cannot continue on an energy "
                f"with contexts of dimension {context_dim}."
            )
        probe_generator = torch.Generator(device=self.device_).manual_seed(0)
        self.energy_, _ = prepare_energy(
            energy,
            device=self.device_,
            dtype=self._dtype,
            probe=self._prior(16, probe_generator),
            score=self._reads_score(),
            preconditioning=self._preconditioning,
        )
        self._captured = {}

    def _choose_preconditioning(self, energy) -> Preconditioning:
        """The change of variables of this fit (:func:`skcds.energies.precondition`)."""
        scale = getattr(self, "_prior_scale", None)  # study switch: a scalar change of scale
        if scale is not None:
            loc, tril = np.zeros(energy.dim), scale * np.eye(energy.dim)
            return Preconditioning("diagonal", f"prior scale {scale} (study)", loc, tril)
        if isinstance(energy, ConditionalEnergy):
            return self._family_preconditioning()
        seed = int(self._generator.initial_seed()) + 2
        return precondition(energy, self.precondition, seed=seed % 2**32)

    def _family_preconditioning(self) -> Preconditioning:
        """A family of densities trains in the user's coordinates (one whitening would
        serve one member only)."""
        if self.precondition not in ("auto", "none"):
            raise ValueError(
                f"{type(self).__name__}: precondition={self.precondition!r} whitens one "
                "density; a ConditionalEnergy (a family over a context) needs "
                "precondition='auto' or 'none' (both train in your coordinates)."
            )
        return Preconditioning("none", "a family of densities (ConditionalEnergy)")

    @property
    def _user_energy(self):
        """The fitted energy in the user's coordinates (``energy_`` before preconditioning)."""
        return self.energy_ if self._preconditioning.method == "none" else self.energy_.base

    @property
    def _preconditioning(self) -> Preconditioning:
        """``preconditioning_``; none for a model saved before preconditioning existed."""
        return getattr(self, "preconditioning_", Preconditioning("none", "saved without"))

    def _make_reference(self):
        return get_reference(self.reference)

    def _reads_score(self) -> bool:
        """Whether the dynamics read the target score (the control's Langevin term)."""
        return True

    @property
    def _dynamics_energy(self):
        """``energy_`` as the training and sampling loops see it: outputs checked, and
        without its score if the dynamics never read it."""
        return dynamics_view(self._member_energy, self._reads_score())

    def _prior(self, n: int, generator=None, dim=None):
        def draw(m: int) -> torch.Tensor:
            return self.reference_.prior_sample(
                m,
                self.energy_.dim if dim is None else dim,
                generator=generator or self._generator,
                dtype=self._dtype,
                device=self.device_,
            )

        return distributed.shard(draw, n)

    @property
    def _local_batch(self) -> int:
        """Trajectories this process rolls out per iteration: ``batch_size`` over the ranks
        when training data-parallel (:mod:`skcds._core.distributed`)."""
        return self.batch_size // distributed.active_size()

    def _check_world(self) -> None:
        world = distributed.world_size()
        if self.batch_size % world:
            raise ValueError(
                f"{type(self).__name__} trains data-parallel on {world} processes, so "
                f"'batch_size' (the global batch, split evenly over the ranks) must be a "
                f"multiple of {world}; got {self.batch_size}."
            )

    def _train(self, n_iter: int) -> None:
        """The training loop: ``n_iter`` times :meth:`_iteration` and the callbacks.

        Ctrl-C (SIGINT) is deferred to the end of the running iteration, so an interrupted
        fit keeps a consistent model: parameters, optimiser, schedule, EMA and ``history_``
        all at the last completed iteration. A second Ctrl-C interrupts at once, without
        that guarantee (for a fit stuck in a user's energy).
        """
        # the clock reading at which `elapsed` (seconds of training, all fits) was zero
        origin = time.perf_counter() - (self.history_[-1]["elapsed"] if self.history_ else 0.0)
        self._check_world()
        quiet = self.verbose < 1 or distributed.rank() != 0
        bar = tqdm(total=n_iter, disable=quiet, desc=type(self).__name__)
        stopper, self.stop_reason_ = Stopper(self), "max_iter"
        try:
            with _DeferredInterrupt() as interrupt, distributed.sharding(True):
                for _ in range(n_iter):
                    record = self._iteration(origin)
                    if record is None:  # diverged: stopped with a warning
                        self.stop_reason_ = "diverged"
                        break
                    converged = stopper.monitored(record["iteration"]) and stopper.converged(
                        self._monitor(record)
                    )
                    self._warn_if_often_nonfinite()
                    for callback in self.callbacks or ():
                        callback(self, record)
                    bar.set_postfix(self._postfix(record), refresh=False)
                    bar.update()
                    if distributed.any_rank(interrupt.requested, self.device_):  # all stop together
                        raise KeyboardInterrupt
                    if converged:
                        self.stop_reason_ = "converged"
                        break
                    if distributed.any_rank(stopper.out_of_time(), self.device_):
                        self.stop_reason_ = "max_time"
                        break
        except KeyboardInterrupt:
            self.stop_reason_ = "interrupted"
            warnings.warn(
                f"{type(self).__name__}.fit interrupted by the user after {self.n_iter_} "
                "iterations; the model keeps the last completed iteration.",
                stacklevel=3,
            )
        finally:
            bar.close()

    def _monitor_options(self) -> tuple[int, dict]:
        """Steps and sampling options of the monitored ELBO: valid weights, cheaply."""
        return self.n_steps, {}

    def _monitor(self, record: dict) -> float:
        """ELBO and ESS of a fresh batch, into ``record`` (and ``history_``); returns the
        ELBO (``-inf`` if no weight is finite). Its own generator, seeded by the iteration:
        the training draws stay those of an unmonitored run."""
        from ..metrics import estimate_log_normalizer

        seed = (int(self._generator.initial_seed()) + 3 + record["iteration"]) % 2**63
        generator = torch.Generator(device=self.device_).manual_seed(seed)
        n_steps, options = self._monitor_options()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", InvalidWeightsWarning)  # the SDE's never are
            contexts = self._domain_contexts(MONITOR_SAMPLES, generator)
            _, log_w = self._sharded_chunk(
                MONITOR_SAMPLES, n_steps, generator, True, contexts, **options
            )
        log_w = log_w.double().cpu()
        log_w = log_w[torch.isfinite(log_w)]
        if log_w.numel() < 2:
            record.update(elbo=-math.inf, ess=0.0)
        else:
            estimate = estimate_log_normalizer(log_w)
            record.update(elbo=estimate.elbo, ess=estimate.ess)
        return record["elbo"]

    @staticmethod
    def _postfix(record: dict) -> dict:
        postfix = {"loss": f"{record['loss']:.4g}"}
        if "elbo" in record:
            postfix.update(elbo=f"{record['elbo']:.4g}", ess=f"{record['ess']:.2f}")
        return postfix

    def _iteration(self, origin: float) -> dict | None:
        """One training iteration: the optimiser steps of :meth:`_training_steps`, one
        learning-rate step, one EMA update and one ``history_`` row; returns the row (None,
        with nothing changed, when training diverged: see :meth:`_nothing_finite`)."""
        params = flat_parameters(self._parameter_groups())
        iteration = self.n_iter_
        apply_clip_schedule(self.control_, iteration)
        lr = self._optimizer.param_groups[0]["lr"]
        record = {"iteration": iteration, "learning_rate": lr, "n_nonfinite": 0}
        stepped = skipped_any = False
        with self._conditioned(self._training_contexts()):
            for logs, loss, n_nonfinite, *only in self._training_steps(iteration):
                n_nonfinite = int(
                    distributed.global_sum(torch.as_tensor(n_nonfinite, device=self.device_))
                )
                if self._nothing_finite(n_nonfinite, iteration):
                    return None
                trained = only[0] if only else params  # this step's parameters
                grad_norm, skipped = optimizer_step(loss, trained, self._optimizer)
                stepped, skipped_any = stepped or not skipped, skipped_any or skipped
                record.update(self._global_logs(logs))
                record["n_nonfinite"] += n_nonfinite
        if stepped:
            self._scheduler.step()
        self._update_ema(iteration)
        elapsed = time.perf_counter() - origin
        record.update(grad_norm=grad_norm, skipped=skipped_any, elapsed=elapsed)
        self.history_.append(record)
        self.n_iter_ += 1
        return record

    def _global_logs(self, logs: dict) -> dict:
        """``history_`` values: the loss terms averaged over the ranks (one all-reduce)."""
        if not logs:
            return {}
        terms = [
            term.detach().to(self.device_, torch.float64).reshape(()) for term in logs.values()
        ]
        return dict(zip(logs, distributed.global_mean(torch.stack(terms)).tolist(), strict=True))

    def _nothing_finite(self, n_nonfinite: int, iteration: int) -> bool:
        """Whether no sample of the iteration is finite, in which case no update is taken:
        an error when nothing was learned yet; after that, a warning, and training stops
        with the model at its last completed iteration (``fit`` returns normally)."""
        if n_nonfinite < self.batch_size:
            return False
        what = (
            f"{type(self).__name__}.fit: all {self.batch_size} samples of iteration "
            f"{iteration} were non-finite (the energy is -inf, NaN or +inf where the sampler "
            "goes, or its score is not finite), so there is nothing to learn from."
        )
        if not self.n_iter_:
            raise EnergyError(
                f"{what} Check the energy on the region the N(0, I) prior covers, or rescale "
                "the target (precondition='laplace')."
            )
        warnings.warn(
            f"{what} Training diverged and stopped there: the model keeps its "
            f"{self.n_iter_} completed iterations (check it, e.g. with "
            "estimate_log_normalizer, before use; warm_start=True continues). Usual causes: "
            "a target far from unit scale (precondition='laplace', or rescale it) or a "
            "learning_rate too high for it (lower it).",
            ConvergenceWarning,
            stacklevel=4,
        )
        return True

    def _warn_if_often_nonfinite(self) -> None:
        """Warn once per fit when over 10% of the last 100 iterations' samples were masked."""
        recent = self.history_[-_NONFINITE_WINDOW:]
        if self._nonfinite_warned or len(recent) < 10:
            return
        rate = sum(r["n_nonfinite"] for r in recent) / (len(recent) * self.batch_size)
        if rate > _NONFINITE_WARN_RATE:
            self._nonfinite_warned = True
            warnings.warn(
                f"{type(self).__name__}.fit: {100 * rate:.0f}% of the samples of the last "
                f"{len(recent)} iterations were non-finite (a log-weight, or a state of the "
                "flow) and were left out of the loss (counted in history_['n_nonfinite']). "
                "Training goes on, but "
                "the energy is -inf, NaN or +inf on much of the region the sampler visits.",
                NonFiniteWarning,
                stacklevel=4,
            )

    def _ema_due(self, iteration: int) -> bool:
        """Whether the sampling EMA updates after ``iteration``: every 5th iteration of the
        last ones of the fit, counted from 0, not from the start of the window, so a run
        resumed from a checkpoint updates it at the same iterations as one without."""
        return iteration >= self._ema_start and iteration % _EMA_EVERY == 0

    def _update_ema(self, iteration: int) -> None:
        if not self._ema_due(iteration):
            return
        if self._ema is None:
            self._ema = EMA(self.control_)
        self._ema.update(self.control_)

    @property
    def _sampling_control(self) -> torch.nn.Module:
        """EMA weights when averaging has started, else the online network."""
        return self._ema.module if self._ema is not None else self.control_

    # ---------------------------------------------------------------- sampling
    def _sampling_generator(self, random_state) -> torch.Generator:
        if random_state is None:
            return self._generator
        v.RANDOM_STATE.validate(f"{type(self).__name__}.sample", "random_state", random_state)
        return v.make_generator(random_state, self.device_)

    def _check_n(self, n_samples, name: str = "n_samples") -> int:
        if not v.positive_int().accepts(n_samples):
            raise ValueError(f"'{name}' must be an int >= 1; got {n_samples!r}.")
        return int(n_samples)

    def _sampling_steps(self, n_steps) -> int:
        """The validated number of sampling steps (``None``: the training grid)."""
        return self.n_steps if n_steps is None else self._check_n(n_steps, "n_steps")

    def _draw(
        self,
        n_samples,
        n_steps,
        random_state,
        log_weights: bool,
        mcmc_steps=0,
        imh_steps=0,
        *,
        model_space: bool = True,
        context=None,
        **options,
    ):
        check_is_fitted(self, "n_iter_")
        n = self._check_n(n_samples)
        contexts = self._sampling_contexts(context, n)
        n_steps = self._sampling_steps(n_steps)
        mcmc_steps = self._check_mcmc_steps(mcmc_steps, log_weights)
        imh_steps = self._check_mcmc_steps(imh_steps, log_weights, "imh_steps")
        if imh_steps:
            self._check_exact_weights(options)
        generator = self._sampling_generator(random_state)
        xs, ws = [], []
        weighted = log_weights or bool(imh_steps)  # independent MH needs the weights
        with torch.no_grad():
            for begin in range(0, n, _SAMPLE_CHUNK):
                size = min(_SAMPLE_CHUNK, n - begin)
                rows = self._rows_of(contexts, begin, size)
                x, w = self._sharded_chunk(size, n_steps, generator, weighted, rows, **options)
                if imh_steps:
                    x = self._independent_mh(x, w, n_steps, imh_steps, generator, rows, **options)
                xs.append(x), ws.append(w if log_weights else None)
            if mcmc_steps:
                self._check_one_context(contexts, "mcmc_steps")
                pilot, _ = self._sharded_chunk(
                    _MCMC_PILOT, n_steps, generator, False, contexts, **options
                )
        x = torch.cat(xs)
        if mcmc_steps:
            with self._conditioned(contexts):
                x = self._refine(x, pilot, mcmc_steps, generator)
        if model_space:
            with torch.no_grad():
                x = self.energy_.transform(x)  # into the user's coordinates
        return (x, torch.cat(ws)) if log_weights else (x, None)

    def _sharded_chunk(
        self, size: int, n_steps: int, generator, log_weights: bool, contexts=None, **options
    ):
        """:meth:`_sample_chunk` at ``contexts`` (a family's, one row or ``size``);
        data-parallel, each rank draws ``ceil(size / W)`` of the samples and every rank
        gets all of them (gathered in rank order). The draws equal those of one process
        when ``W`` divides ``size``."""
        world = distributed.world_size()
        with distributed.sharding(True):
            if not distributed.is_active():
                with self._conditioned(contexts):
                    return self._sample_chunk(size, n_steps, generator, log_weights, **options)
            local = -(-size // world)
            with self._conditioned(self._rank_rows(contexts, local)):
                x, w = self._sample_chunk(local, n_steps, generator, log_weights, **options)
            x = distributed.all_gather_rows(x)[:size]
            w = None if w is None else distributed.all_gather_rows(w)[:size]
        return x, w

    @staticmethod
    def _check_mcmc_steps(mcmc_steps, log_weights: bool, name: str = "mcmc_steps") -> int:
        mcmc_steps = v.check_moves(mcmc_steps, name)
        if mcmc_steps and log_weights:
            raise ValueError(
                f"return_log_weights=True needs {name}=0: the weights are those of the "
                "sampler's own map or path; MCMC-refined samples have no tractable density "
                "(they need none: refinement targets the energy itself)."
            )
        return mcmc_steps

    def _check_exact_weights(self, options: dict) -> None:
        """Independent MH is exact only with exact log-weights: not with SLQ log-dets."""
        through_map = options.get("method", "ode") == "ode"  # not the SDE's path weights
        if through_map and self._log_det_method(options.get("log_det", "auto")) == "stochastic":
            raise ValueError(
                "imh_steps needs exact log-weights, and log_det='stochastic' (the default "
                f"above {EXACT_LOG_DET_MAX_DIM} dimensions) gives noisy ones; pass "
                "log_det='exact' or use method='sde' where the sampler has it."
            )

    def _independent_mh(
        self, x, log_w, n_steps: int, imh_steps: int, generator, contexts=None, **options
    ):
        """Independent Metropolis–Hastings from the draws ``x``, the sampler's own fresh
        draws (at the same ``contexts``) as proposals (exact when its log-weights are; see
        ``sample``)."""
        size = x.shape[0]

        def propose():
            with warnings.catch_warnings():  # the first draw already said if the map folds
                warnings.simplefilter("ignore", InvalidWeightsWarning)
                return self._sharded_chunk(size, n_steps, generator, True, contexts, **options)

        return mcmc.independent_mh(x, log_w, propose, imh_steps, generator).x

    def _refine(self, x, pilot, mcmc_steps: int, generator):
        """MALA moves from ``x``, with a step size and per-coordinate scale tuned on an
        independent ``pilot`` batch of the sampler's own output (so every move leaves the
        target invariant)."""
        energy = dynamics_view(self._member_energy, score=True)
        moved, _ = mcmc.refine(energy, x, mcmc_steps, pilot, generator)
        return moved.x.detach()

    @reports_model_failures
    @refinement_doc
    def sample(
        self,
        n_samples: int = 1,
        *,
        n_steps=None,
        random_state=None,
        return_log_weights=False,
        return_tensor: bool = False,
        mcmc_steps: int = 0,
        imh_steps: int = 0,
        context=None,
    ):
        """Draw samples from the trained sampler.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples.
        n_steps : int, optional
            Number of sampling steps; defaults to the training grid ``n_steps``.
        random_state : None, int or RandomState, optional
            ``None`` continues the estimator's own generator; an int gives the same draws on
            every call.
        return_log_weights : bool, default=False
            Also return the importance log-weights ``log rho(x) - log q(x)``.
        return_tensor : bool, default=False
            Return torch tensors on the model's device instead of numpy arrays.
        {refinement_parameters}
        {context_parameter}

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        log_weights : ndarray of shape (n_samples,)
            Only when ``return_log_weights=True``.
        """
        x, w = self._draw(
            n_samples,
            n_steps,
            random_state,
            return_log_weights,
            mcmc_steps,
            imh_steps,
            context=context,
        )
        return self._output(x, w, return_log_weights, return_tensor)

    def _diagnosed_steps(self) -> list[int]:
        """Numbers of steps :meth:`diagnose` examines (the training grid by default)."""
        return [self.n_steps]

    @reports_model_failures
    def diagnose(self, n_samples: int = 4000, *, steps=None, random_state=0, **options):
        """Check the sampler before trusting its draws: for each number of steps, whether
        its weights are valid (no fold), the ELBO, ``log Z`` with its standard error, ESS
        and PSIS k-hat; and plain-language advice (train longer, use more steps, correct
        with ``mcmc_steps``, ...).

        Parameters
        ----------
        n_samples : int, default=4000
            Weighted draws per number of steps.
        steps : list of int, optional
            Numbers of sampling steps to examine; by default the training grid for
            :class:`DiffusionSampler`, 1, 2, 4, 8 and ``n_steps`` for
            :class:`SelfConsistentSampler`, 1 for :class:`ConsistentDistiller`.
        random_state : None, int or RandomState, default=0
            As in :meth:`sample`; fixed, so that two diagnoses compare.
        **options
            Sampling options of :meth:`sample` (e.g. ``method``).

        Returns
        -------
        Diagnosis
            Its ``repr`` is a table and the advice; ``trusted`` lists the step counts whose
            weights are valid and reliable.
        """
        from .._diagnostics import diagnose

        check_is_fitted(self, "n_iter_")
        steps = self._diagnosed_steps() if steps is None else [int(k) for k in steps]
        return diagnose(self, steps, n_samples, random_state, options)

    @reports_model_failures
    def to_inference_data(
        self,
        n_samples: int = 4000,
        *,
        n_steps=None,
        random_state=None,
        mcmc_steps: int = 0,
        imh_steps: int = 0,
        var_names=None,
        context=None,
        **options,
    ):
        """Draw samples and return them as an ArviZ ``InferenceData``, for ``az.summary``,
        ``az.plot_pair``, ``az.plot_posterior`` and the rest of ArviZ.

        ArviZ is an optional dependency (``pip install arviz``). The draws form one chain
        in the ``posterior`` group, in your model's coordinates (a
        :class:`~skcds.energies.Constrained` model's parameters under their own names and
        shapes); ``sample_stats`` holds ``lp``, the log-density the sampler targets at each
        draw (in its own coordinates, Jacobians included, up to a constant), and
        ``log_weight``, the importance log-weights, where they are valid (not with
        ``mcmc_steps`` or ``imh_steps``, nor for a map that folds). ArviZ's summaries are
        unweighted.

        Parameters
        ----------
        n_samples : int, default=4000
        n_steps : int, optional
            Sampling steps (defaults to the training grid).
        random_state : None, int or RandomState, optional
            As in :meth:`sample`.
        mcmc_steps : int, default=0
            MALA moves from each draw, as in :meth:`sample`.
        imh_steps : int, default=0
            Independent Metropolis–Hastings steps, as in :meth:`sample`.
        var_names : None, list of str or dict, optional
            Variable names for the columns (see ``skcds._arviz.to_inference_data``):
            ``None`` takes the names of a :class:`~skcds.energies.Constrained` energy, else
            one vector variable ``x``.
        context : float or array-like, optional
            For a sampler of a family of densities: the context of the draws (one, or one
            per draw), as in :meth:`sample`.
        **options
            Further sampling options of :meth:`sample` (e.g. ``method``).

        Returns
        -------
        arviz.InferenceData
            (an ``xarray.DataTree`` with ArviZ >= 1.0).
        """
        from .._arviz import to_inference_data

        weighted = not (mcmc_steps or imh_steps)
        with weight_check() as check:
            z, log_w = self._draw(
                n_samples,
                n_steps,
                random_state,
                weighted,
                mcmc_steps,
                imh_steps,
                model_space=False,
                context=context,
                **options,
            )
        for warning in check.caught:  # shown to the user as they came
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        if not check.valid:
            log_w = None
        with torch.no_grad(), self._conditioned(self._sampling_contexts(context, z.shape[0])):
            x, lp = self.energy_.transform(z), self._dynamics_energy._log_prob(z)
        as_numpy = lambda t: None if t is None else t.detach().cpu().double().numpy()  # noqa: E731
        if var_names is None:
            var_names = getattr(self._user_energy, "blocks", None)
        return to_inference_data(
            as_numpy(x),
            log_weights=as_numpy(log_w),
            log_density=as_numpy(lp),
            var_names=var_names,
        )

    def _log_det_method(self, log_det: str) -> str:
        """``'exact'`` or ``'stochastic'`` from the ``log_det`` sampling option."""
        if log_det not in ("auto", "exact", "stochastic"):
            raise ValueError(
                f"'log_det' must be one of ['auto', 'exact', 'stochastic']; got {log_det!r}."
            )
        if log_det == "auto":
            return "exact" if self.n_features_in_ <= EXACT_LOG_DET_MAX_DIM else "stochastic"
        return log_det

    @staticmethod
    def _warn_if_folds(n_steps: int, reversed_fractions: list[float]) -> None:
        """Warn that change-of-variables weights are invalid if any step provably folds."""
        if not any(reversed_fractions):
            return
        n_folding = sum(f > 0 for f in reversed_fractions)
        warnings.warn(
            f"The {n_steps}-step deterministic map is not injective: its Jacobian determinant "
            f"changes sign between samples at {n_folding} of its {n_steps} steps (up to "
            f"{100 * max(reversed_fractions):.2g}% of samples with the reversed orientation at "
            "one step), so the change-of-variables log-weights are not valid (the ELBO can "
            "exceed log Z and the importance estimate of Z is biased). Use more steps, or "
            "method='sde' where the sampler has it.",
            InvalidWeightsWarning,
            stacklevel=5,
        )

    @staticmethod
    def _output(x, w, log_weights: bool, as_tensor: bool):
        convert = (lambda t: t) if as_tensor else (lambda t: t.detach().cpu().numpy())
        return (convert(x), convert(w)) if log_weights else convert(x)

    @reports_model_failures
    def estimate_log_normalizer(
        self, n_samples: int = 10_000, *, n_steps=None, random_state=None, context=None, **options
    ):
        """Estimate ``log Z`` by importance sampling with the sampler's valid log-weights.

        Parameters
        ----------
        n_samples : int, default=10_000
            Number of weighted samples.
        n_steps : int, optional
            Sampling steps (defaults to the training grid).
        random_state : None, int or RandomState, optional
            As in :meth:`sample`.
        context : float or array-like of shape (k,), optional
            For a sampler of a family of densities: the one context whose ``log Z(c)`` is
            estimated (required there; :meth:`log_normalizer_curve` takes several).
        **options
            Further sampling options of the estimator's :meth:`sample` (e.g. ``method``).

        Returns
        -------
        LogNormalizerEstimate
            ``log_z`` (importance sampling, consistent, biased low for finite ``n``),
            ``stderr``, ``elbo`` (a lower bound of ``log Z``), ``ess`` (normalised) and the
            PSIS diagnostic ``khat``; an :class:`~skcds.exceptions.UnreliableWeightsWarning`
            when ``khat`` is above its threshold (0.7 for ``n >= 2200``).
        """
        check_is_fitted(self, "n_iter_")
        context = self._one_context(context, "estimate_log_normalizer")
        estimate = self._log_normalizer(n_samples, n_steps, random_state, context, **options)
        if estimate.khat > estimate.khat_threshold:
            warnings.warn(
                f"{type(self).__name__}: {estimate.diagnosis} (ESS {estimate.ess:.3g} of "
                f"{estimate.n_samples} samples). Train longer, sample with more steps, or use "
                "sample(..., mcmc_steps=m), which needs no weights.",
                UnreliableWeightsWarning,
                stacklevel=2,
            )
        return estimate

    def _log_normalizer(self, n_samples, n_steps, random_state, context=None, **options):
        from ..metrics import estimate_log_normalizer

        _, log_w = self._draw(n_samples, n_steps, random_state, True, context=context, **options)
        return estimate_log_normalizer(log_w.double().cpu().numpy())

    @reports_model_failures
    def score(
        self, X=None, y=None, *, n_samples: int = 4096, random_state=0, context=None
    ) -> float:
        """ELBO ``E_q[log rho(x) - log q(x)]`` from valid log-weights; greater is better.

        The same fixed ``random_state`` makes scores of different hyperparameters on one
        energy comparable. ``X`` and ``y`` are ignored: a sampler is scored against its
        energy, not against data.

        Parameters
        ----------
        X, y : None
            Ignored; present for scikit-learn API consistency.
        n_samples : int, default=4096
            Weighted draws.
        random_state : None, int or RandomState, default=0
            As in :meth:`sample`.
        context : float or array-like of shape (k,), optional
            For a sampler of a family of densities: the ELBO of the member at this
            context. By default, the ELBO averaged over ``n_samples`` contexts from the
            family's domain (fixed draws), one per sample: the objective that training
            maximises.

        Returns
        -------
        float
        """
        check_is_fitted(self, "n_iter_")
        n = self._check_n(n_samples)
        if context is None:
            contexts = self._score_contexts(n)
        else:
            contexts = self._one_context(context, "score")
        return float(self._log_normalizer(n, None, random_state, contexts).elbo)

    # ---------------------------------------------------------------- persistence
    def __getstate__(self):
        state = {k: val for k, val in self.__dict__.items() if k not in _UNPICKLED}
        state["_skcds_version"] = __version__
        if "_optimizer" in state:
            to_cpu = lambda t: t.detach().cpu()  # noqa: E731
            state["_optimizer"] = _map_tensors(self._optimizer.state_dict(), to_cpu)
            state["_scheduler"] = self._scheduler.state_dict()
            state["_generator"] = (self._generator.device.type, self._generator.get_state())
            for name in self._device_modules:
                if state.get(name) is not None:  # a module this model may not have
                    state[name] = copy.deepcopy(state[name]).cpu()
            for name in self._ema_attributes:
                if state.get(name) is not None:
                    state[name] = copy.copy(state[name])
                    state[name].module = copy.deepcopy(state[name].module).cpu()
        return state

    def __setstate__(self, state):
        check_saved_version(type(self).__name__, state.pop("_skcds_version", None))
        self.__dict__.update(state)
        defaults = {**self._get_param_defaults(), **self._defaults_before_added}
        for name, default in defaults.items():
            self.__dict__.setdefault(name, default)  # parameters added since it was saved
        if "_optimizer" in state:
            self._restore_fitted_state()

    @classmethod
    def _get_param_defaults(cls) -> dict:
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.default is not p.empty}

    def _restore_fitted_state(self) -> None:
        if self.device_.type == "cuda" and not torch.cuda.is_available():
            self.device_ = torch.device("cpu")
        device, dtype = self.device_, getattr(self, "_dtype", None)
        # the dtype too: skcds.load rebuilds networks in torch's default float32
        for name in self._device_modules:
            if getattr(self, name, None) is not None:
                getattr(self, name).to(device=device, dtype=dtype)
        for name in self._ema_attributes:
            if getattr(self, name, None) is not None:
                getattr(self, name).module.to(device=device, dtype=dtype)
        optimizer_state, scheduler_state = self._optimizer, self._scheduler
        self._optimizer = make_optimizer(self._parameter_groups(), self._learning_rate)
        self._optimizer.load_state_dict(optimizer_state)
        self._scheduler = make_scheduler(self._optimizer, self.max_iter)
        self._scheduler.load_state_dict(scheduler_state)
        saved_on, generator_state = self._generator
        self._generator = torch.Generator(device=device)
        if saved_on == device.type:
            self._generator.set_state(generator_state)
        else:  # generator states do not transfer between device types: reseed from the state
            self._generator.manual_seed(int(generator_state.long().sum()))
        self._captured = {}
