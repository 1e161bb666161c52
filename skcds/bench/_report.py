"""The benchmark's markdown table and plots, from the content of ``results.json``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # no pyplot: the caller's backend is left alone

__all__ = ["write_report"]

LABELS = {"pis": "PIS", "dds": "DDS", "dis": "DIS", "cdds": "CDDS", "scds": "SCDS"}


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return f"{value:.4g}"


def _with_paper(row: dict, metric: str) -> str:
    ours = _fmt(row.get(metric))
    paper = row["paper"].get(metric)
    return ours if paper is None else f"{ours} ({_fmt(paper)})"


def _weights(row: dict, metric: str) -> str:
    """A weight metric, marked when the map folds (its weights are then invalid)."""
    if row["weights"] == "none":
        return "–" if metric not in row["paper"] else f"– ({_fmt(row['paper'][metric])})"
    text = _with_paper(row, metric)
    return text + " †" if row["weights"] == "folds" else text


def _target_table(res: dict, b: dict) -> list[str]:
    lines = [
        f"### {res['title']}",
        "",
        f"N = {res['n_steps']}; {b['max_iter']} iterations × {b['batch_size']} "
        f"(CDDS {b['distill_iter']} × {b['distill_batch_size']}); {b['n_metric']} samples "
        "per metric.",
    ]
    if "floor" in res:
        f = res["floor"]
        lines.append(
            f"Floors (two independent exact sample sets of {b['n_metric']}): paper Sinkhorn "
            f"{_fmt(f['paper_sinkhorn'])}, converged Sinkhorn {_fmt(f['sinkhorn'])}, "
            f"W1 {_fmt(f['w1'])}."
        )
    if res.get("reference_log_z") is not None:
        lines.append(f"Δlog Z is against the literature value {res['reference_log_z']}.")
    exact = "floor" in res  # sample metrics need exact samples of the target
    header = ["method", "steps", "NFE"]
    header += ["paper Sinkhorn (paper)", "converged Sinkhorn", "W1"] if exact else []
    header += ["ESS (paper)", "abs Δlog Z (paper)", "ELBO (paper)", "train s"]
    header.append(f"sample {b['n_timing']:,} s")
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in res["rows"]:
        cells = [LABELS[row["method"]], str(row["steps"]), str(row["nfe"])]
        if exact:
            converged = _fmt(row.get("sinkhorn"))
            if row.get("sinkhorn_converged") is False:
                converged += " (not converged)"
            cells += [_with_paper(row, "paper_sinkhorn"), converged, _fmt(row.get("w1"))]
        cells += [
            _weights(row, "ess"),
            _weights(row, "abs_dlogz"),
            _weights(row, "elbo"),
            f"{row['train_seconds']:.3g}",
            f"{row['sample_seconds']:.3g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _table(results: dict) -> list[str]:
    lines = [
        f"# skcds benchmark: budget `{results['budget']}` on {results.get('device', '?')}",
        "",
        f"skcds {results['skcds_version']}, torch {results['torch_version']}, seed "
        f"{results['seed']}, PIS/DDS loss `{results['baseline_loss']}`; total wall-clock "
        f"{results.get('wall_seconds', 0) / 60:.1f} min.",
        "",
        "Paper numbers (method.md §7, Tables 1–2) are in parentheses where the paper reports "
        "that method at that number of steps. † marks change-of-variables weights of a map "
        "that folds (not injective): they are not valid importance weights. – : not defined "
        "(multistep consistency sampling has no tractable density) or not computed. "
        "Sampling times are for samples without weights; training times exclude CDDS's "
        "teacher (in `results.json`).",
        "",
    ]
    for name, res in results["targets"].items():
        lines += _target_table(res, results["budgets"][name])
    for name, reason in results.get("skipped", {}).items():
        lines += [f"### {name}: skipped", "", reason, ""]
    return lines


# ---------------------------------------------------------------- plots
def _paper_rows(res: dict) -> list[dict]:
    """The rows of the paper's columns: baselines at N, one-step samplers at 1."""
    n = res["n_steps"]
    wanted = [("pis", n), ("dds", n), ("dis", n), ("dis", 1), ("cdds", 1), ("scds", 1)]
    by_key = {(r["method"], r["steps"]): r for r in res["rows"]}
    return [by_key[key] for key in wanted if key in by_key]


