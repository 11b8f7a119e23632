"""How far in time does a deep unit look? Effective vs theoretical receptive field.
================================================================================

A stack of ``depth`` temporal convolutions of kernel ``k`` has a theoretical
receptive field of ``1 + depth (k - 1)`` samples, but the gradient of a
central output unit with respect to the input (its impulse response) is
concentrated in a much narrower, roughly Gaussian centre whose width grows
like sqrt(depth) (Luo et al., 2016, "Understanding the effective receptive
field in deep convolutional neural networks", NeurIPS). This matters for
reading saliency maps of deep EEG models: a unit "sees" far less of the
epoch than its receptive field suggests.

For each depth, randomly initialized stacks (ReLU, He initialization; and
linear stacks, for which the ERF is exactly a repeated convolution of the
kernels) explain the central output unit on noise inputs; the ERF width is
twice the standard deviation of the mean ``|gradient|`` profile. A log-log fit
of width against depth gives the growth exponent (sqrt: 0.5; the
theoretical field: 1).

Run: python analyses/effective_receptive_field.py [--out erf] [--seeds 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

DEPTHS = (1, 2, 4, 8, 16, 32)


def stack(depth: int, kernel: int, width: int, relu: bool) -> nn.Sequential:
    """Build ``depth`` same-padded temporal convolutions (channels ``width``)."""
    layers = []
    for i in range(depth):
        conv = nn.Conv1d(1 if i == 0 else width, width, kernel, padding=kernel // 2)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu" if relu else "linear")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.ReLU()] if relu else [conv]
    return nn.Sequential(*layers)


def erf_profile(model: nn.Module, n_times: int, n_inputs: int, seed: int) -> np.ndarray:
    """Mean |d (central output) / d input| over noise inputs, normalized to sum 1."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_inputs, 1, n_times, generator=gen, requires_grad=True)
    out = model(x)
    out[:, :, n_times // 2].sum().backward()
    g = x.grad.abs().mean(dim=(0, 1)).numpy()
    return g / g.sum()


def width_of(profile: np.ndarray) -> float:
    """Twice the standard deviation of a profile (samples)."""
    t = np.arange(profile.size)
    mu = (t * profile).sum()
    return float(2 * np.sqrt(((t - mu) ** 2 * profile).sum()))


def main() -> None:
    """Measure ERF widths over depths and seeds; write a table and a figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="erf", help="output folder")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--kernel", type=int, default=5)
    parser.add_argument("--width", type=int, default=16, help="channels per layer")
    args = parser.parse_args()
    torch.manual_seed(0)
    n_times = 1 + 2 * max(DEPTHS) * (args.kernel - 1) + 64
    rows, profiles = [], {}
    for relu in (True, False):
        for depth in DEPTHS:
            prof = []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                model = stack(depth, args.kernel, args.width, relu)
                prof.append(erf_profile(model, n_times, 8, seed))
            prof = np.mean(prof, axis=0)
            profiles[(relu, depth)] = prof
            rows.append(
                {
                    "nonlinearity": "relu" if relu else "linear",
                    "depth": depth,
                    "theoretical_rf": 1 + depth * (args.kernel - 1),
                    "erf_width": width_of(prof),
                }
            )
    table = pd.DataFrame(rows)
    table["erf_over_rf"] = table["erf_width"] / table["theoretical_rf"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "erf_widths.csv", index=False)
    print(table.round(3).to_string(index=False))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for (relu, depth), prof in profiles.items():
        if relu:
            t = np.arange(prof.size) - n_times // 2
            axes[0].plot(t, prof, label=f"depth {depth}")
    axes[0].set(
        xlim=(-70, 70),
        xlabel="input sample relative to the unit",
        ylabel="share of |gradient|",
        title=f"Effective receptive field (ReLU stacks, kernel {args.kernel})",
    )
    axes[0].legend(fontsize=8, frameon=False)
    for name, group in table.groupby("nonlinearity"):
        slope = np.polyfit(np.log(group["depth"]), np.log(group["erf_width"]), 1)[0]
        print(f"{name}: ERF width grows as depth^{slope:.2f}")
        axes[1].loglog(
            group["depth"],
            group["erf_width"],
            "o-",
            label=f"ERF, {name} (slope {slope:.2f})",
        )
    rf = table.drop_duplicates("depth")
    axes[1].loglog(
        rf["depth"], rf["theoretical_rf"], "k--", label="theoretical RF (slope 1)"
    )
    axes[1].set(
        xlabel="depth (layers)",
        ylabel="width (samples)",
        title="ERF grows like sqrt(depth), the RF linearly",
    )
    axes[1].legend(fontsize=8, frameon=False)
    fig.savefig(out / "erf.png", dpi=120)
    print(f"wrote {out / 'erf_widths.csv'} and {out / 'erf.png'}")


if __name__ == "__main__":
    main()
