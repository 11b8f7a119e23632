"""Which bands, on which channels? Spectral maps of content and confounded decoders.
=================================================================================

The simulator's content signal lowers delta (1-4 Hz) and adds beta (20-30 Hz)
over the posterior "hot zone" in epochs reported as "flying". For the
``"content"`` scenario (the signal, no confound) and the ``"confound"``
scenario (no signal; "flying" goes with REM), EEGNet is trained (8 subjects,
4-fold subject-grouped CV) and explained in the Fourier domain
(:func:`eegsal.attribution.attribute_spectrum`, log-odds of "flying"):

- amplitude gradients x amplitudes, summed per band (a first-order estimate
  of what removing the band costs), and band occlusion (what removing it
  costs), per channel x band; their Spearman rank correlation;
- where the maps put their mass: the share on the content channels per band;
- the mixed model ``band occlusion ~ content + stage + (1 | subject)`` on the
  channel x band maps: the content effect, adjusted for the stage; and
  ``band occlusion ~ content + (1 | subject)`` within each stage alone.

In the confound scenario "flying" goes with REM with ``confound=0.9`` (at
the simulator's default 0.5, EEGNet does not learn the stage from 8
subjects and the decoder stays at chance).

Run: python analyses/spectral_content_vs_stage.py [OUT_DIR]
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from eegsal import decode
from eegsal.attribution import BANDS, attribute_spectrum
from eegsal.simulate import simulate_sleep_study
from eegsal.stats import fit_lmm


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
    rows, lmm_rows, within_rows = [], [], []
    for scenario in ("content", "confound"):
        extra = {"confound": 0.9} if scenario == "confound" else {}
        epochs, truth = simulate_sleep_study(
            n_subjects=8, n_epochs=60, scenario=scenario, seed=0, **extra
        )
        result = decode(epochs, "content", cv=4, max_epochs=25, patience=25,
                        batch_size=32, seed=0)  # fmt: skip
        print(scenario, result, flush=True)
        kw = dict(target="contrast", label=0)  # log-odds of "flying", for every epoch
        grad = attribute_spectrum(result, epochs, method="amplitude_gradient", **kw)
        occl = attribute_spectrum(result, epochs, method="band_occlusion", **kw)
        amp = np.abs(np.fft.rfft(epochs.get_data(units="uV")))
        gxa = np.abs(grad.data * amp)  # first-order cost of each bin
        by_band = np.stack(
            [gxa[:, :, (grad.freqs >= lo) & (grad.freqs < hi)].sum(-1)
             for lo, hi in BANDS.values()], axis=-1
        )  # fmt: skip
        rho = stats.spearmanr(
            by_band.mean(0).ravel(), np.abs(occl.data).mean(0).ravel()
        )[0]
        posterior = np.isin(occl.ch_names, truth.content_channels)  # the hot zone
        for j, band in enumerate(BANDS):
            mass = np.abs(occl.data[:, :, j]).mean(0)
            rows.append(
                dict(
                    scenario=scenario,
                    band=band,
                    balanced_accuracy=result.scores["balanced_accuracy"].mean(),
                    occlusion_share=mass.sum() / np.abs(occl.data).mean(0).sum(),
                    content_channel_share=mass[posterior].sum() / mass.sum(),
                    grad_occlusion_spearman=rho,
                )
            )
        lmm = fit_lmm(occl, "content + stage")
        z = lmm.t[lmm.coef("content")]  # channels x bands, other - flying
        for j, band in enumerate(BANDS):
            lmm_rows.append(
                dict(
                    scenario=scenario,
                    band=band,
                    max_abs_z_content_channels=np.abs(z[posterior, j]).max(),
                    max_abs_z_other_channels=np.abs(z[~posterior, j]).max(),
                )
            )
        for stage in sorted(occl.metadata["stage"].unique()):
            sel = np.flatnonzero((occl.metadata["stage"] == stage).to_numpy())
            sub = occl[sel]
            if sub.metadata["content"].nunique() < 2:
                continue  # one content only in this stage: nothing to compare
            z = fit_lmm(sub, "content").t[1]
            for j, band in enumerate(BANDS):
                within_rows.append(dict(
                    scenario=scenario, stage=stage, band=band, n=len(sel),
                    max_abs_z_content_channels=np.abs(z[posterior, j]).max(),
                    max_abs_z_other_channels=np.abs(z[~posterior, j]).max(),
                ))  # fmt: skip
    table, lmm_table = pd.DataFrame(rows), pd.DataFrame(lmm_rows)
    table.to_csv(out / "spectral_bands.csv", index=False)
    lmm_table.to_csv(out / "spectral_lmm.csv", index=False)
    print(table.round(3).to_string(index=False))
    print(lmm_table.round(2).to_string(index=False))
    within = pd.DataFrame(within_rows)
    within.to_csv(out / "spectral_lmm_within_stage.csv", index=False)
    print(within.query("band in ['delta', 'beta']").round(2).to_string(index=False))


if __name__ == "__main__":
    main()
