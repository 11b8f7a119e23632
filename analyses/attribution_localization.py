"""Which attribution methods find the simulated content signal?
============================================================

A content-scenario sleep study (8 subjects x 60 epochs, the demo's) is decoded
with EEGNet (4-fold GroupKFold over subjects); every method explains the
held-out epochs of each fold. For each method the table gives the share of the
absolute attribution that falls in the ground-truth content cells (channels x
window), in the content channels (all times) and in the content window (all
channels), next to the share of the map those cells occupy (what a map that
ignores the signal would score). Grad-CAM is computed at ``temporal_conv``
(channels x time) and at ``spatial_conv`` (time only: no channel share), and
guided Grad-CAM at ``spatial_conv`` takes its electrodes from the input gradient;
``projection='pattern'`` takes them from the activation patterns of the layer's
features (Haufe et al., 2014), at ``spatial_conv`` and at the last convolution.

Run: python analyses/attribution_localization.py [OUT_DIR]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from eegsal import attribute, decode
from eegsal.simulate import simulate_sleep_study


def main() -> None:
    """Run the analysis; write its outputs into OUT_DIR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "out",
        nargs="?",
        default="analyses-output",
        metavar="OUT_DIR",
        help="output folder (default: %(default)s)",
    )
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    epochs, truth = simulate_sleep_study(n_subjects=8, n_epochs=60, seed=0)
    result = decode(
        epochs, "content", cv=4, max_epochs=25, patience=25, batch_size=32, seed=0
    )
    print(result)
    runs = {
        "saliency": {},
        "input_x_gradient": {},
        "integrated_gradients": {"n_steps": 20},
        "smoothgrad": {"n_samples": 10, "noise": 0.1},
        "deeplift": {},
        "occlusion": {"window": (1, 20)},
        "gradcam @ temporal_conv": {"method": "gradcam", "layer": "temporal_conv"},
        "gradcam @ spatial_conv": {"method": "gradcam", "layer": "spatial_conv"},
        "guided gradcam @ spatial_conv": {
            "method": "guided_gradcam",
            "layer": "spatial_conv",
        },
        "gradcam @ spatial_conv, pattern": {
            "method": "gradcam",
            "layer": "spatial_conv",
            "projection": "pattern",
        },
        "gradcam @ separable_pointwise, pattern": {
            "method": "gradcam",
            "layer": "separable_pointwise",
            "projection": "pattern",
        },
    }
    chans = truth.content_mask.any(axis=1)
    window = truth.content_mask.any(axis=0)
    rows = []
    for name, kw in runs.items():
        kw = dict(kw)
        method = kw.pop("method", name)
        attr = attribute(result, epochs, method=method, **kw)
        mag = np.abs(attr.data).sum(axis=0)  # (channels or 1, times)
        total = mag.sum()
        row = {"method": name, "window share": mag[:, window].sum() / total}
        if attr.params["spatially_resolved"]:
            row["cell share"] = mag[truth.content_mask].sum() / total
            row["channel share"] = mag[chans].sum() / total
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)[
        ["method", "cell share", "channel share", "window share"]
    ]
    chance = {
        "method": "(share of the map)",
        "cell share": truth.content_mask.mean(),
        "channel share": chans.mean(),
        "window share": window.mean(),
    }
    table = pd.concat([table, pd.DataFrame([chance])], ignore_index=True)
    table.to_csv(out / "attribution_localization.csv", index=False)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