def _plot_samples(name: str, res: dict, samples, out: Path) -> None:
    rows = _paper_rows(res)
    exact = samples["exact"] if "exact" in samples else None
    panels = len(rows) + (exact is not None)
    fig = Figure(figsize=(3 * panels, 3.1))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if exact is not None:
        _draw_panel(axes[-1], exact, None, "exact samples", res["dim"])
    for ax, row in zip(axes, rows, strict=False):
        x = samples[f"{row['method']}_{row['steps']}"]
        _draw_panel(ax, x, exact, f"{LABELS[row['method']]}, {row['steps']} step(s)", res["dim"])
    fig.suptitle(f"{res['title']}: samples" + ("" if res["dim"] == 2 else " (first coordinate)"))
    fig.tight_layout()
    fig.savefig(out / f"samples_{name}.png", dpi=110)


def _draw_panel(ax, x, exact, title: str, dim: int) -> None:
    if dim == 2:
        if exact is not None:
            lim = np.quantile(np.abs(exact), 0.999) * 1.3
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim))
        ax.scatter(x[:2000, 0], x[:2000, 1], s=2, alpha=0.4)
    else:
        bins = np.linspace(
            *np.quantile(exact[:, 0] if exact is not None else x[:, 0], [0.001, 0.999]), 60
        )
        if exact is not None:
            ax.hist(exact[:, 0], bins=bins, density=True, histtype="step", color="k", label="exact")
        ax.hist(x[:, 0], bins=bins, density=True, alpha=0.6)
    ax.set_title(title, fontsize=9)


def _plot_steps(name: str, res: dict, out: Path) -> None:
    quality = "w1" if "floor" in res else "elbo"
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 2)
    for method, marker, color in (("scds", "o", "C0"), ("cdds", "s", "C1"), ("dis", "^", "C2")):
        rows = sorted((r for r in res["rows"] if r["method"] == method), key=lambda r: r["steps"])
        if not rows:
            continue
        steps = [r["steps"] for r in rows]
        values = [r.get(quality) for r in rows]
        axes[0].plot(steps, values, marker=marker, color=color, label=LABELS[method])
        valid = [r for r in rows if r["weights"] == "valid"]
        if valid:
            axes[1].plot(
                [r["steps"] for r in valid],
                [r["ess"] for r in valid],
                marker=marker,
                color=color,
                label=LABELS[method],
            )
    if "floor" in res:
        axes[0].axhline(res["floor"]["w1"], color="k", ls="--", lw=1, label="floor")
    if quality == "w1":
        axes[0].set(yscale="log", ylabel="exact W1")
    else:
        axes[0].set(ylabel="ELBO")
    axes[1].set(yscale="log", ylabel="ESS (valid weights)")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampling steps")
        ax.legend(fontsize=8)
    fig.suptitle(f"{res['title']}: quality against steps")
    fig.tight_layout()
    fig.savefig(out / f"steps_{name}.png", dpi=110)


def write_report(results: dict, out, *, plots: bool = True) -> list[str]:
    """Write ``table.md`` (and the plots) for ``results`` into folder ``out``.

    Parameters
    ----------
    results : dict
        The content of ``results.json`` written by :func:`skcds.bench.run_benchmark`.
    out : str or path-like
        Folder holding ``samples_<target>.npz``; receives ``table.md`` and the PNG files.
    plots : bool, default=True
        Draw ``samples_<target>.png`` and ``steps_<target>.png``.

    Returns
    -------
    list of str
        The lines of the markdown table.
    """
    out = Path(out)
    lines = _table(results)
    (out / "table.md").write_text("\n".join(lines) + "\n")
    if plots:
        for name, res in results["targets"].items():
            with np.load(out / f"samples_{name}.npz") as samples:
                _plot_samples(name, res, dict(samples), out)
            _plot_steps(name, res, out)
    return lines
