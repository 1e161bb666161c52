"""Why ConsistentDistiller's multistep sampling gets worse with more steps (issue 15, item 4).

    python benchmarks/one_step_study.py run --target gmm9 --variant cdds --seconds 240 \
        --save /tmp/gmm9_cdds.joblib
    python benchmarks/cdds_multistep.py /tmp/gmm9_cdds.joblib

On the GMM9 teacher/student pair: W1 (4000 samples) of k-step consistency sampling with
fresh noise (the sampler's) and with a deterministic DDIM-style re-projection; the teacher's
ODE and SDE; the W1 between the teacher's flow states at t and (a) VP-noised exact samples,
(b) the VP-noised one-step output; and two-step sampling with the second noise level swept.
"""

from __future__ import annotations

import sys
from pathlib import Path

import joblib
import torch

sys.path.insert(0, str(Path(__file__).parent))
import one_step_study  # noqa: E402

import __main__  # noqa: E402
from skcds._core.flow import euler_flow  # noqa: E402
from skcds.energies import GaussianMixture  # noqa: E402
from skcds.metrics import wasserstein  # noqa: E402

__main__._Monitor = one_step_study._Monitor  # the pickled callback's class
N = 4000


def _jumps(student, sigmas, x0, generator, deterministic=False):
    """Consistency sampling from x0 through the noise levels ``sigmas``."""
    ref, net, end = student.reference_, student._sampling_control, student.reference_.terminal_time
    with torch.no_grad():
        x_hat, x_t = net(sigmas[0], x0), x0
        for before, sigma in zip(sigmas[:-1], sigmas[1:], strict=True):
            a, v = ref.marginal(end - sigma)
            if deterministic:  # keep the noise the previous state implies (DDIM)
                a0, v0 = ref.marginal(end - before)
                noise = (x_t - a0 * x_hat) / v0.sqrt()
            else:
                noise = torch.randn(x_hat.shape, generator=generator)
            x_t = a * x_hat + v.sqrt() * noise
            x_hat = net(sigma, x_t)
    return x_hat.numpy()


def main(path: str) -> None:
    torch.set_num_threads(1)
    model = joblib.load(path)
    student, teacher = model["student"], model["teacher"]
    energy = GaussianMixture.grid()
    exact = energy.sample(N, generator=torch.Generator().manual_seed(2)).numpy()
    end = student.reference_.terminal_time
    for k in (1, 2, 4, 8, 16):
        sigmas = student._sampling_sigmas(k)
        row = []
        for deterministic in (False, True):
            g = torch.Generator().manual_seed(1)
            x = _jumps(student, sigmas, student._prior(N, g), g, deterministic)
            row.append(wasserstein(x, exact, p=1))
        print(f"{k:>2} steps: W1 fresh noise {row[0]:.3f}, deterministic {row[1]:.3f}")
    times = teacher._grid(teacher.n_steps)
    x0 = teacher._prior(N, torch.Generator().manual_seed(3))
    args = (teacher._sampling_control, teacher.reference_, teacher._dynamics_energy)
    with torch.no_grad():
        ode = euler_flow(*args, times, x0).numpy()
    sde = teacher.sample(N, random_state=4)
    print(
        f"teacher ODE W1 {wasserstein(ode, exact, p=1):.3f}, SDE {wasserstein(sde, exact, p=1):.3f}"
    )
    one = torch.as_tensor(student.sample(N, n_steps=1, random_state=5))
    for fraction in (0.25, 0.5, 0.75):
        j = int(fraction * teacher.n_steps)
        with torch.no_grad():
            state = euler_flow(*args, times[: j + 1], x0).numpy()
        a, v = student.reference_.marginal(times[j])
        g = torch.Generator().manual_seed(6)
        noised_exact = a * torch.as_tensor(exact) + v.sqrt() * torch.randn(one.shape, generator=g)
        noised_one = a * one + v.sqrt() * torch.randn(one.shape, generator=g)
        print(
            f"t = {fraction}: W1(teacher flow state, noised exact) "
            f"{wasserstein(state, noised_exact.numpy(), p=1):.3f}, "
            f"(teacher flow state, noised one-step output) "
            f"{wasserstein(state, noised_one.numpy(), p=1):.3f}"
        )
    coarse = [end - student._teacher_times[i] for i in student._coarse]
    for sigma in coarse[1:-1]:
        g = torch.Generator().manual_seed(1)
        x = _jumps(student, [coarse[0], sigma], student._prior(N, g), g)
        print(
            f"2 steps, second noise level {float(sigma):.3f}: W1 {wasserstein(x, exact, p=1):.3f}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
