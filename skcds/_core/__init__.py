"""The shared torch backend of skcds: reference processes, time grids, networks, rollouts,
losses and training steps. Pure functions and ``nn.Module`` objects; it imports neither
scikit-learn nor numpy, and never touches torch's global random number generator.

Glossary: ``t`` generative time in ``[0, T]`` (prior at 0, target at ``T``), ``x`` states of
shape ``(n, d)``, ``beta`` the VP noise schedule, ``sigma`` the diffusion coefficient,
``u`` the control, ``xi`` standard normal increments, ``log_rnd`` the log Radon–Nikodym
derivative of the generative path measure against the reference, without the target term.
"""
