"""GPU checks that CI (CPU-only) cannot run, and the GPU figures the README and docs quote,
in one short call on a GPU machine: the CUDA-graph rollout equals the eager one, and a
CUDA-trained sampler pickles and loads on the CPU; then the speed mode (ms per training
iteration, samples per second) written with the date and the GPU's name to
``benchmarks/results/gpu/`` (``speed.md``, ``speed.json``).

    python benchmarks/gpu_checks.py [--out benchmarks/results/gpu]
"""

import argparse
import datetime
import io
import json
from pathlib import Path

import joblib
import torch

from skcds import DiffusionSampler
from skcds._core.grids import uniform_grid
from skcds._core.rollout import CapturedSDE, euler_maruyama, standard_normal
from skcds.energies import GaussianMixture


def check_graph_equals_eager() -> None:
    energy = GaussianMixture.grid()
    sampler = DiffusionSampler(max_iter=30, device="cuda", random_state=0).fit(energy)
    net, ref, energy_ = sampler.control_, sampler.reference_, sampler.energy_
    times = uniform_grid(128, 1.0, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(5)
    x0 = ref.prior_sample(512, 2, generator=g, dtype=torch.float32, device="cuda")
    noise = standard_normal((128, 512, 2), generator=g, dtype=torch.float32, device="cuda")
    with torch.no_grad():
        eager = euler_maruyama(net, ref, energy_, times, x0, noise)
        graph = CapturedSDE(net, ref, energy_, times, x0)(x0, noise)
    for name in ("x", "log_rnd", "log_target", "xs", "scores", "controls"):
        a, b = getattr(eager, name), getattr(graph, name)
        err = float((a - b).norm() / a.norm())
        print(f"graph vs eager {name}: relative error {err:.2e}")
        assert err < 1e-5, name


def check_graph_training_equals_eager_training() -> None:
    """Whole training runs agree: catches graph inputs that the estimator frees or replaces."""
    losses = {}
    for execution in ("eager", "cuda_graph"):
        sampler = DiffusionSampler(
            max_iter=60, execution=execution, device="cuda", random_state=0
        ).fit(GaussianMixture.grid())
        losses[execution] = torch.tensor([r["loss"] for r in sampler.history_])
        assert not any(r["skipped"] for r in sampler.history_), execution
    err = float((losses["eager"] - losses["cuda_graph"]).abs().max())
    print(
        f"training losses, graph vs eager: max abs difference {err:.2e}; "
        f"last {losses['eager'][-1]:.4f} vs {losses['cuda_graph'][-1]:.4f}"
    )
    assert err < 1e-3 * float(losses["eager"].abs().max())


def check_cuda_pickle_loads_on_cpu() -> None:
    sampler = DiffusionSampler(max_iter=20, device="cuda", random_state=0)
    sampler.fit(GaussianMixture.grid())
    buffer = io.BytesIO()
    joblib.dump(sampler, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    print("loaded device:", loaded.device_, "sample:", loaded.sample(2, random_state=0).tolist())


def write_speed(out: Path) -> None:
    """The speed mode of the harness on this GPU, dated, for the README and docs."""
    from skcds.bench._speed import run_speed, speed_table

    out.mkdir(parents=True, exist_ok=True)
    result = run_speed("gmm9", device="cuda", out=str(out))
    stamp = f"{datetime.date.today()}, {torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    (out / "speed.md").write_text(f"Measured {stamp}\n\n" + "\n".join(speed_table(result)) + "\n")
    (out / "speed.json").write_text(
        json.dumps({"measured": stamp, **result}, indent=1, default=str)
    )
    print("\n".join(speed_table(result)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results/gpu")
    args = parser.parse_args()
    check_graph_equals_eager()
    check_graph_training_equals_eager_training()
    check_cuda_pickle_loads_on_cpu()
    print("GPU checks passed")
    write_speed(Path(args.out))
