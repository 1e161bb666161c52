import math

import pytest
import torch

from skcds.energies import AffineTransformed, Funnel, LogisticRegressionPosterior, from_log_prob

GEN = torch.Generator().manual_seed(0)
LOC = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
TRIL = torch.tensor([[2.0, 0, 0], [0.3, 0.5, 0], [-0.2, 0.1, 1.5]], dtype=torch.float64)


def _whitened():
    return AffineTransformed(Funnel(dim=3), LOC.numpy(), TRIL.numpy())


def test_density_is_the_change_of_variables_and_keeps_log_z():
    z = torch.randn(6, 3, generator=GEN, dtype=torch.float64)
    expected = Funnel(dim=3).log_prob(LOC + z @ TRIL.T) + torch.log(torch.diag(TRIL)).sum()
    torch.testing.assert_close(_whitened().log_prob(z), expected)
    # a normalised N(0, I) seen through x = loc + A z is the normalised N(-A^-1 loc, (A^T A)^-1)
    gauss = from_log_prob(lambda x: -0.5 * x.square().sum(-1) - 1.5 * math.log(2 * math.pi), 3)
    whitened = AffineTransformed(gauss, LOC.numpy(), TRIL.numpy())
    mean = -torch.linalg.solve(TRIL, LOC)
    exact = torch.distributions.MultivariateNormal(mean, precision_matrix=TRIL.T @ TRIL)
    torch.testing.assert_close(whitened.log_prob(z), exact.log_prob(z))


def test_score_and_hessian_match_autograd():
    energy = AffineTransformed(
        LogisticRegressionPosterior(torch.randn(20, 3, generator=GEN), [0, 1] * 10),
        LOC.numpy(),
        TRIL.numpy(),
    )
    z = torch.randn(4, 3, generator=GEN, dtype=torch.float64).requires_grad_(True)
    (grad,) = torch.autograd.grad(energy._log_prob(z).sum(), z)
    torch.testing.assert_close(energy._grad_log_prob(z.detach()), grad)
    hessian = torch.stack(
        [torch.autograd.functional.hessian(lambda v: energy._log_prob(v[None])[0], v) for v in z]
    )
    torch.testing.assert_close(energy._hessian_log_prob(z.detach()), hessian)


def test_bad_shapes_and_factors_are_refused():
    with pytest.raises(ValueError, match=r"'loc' must have shape \(3,\)"):
        AffineTransformed(Funnel(dim=3), [0.0, 0.0], TRIL.numpy())
    with pytest.raises(ValueError, match="lower-triangular with a positive diagonal"):
        AffineTransformed(Funnel(dim=3), LOC.numpy(), TRIL.T.numpy())
