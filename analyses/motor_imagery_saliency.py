"""Left vs right fist on real EEG: where do the maps peak, and in which bands?

PhysioNet EEG Motor Movement/Imagery (Schalk et al., 2004), subjects 1-8,
runs of executed (3, 7, 11) and imagined (4, 8, 12) left/right fist
movements, loaded through ``data_manifests/eegmmidb_motor.yaml`` (64
channels, band-pass 7-30 Hz, 0.5-2.5 s after the cue, resampled to 80 Hz).
ShallowConvNet (Schirrmeister et al., 2017) decodes left vs right across
subjects (4-fold GroupKFold), then:

- decoding within each context (executed, imagined), with the
  context-restricted permutation test: does the effect hold in both?
- integrated gradients (log-odds of "left", every epoch): topographies over
  time per context;
- spectral maps (:func:`eegsal.attribution.attribute_spectrum`): band
  occlusion per channel x band, and amplitude gradients; the share of the
  maps in the alpha (8-12 Hz) and beta (12-30 Hz; sigma and beta of
  ``BANDS``) bands, and the rank of C3 and C4 among the 64 channels.
  Lateralized alpha/beta desynchronization (Pfurtscheller & Lopes da Silva,
  1999) predicts mass on C3/C4 in those bands, with opposite signs.

Run: python analyses/motor_imagery_saliency.py [--out motor] [--max-epochs 30]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml

import eegsal
from eegsal.attribution import BANDS, attribute_spectrum
from eegsal.data import load_manifest
from eegsal.stats import within_context_scores

MANIFEST = Path(__file__).parents[1] / "data_manifests" / "eegmmidb_motor.yaml"


def main() -> None:
    """Decode, explain in time and frequency, and summarize where the maps peak."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="motor")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = yaml.safe_load(MANIFEST.read_text())
    manifest["preprocessing"]["sfreq"] = 80.0
    manifest["root"] = str((MANIFEST.parent / manifest["root"]).resolve())
    epochs = load_manifest(manifest)
    print(epochs, flush=True)
    result = eegsal.decode(epochs, "content", model="shallow", cv=4,
                           max_epochs=args.max_epochs, patience=args.max_epochs,
                           device=args.device, seed=0)  # fmt: skip
    print(result)
    by_context = within_context_scores(result, "context", n_permutations=1000)
    print(by_context.round(3).to_string(index=False))
    by_context.to_csv(out / "within_context.csv", index=False)

    kw = dict(target="contrast", label=0, device=args.device)  # log-odds of "left"
    ig = eegsal.attribute(result, epochs, method="integrated_gradients",
                          n_steps=20, **kw)  # fmt: skip
    fig = ig.plot_topomap([0.75, 1.5, 2.25], by="context", absolute=False,
                          title="Integrated gradients, log-odds of 'left'")  # fmt: skip
    fig.savefig(out / "ig_topomap.png", dpi=120)

    occl = attribute_spectrum(result, epochs, method="band_occlusion", **kw)
    grad = attribute_spectrum(result, epochs, method="amplitude_gradient", **kw)
    amp = np.abs(np.fft.rfft(epochs.get_data(units="uV")))
    gxa = np.abs(grad.data * amp).mean(0)  # channels x frequencies
    rows = []
    mag = np.abs(occl.data).mean(0)  # channels x bands
    ch = occl.ch_names
    for j, band in enumerate(BANDS):
        lo, hi = BANDS[band]
        order = list(np.argsort(-mag[:, j]))
        in_band = (grad.freqs >= lo) & (grad.freqs < hi)
        rows.append({
            "band": band,
            "occlusion_share": mag[:, j].sum() / mag.sum(),
            "amplitude_gradient_share": gxa[:, in_band].sum() / gxa.sum(),
            "top_channels": " ".join(ch[i] for i in order[:4]),
            "rank_C3": order.index(ch.index("C3")) + 1,
            "rank_C4": order.index(ch.index("C4")) + 1,
            "signed_C3": occl.data[:, ch.index("C3"), j].mean(),
            "signed_C4": occl.data[:, ch.index("C4"), j].mean(),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(out / "bands.csv", index=False)
    with pd.option_context("display.width", 200):
        print(table.round(3).to_string(index=False))
    bands = [b for b in ("alpha", "sigma", "beta") if b in BANDS]
    fig = occl.plot_topomap(
        [float(np.mean(BANDS[b])) for b in bands], by="context", absolute=False,
        window=0.0, title="Band occlusion: change of the log-odds of 'left' when "
        "the band is removed from a channel",
    )  # fmt: skip
    fig.savefig(out / "band_topomap.png", dpi=120)
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    for name in ("C3", "C4", "Cz", "Oz"):
        if name in ch:
            ax.plot(grad.freqs, gxa[ch.index(name)], label=name)
    ax.set(xlim=(0, 40), xlabel="frequency (Hz)",
           ylabel="|amplitude gradient x amplitude| (a.u.)",
           title="Which frequencies the decoder reads, per channel")  # fmt: skip
    ax.legend(frameon=False)
    fig.savefig(out / "spectrum.png", dpi=120)
    print(f"wrote {out}/within_context.csv, bands.csv, ig_topomap.png, "
          "band_topomap.png, spectrum.png")  # fmt: skip


if __name__ == "__main__":
    main()
