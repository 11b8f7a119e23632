"""Attribution throughput per method against a bare forward+backward pass.

The reference is the cheapest possible gradient map: one forward and one
backward pass of the same model on the same batch, written with plain torch.
Gradient methods (saliency, input x gradient, Grad-CAM) should stay within 1.3x
of it; integrated gradients, SmoothGrad and occlusion cost their number of
steps, samples or windows times more by construction (the ratio is reported
per step as well). The spectral methods (:func:`eegsal.attribution.attribute_spectrum`:
amplitude gradients, Fourier-domain integrated gradients, band occlusion) run
in the same loop, on the same model and epochs. The anchor of saliency,
integrated gradients, SmoothGrad and occlusion is Captum itself, called on the
same batches (eegsal computes them through Captum): the ratio is what eegsal
adds around it.

Run: python benchmarks/bench_attribution.py [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from eegsal.attribution import attribute, attribute_spectrum
from eegsal.decoding import get_device
from eegsal.models import EEGNet
from eegsal.simulate import simulate_sleep_study

METHODS = {
    "saliency": {},
    "input_x_gradient": {},
    "gradcam": {},
    "deeplift": {},
    "integrated_gradients": {"n_steps": 20},
    "smoothgrad": {"n_samples": 10},
    "occlusion": {"window": (1, 40)},
}
SPECTRAL = {
    "amplitude_gradient": {},
    "integrated_gradients": {"n_steps": 20},
    "band_occlusion": {},
}
PASSES = {
    "integrated_gradients": 20,
    "smoothgrad": 10,
    "occlusion": 19 * 10 + 1,
    "spectral integrated_gradients": 20,
    "spectral band_occlusion": 19 * 6 + 1,  # forward passes only
}


def bare(model, X, batch_size, device):
    """One forward + backward per batch, gradient copied to numpy."""
    out = np.empty_like(X)
    for i in range(0, len(X), batch_size):
        x = torch.from_numpy(X[i : i + batch_size]).to(device).requires_grad_()
        logits = model(x)
        logits[:, 1].sum().backward()
        out[i : i + batch_size] = x.grad.cpu().numpy()
    return out


def captum_direct(model, X, batch_size, device, method, kw):
    """The same maps by Captum alone, batch by batch (the anchor of eegsal's cost).

    What eegsal adds around Captum (reading the epochs, the baseline, the
    completeness check of integrated gradients, writing the container) is
    the difference between the two times.
    """
    from captum import attr as ca

    out = np.empty_like(X)
    for i in range(0, len(X), batch_size):
        x = torch.from_numpy(X[i : i + batch_size]).to(device)
        if method != "occlusion":  # as eegsal gives them (Captum warns otherwise)
            x.requires_grad_()
        if method == "saliency":
            a = ca.Saliency(model).attribute(x, target=1, abs=False)
        elif method == "integrated_gradients":
            a = ca.IntegratedGradients(model).attribute(
                x, baselines=0.0, target=1, n_steps=kw["n_steps"]
            )
        elif method == "smoothgrad":
            a = ca.NoiseTunnel(ca.Saliency(model)).attribute(
                x, nt_type="smoothgrad", nt_samples=kw["n_samples"],
                stdevs=float(X.std()) * 0.1, target=1, abs=False,
            )  # fmt: skip
        else:  # occlusion
            a = ca.Occlusion(model).attribute(
                x, sliding_window_shapes=kw["window"], strides=kw["window"],
                baselines=0.0, target=1,
            )  # fmt: skip
        out[i : i + batch_size] = a.detach().cpu().numpy()
    return out


#: Methods timed through Captum directly too.
CAPTUM = ("saliency", "integrated_gradients", "smoothgrad", "occlusion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = get_device(args.device)
    epochs, _ = simulate_sleep_study(n_subjects=4, n_epochs=64, seed=0)
    X = epochs.get_data(units="uV").astype(np.float32)
    torch.manual_seed(0)
    model = EEGNet(X.shape[1], X.shape[2], 2).to(device).eval()
    batch = 64
    times = {"bare forward+backward": []}
    times.update({m: [] for m in METHODS})
    times.update({f"spectral {m}": [] for m in SPECTRAL})
    times.update({f"captum {m}": [] for m in CAPTUM})
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        bare(model, X, batch, device)
        times["bare forward+backward"].append(time.perf_counter() - t0)
        for method, kw in METHODS.items():
            t0 = time.perf_counter()
            attribute(model, epochs, method=method, label=1, batch_size=batch,
                      device=str(device), **kw)  # fmt: skip
            times[method].append(time.perf_counter() - t0)
        for method in CAPTUM:
            t0 = time.perf_counter()
            captum_direct(model, X, batch, device, method, METHODS[method])
            times[f"captum {method}"].append(time.perf_counter() - t0)
        for method, kw in SPECTRAL.items():
            t0 = time.perf_counter()
            attribute_spectrum(model, epochs, method=method, label=1,
                               batch_size=batch, device=str(device), **kw)  # fmt: skip
            times[f"spectral {method}"].append(time.perf_counter() - t0)
    ref = statistics.median(times["bare forward+backward"])
    print(f"device {device}, {len(X)} epochs x {X.shape[1]} ch x {X.shape[2]} "
          f"samples, EEGNet, batch {batch}, median of {args.repeats}")  # fmt: skip
    for name, ts in times.items():
        med = statistics.median(ts)
        line = (
            f"{name:30s} {len(X) / med:8.0f} epochs/s  {med / ref:6.2f}x the bare pass"
        )
        if name in PASSES:
            line += f"  ({med / ref / PASSES[name]:.2f}x per forward+backward step)"
        if name in CAPTUM:
            line += (
                f"  {med / statistics.median(times[f'captum {name}']):.2f}x "
                "Captum alone"
            )
        print(line)


if __name__ == "__main__":
    main()
