"""Docstring text shared by several samplers, written once."""

# the refinement options of every sampler's ``sample``, documented once
_REFINEMENT_PARAMETERS = """\
        mcmc_steps : int, default=0
            Metropolis-adjusted Langevin moves on the energy from each sample, which make
            sampling asymptotically exact whatever the sampler's quality (each move leaves the
            target invariant; its step and per-coordinate scale are tuned beforehand on 256
            independent pilot samples, then fixed). Costs ``n_samples * (mcmc_steps + 1)``
            evaluations of ``log rho`` and its gradient, plus 15 360 for tuning; not
            with ``return_log_weights``.
        imh_steps : int, default=0
            Independent Metropolis–Hastings steps before any ``mcmc_steps``: each sample is
            a chain that moves to a fresh draw of this sampler with probability
            ``min(1, w_new / w)`` of their importance weights. It leaves the target
            invariant where the weights are exact, and unlike MALA it moves mass between
            distant modes, so it corrects mode weights the sampler got wrong. Costs
            ``imh_steps`` more draws with weights (network evaluations and Jacobians);
            needs exact weights (not ``log_det='stochastic'``; a map that folds is warned
            about and makes it inexact); not with ``return_log_weights``.
"""

# the context of a sampler of a family of densities (issue 28)
_CONTEXT_PARAMETER = """\
        context : float or array-like of shape (k,) or (n_samples, k), optional
            For a sampler fitted on a :class:`~skcds.energies.ConditionalEnergy` (a family
            of densities), where it is required: the context of the draws, one for all of
            them or one per draw, inside the family's domain. Not with an energy without
            context. ``mcmc_steps`` needs one context for all draws.
"""


def refinement_doc(method):
    """Write the shared ``mcmc_steps``, ``imh_steps`` and ``context`` entries into
    ``method``'s docstring, where it says ``{refinement_parameters}`` and
    ``{context_parameter}``."""
    if method.__doc__:  # None under python -OO
        for marker, text in (
            ("        {refinement_parameters}\n", _REFINEMENT_PARAMETERS),
            ("        {context_parameter}\n", _CONTEXT_PARAMETER),
        ):
            method.__doc__ = method.__doc__.replace(marker, text)
    return method
