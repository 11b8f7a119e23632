"""Real EEGBCI recordings from ../shared/data, counted independently with MNE."""

import mne
import numpy as np
import pytest
from mne.datasets import eegbci

from eegsal.data import load_eegbci
from tests.conftest import shared_data_or_skip


@pytest.fixture(scope="module")
def root():
    return shared_data_or_skip("eegmmidb", "MNE-eegbci-data")


@pytest.mark.parametrize("contrast", ["left_right", "movement_rest"])
def test_counts_match_the_annotations(root, contrast):
    epochs = load_eegbci(root.parent, subjects=[1, 2], runs=[3, 4], contrast=contrast)
    assert len(epochs.ch_names) == 64 and epochs.info["sfreq"] == 160.0
    assert epochs.get_montage() is not None and "C3" in epochs.ch_names
    meta = epochs.metadata
    for subject in (1, 2):
        for run in (3, 4):
            (fname,) = eegbci.load_data(
                subject, [run], path=root.parent, update_path=False
            )
            ann = mne.io.read_raw_edf(fname, verbose=False).annotations
            counts = {d: int((ann.description == d).sum()) for d in ("T0", "T1", "T2")}
            sel = meta[(meta["subject"] == f"S{subject:03d}") & (meta["run"] == run)]
            if contrast == "left_right":
                assert (sel["content"] == "left").sum() == counts["T1"]
                assert (sel["content"] == "right").sum() == counts["T2"]
            else:
                assert (sel["content"] == "rest").sum() == counts["T0"]
                assert (sel["content"] == "movement").sum() == counts["T1"] + counts[
                    "T2"
                ]
            context = "executed" if run == 3 else "imagined"
            assert (sel["context"] == context).all()
    assert np.isfinite(epochs.get_data()).all()


def test_bad_runs(root):
    with pytest.raises(ValueError, match="not left/right fist runs"):
        load_eegbci(root.parent, subjects=[1], runs=[5])
