"""Samplers of a family of densities (issue 28): one network for every context ``c`` of a
:class:`~skcds.energies.ConditionalEnergy`.

The networks read the contexts of the rows they work on from their attribute ``context``
and the loops see the energy of those rows (``energy_.at(c)``): :meth:`_conditioned` sets
both around each training iteration and each chunk of draws, and restores them after. One
context is held as one row, broadcast over any batch (so refinement, pilots and chunks need
no care); one per row is sliced with the rows. An unconditional energy never enters here:
its fits and draws are those of a sampler without this module, bit for bit.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .._core import distributed
from ..energies import ConditionalEnergy, Energy
from ..metrics import LogNormalizerCurve

_SCORE_SEED = 0  # the contexts of score(): fixed, so that scores compare
CONTEXT_GROUP = 32  # trajectories per training context (a divisor of the batch, at most)


class ConditioningMixin:
    """Context handling of :class:`~skcds._estimators._base._BaseSampler`."""

    _context_rows = None  # the contexts the loops see now (raw; the networks' standardised)

    @property
    def _conditional(self) -> bool:
        return isinstance(self.energy_, ConditionalEnergy)

    @property
    def _context_dim(self) -> int:
        return self.energy_.context_dim if self._conditional else 0

    def _check_conditional_support(self) -> None:
        """Raise if this sampler's configuration cannot learn a family of densities."""

    def _context_modules(self) -> list:
        """The networks that read the contexts (online and averaged)."""
        modules = [getattr(self, name, None) for name in self._device_modules]
        for name in self._ema_attributes:
            ema = getattr(self, name, None)
            modules.append(None if ema is None else ema.module)
        return [m for m in modules if getattr(m, "context_dim", 0) and not isinstance(m, Energy)]

    @contextlib.contextmanager
    def _conditioned(self, contexts):
        """Within the block, the loops work on rows with ``contexts`` (``(n, k)``, or one
        row for all); ``None``: unconditional, nothing changes."""
        if contexts is None:
            yield
            return
        modules = self._context_modules()
        saved = self._context_rows, [m.context for m in modules]
        self._context_rows = contexts
        standardised = self.energy_.context.standardise(contexts)
        for module in modules:
            module.context = standardised
        try:
            yield
        finally:
            self._context_rows = saved[0]
            for module, context in zip(modules, saved[1], strict=True):
                module.context = context

    @property
    def _member_energy(self):
        """``energy_``, or for a family the member(s) of the rows now worked on."""
        if not self._conditional:
            return self.energy_
        if self._context_rows is None:
            raise RuntimeError("a conditional energy used outside _conditioned (internal).")
        return self.energy_.at(self._context_rows)

    def _domain_contexts(self, n: int, generator, sharded: bool = False):
        """``n`` contexts from the energy's domain (``None`` if unconditional); with
        ``sharded``, this rank's rows of a draw for the global batch."""
        if not self._conditional:
            return None

        def draw(m: int):
            return self.energy_.context.sample(m, generator, self._dtype, self.device_)

        return distributed.shard(draw, n) if sharded else draw(n)

    @property
    def _context_groups(self) -> int | None:
        """Trajectories per context in a training batch (``None``: no context): the
        losses compare weights within a context only (see
        :func:`~skcds._core.losses.log_variance`). ``gcd(batch_size, 32)``, or the
        whole batch when that is 1."""
        if not self._conditional:
            return None
        group = math.gcd(self.batch_size, CONTEXT_GROUP)
        return group if group >= 2 else self.batch_size

    def _training_contexts(self):
        """One context per group of trajectories (this rank's groups of the global batch's)."""
        group = self._context_groups
        if group is None:
            return None
        if self._local_batch % group:
            raise ValueError(
                f"{type(self).__name__} trains a family of densities in groups of {group} "
                f"trajectories per context (gcd(batch_size, {CONTEXT_GROUP})), which must not "
                f"span processes: batch_size / processes ({self._local_batch}) must be a "
                f"multiple of {group}."
            )
        n_groups = self._local_batch // group
        contexts = self._domain_contexts(n_groups, self._generator, sharded=True)
        return contexts.repeat_interleave(group, dim=0)

    def _sampling_contexts(self, context, n: int, call: str = "sample"):
        """The user's ``context=`` as rows for ``n`` draws: one row for one context."""
        owner = type(self).__name__
        if not self._conditional:
            if context is not None:
                raise ValueError(
                    f"{owner}.{call}: 'context' is for a sampler of a family of densities "
                    "(fitted on a ConditionalEnergy); this one was fitted on an energy "
                    f"without context, so pass context=None; got {_brief(context)}."
                )
            return None
        like = torch.empty(0, dtype=self._dtype, device=self.device_)
        c = self.energy_.check_context(context, n, like=like)
        return c[:1] if bool((c == c[:1]).all()) else c

    def _one_context(self, context, call: str):
        """One context (a row), for estimates that hold for one member of the family."""
        rows = np.shape(context)
        if self._conditional and len(rows) == 2 and rows[0] > 1:
            raise ValueError(
                f"{type(self).__name__}.{call} takes one context (log Z(c) is one number per "
                f"context; log_normalizer_curve takes several); got {rows[0]} rows."
            )
        return self._sampling_contexts(context, 1, call)

    def _check_one_context(self, contexts, option: str) -> None:
        if contexts is not None and contexts.shape[0] > 1:
            raise ValueError(
                f"{type(self).__name__}: {option} tunes one MALA kernel for one density: "
                "pass one context for all draws (one call per context); got one per draw."
            )

    @staticmethod
    def _rows_of(contexts, begin: int, size: int):
        """The contexts of rows ``begin:begin + size`` (one row stays one row)."""
        if contexts is None or contexts.shape[0] == 1:
            return contexts
        return contexts[begin : begin + size]

    def _rank_rows(self, contexts, local: int):
        """This rank's ``local`` rows of a chunk's contexts (drawn ``local`` per rank, in
        rank order, the last rank's padded by repeating the last row)."""
        if contexts is None or contexts.shape[0] == 1:
            return contexts
        needed = local * distributed.world_size()
        padding = contexts[-1:].expand(needed - contexts.shape[0], -1)
        return torch.cat([contexts, padding])[distributed.rank() * local :][:local]

    def _score_contexts(self, n: int):
        """The contexts a conditional sampler is scored on: the domain's, fixed."""
        generator = torch.Generator(device=self.device_).manual_seed(_SCORE_SEED)
        return self._domain_contexts(n, generator)

    def log_normalizer_curve(
        self, contexts, n_samples: int = 4000, *, n_steps=None, random_state=0, **options
    ) -> LogNormalizerCurve:
        """``log Z(c)`` with standard errors at each of ``contexts``: the evidence or free
        energy of a family of densities, as a curve, from one fitted sampler.

        Parameters
        ----------
        contexts : array-like of shape (m,) or (m, k)
            The contexts (``m`` values of a one-dimensional context, or ``m`` rows).
        n_samples : int, default=4000
            Weighted draws per context.
        n_steps : int, optional
            Sampling steps, as in :meth:`estimate_log_normalizer`.
        random_state : None, int or RandomState, default=0
            As in :meth:`sample`; the same for every context.
        **options
            Further sampling options of :meth:`sample` (e.g. ``method``).

        Returns
        -------
        LogNormalizerCurve
        """
        check_is_fitted(self, "n_iter_")
        if not self._conditional:
            raise ValueError(
                f"{type(self).__name__}.log_normalizer_curve needs a sampler fitted on a "
                "ConditionalEnergy (a family of densities); this one has no context: use "
                "estimate_log_normalizer()."
            )
        rows = np.asarray(contexts, dtype=np.float64)
        rows = rows.reshape(-1, self._context_dim) if rows.ndim <= 1 else rows
        found = [
            self._log_normalizer(n_samples, n_steps, random_state, context=row, **options)
            for row in rows
        ]
        return LogNormalizerCurve.of(rows, found)


def _brief(value) -> str:
    shape = getattr(value, "shape", None)
    return f"an array of shape {tuple(shape)}" if shape is not None else repr(value)
