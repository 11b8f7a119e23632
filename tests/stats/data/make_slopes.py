"""Write slopes.csv: the data of the random-slope reference fits.

10 subjects x 30 epochs, ``content`` (2 levels) and ``stage`` (3 levels), six
response columns ``y0``..``y5`` with random intercepts and random content
slopes of different sizes (``y0``: no slope variance, a boundary fit;
``y5``: a large, correlated one). ``slopes_lme4.R`` fits them with lme4 and
writes ``slopes_lme4.csv``; the tests read both files and never run R.

Run: python tests/stats/data/make_slopes.py
"""

from pathlib import Path

import numpy as np
import pandas as pd


def make(seed: int = 20240601) -> pd.DataFrame:
    """Build the data set (values rounded to 6 decimals, as written)."""
    rng = np.random.default_rng(seed)
    n_sub, per = 10, 30
    n = n_sub * per
    sub = np.repeat(np.arange(n_sub), per)
    df = pd.DataFrame(
        {
            "subject": [f"s{i:02d}" for i in sub],
            "content": rng.choice(["flying", "other"], n),
            "stage": rng.choice(["N2", "N3", "REM"], n),
        }
    )
    other = (df["content"] == "other").to_numpy(float)
    rem = (df["stage"] == "REM").to_numpy(float)
    sd_slope = [0.0, 0.2, 0.5, 0.8, 1.2, 2.0]
    for k, sd in enumerate(sd_slope):
        u0 = rng.normal(0, 1.0, n_sub)
        u1 = rng.normal(0, sd, n_sub)
        if k == 5:  # correlated with the intercept
            u1 = u1 + 0.5 * sd * u0
        y = 0.3 * rem + 0.2 * other + u0[sub] + u1[sub] * other + rng.normal(0, 1, n)
        df[f"y{k}"] = np.round(y, 6)
    return df


if __name__ == "__main__":
    make().to_csv(Path(__file__).with_name("slopes.csv"), index=False)
