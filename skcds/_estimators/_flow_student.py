"""The invertible one-step student (issue 27), shared by ``ConsistentDistiller(student='flow')``
and ``SelfConsistentSampler(student='flow')``: its loss on a diffusion sampler's weighted
SDE draws, its start at their scale, and sampling in ``k`` steps."""

from __future__ import annotations

import torch

from .._core import mcmc
from .._core.losses import finite_rows, kl, weighted_forward_kl, zero_rows
from .._core.rollout import standard_normal

FLOW_LEARNING_RATE = 1e-3  # zuko's splines under Adam (benchmarks/flow_student_study.py)
MOMENT_DRAWS = 4096  # draws that set the flow's initial loc and scale


class FlowStudentMixin:
    """Sampler methods around a :class:`~skcds._core.networks.FlowNet`. The host provides
    ``_sampling_flow`` (the network that samples: EMA weights when averaging has started),
    ``_dynamics_energy``, ``n_features_in_``, ``_dtype`` and ``device_``."""

    def _check_conditional_support(self) -> None:
        """A family of densities is learnt by the flow student only (the jump's and the
        consistency function's losses take rows apart, away from their contexts)."""
        if self._conditional and self.student != "flow":
            raise ValueError(
                f"{type(self).__name__} learns a family of densities (a ConditionalEnergy) "
                f"with student='flow' only; got student={self.student!r}."
            )

    def _flow_loss(self, flow, x, log_w, reverse_kl: float, generator):
        """``(loss, logs, n_masked)`` of one step: the self-normalised weighted forward KL
        of ``flow`` on draws ``x`` with path log-weights ``log_w`` (detached; within each
        context's group of rows, for a family), plus
        ``reverse_kl`` times the reverse KL on the flow's own draws; divided by the
        dimension."""
        x, log_w = x.detach(), log_w.detach()
        keep = finite_rows(x)
        log_w = torch.where(keep, log_w, -torch.inf)
        log_q = flow.log_prob(zero_rows(x, keep))
        loss, n_masked = weighted_forward_kl(log_q, log_w, groups=self._context_groups)
        logs = {"teacher_ess": _batch_ess(log_w)}
        if reverse_kl:
            y, log_q = flow(self._flow_noise(x.shape[0], generator))
            reverse, _ = kl(self._dynamics_energy._log_prob(y) - log_q)
            loss = loss + reverse_kl * reverse
        return loss / self.n_features_in_, logs, n_masked

    @staticmethod
    def _standardise_flow(flow, x) -> None:
        """Start ``flow``'s affine map at the mean and sd of the draws ``x`` (unweighted: a
        scale, not an estimate), so it learns at unit scale."""
        x = x[finite_rows(x)]
        if x.shape[0] >= 2:  # else nothing finite yet: training reports it
            flow.set_affine(x.mean(0), x.std(0).clamp(min=1e-3))

    def _flow_noise(self, n: int, generator) -> torch.Tensor:
        shape = (n, self.n_features_in_)
        return standard_normal(shape, generator=generator, dtype=self._dtype, device=self.device_)

    def _flow_draws(self, n: int, generator, log_weights: bool):
        """``n`` flow draws (and their log-weights), in pieces of :func:`flow_rows` rows:
        a pass keeps several ``(rows, 23 d)`` spline-parameter tensors alive (8 GB for
        65 536 rows at d = 50, measured), so the rows per pass shrink as d grows."""
        z = self._flow_noise(n, generator)
        xs, ws, contexts, rows = [], [], self._context_rows, flow_rows(self.n_features_in_)
        for begin, piece in zip(range(0, n, rows), z.split(rows), strict=True):
            with self._conditioned(self._rows_of(contexts, begin, piece.shape[0])):
                x, log_q = self._sampling_flow(piece)
                xs.append(x)
                ws.append(self._dynamics_energy._log_prob(x) - log_q if log_weights else None)
        return torch.cat(xs), torch.cat(ws) if log_weights else None

    def _sample_flow(self, n: int, n_steps: int, generator, log_weights: bool):
        """The flow's draw, then ``n_steps - 1`` independent Metropolis-Hastings steps
        proposing fresh flow draws (exact: the flow's weights are)."""
        if log_weights and n_steps > 1:
            raise ValueError(
                "Importance weights of the flow student are those of its one-step draw "
                "(n_steps=1): n_steps=k adds k - 1 Metropolis-Hastings steps, whose output "
                f"has no tractable density; got n_steps={n_steps}."
            )
        x, log_w = self._flow_draws(n, generator, log_weights or n_steps > 1)
        if n_steps == 1:
            return x, log_w
        propose = lambda: self._flow_draws(n, generator, True)  # noqa: E731
        return mcmc.independent_mh(x, log_w, propose, n_steps - 1, generator).x, None


def flow_rows(dim: int) -> int:
    """Rows per flow pass when sampling: 2**19 / d, between 256 and 65 536."""
    return int(min(65_536, max(256, 2**19 // dim)))


def _batch_ess(log_w: torch.Tensor) -> torch.Tensor:
    """Normalised effective sample size of one batch's log-weights (``-inf``: weight 0)."""
    w = torch.softmax(log_w.detach(), 0)
    return 1.0 / (w.square().sum() * log_w.shape[0])
