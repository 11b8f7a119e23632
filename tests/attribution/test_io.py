import numpy as np
import pandas as pd
import pytest

import eegsal
from eegsal.attribution import attribute, read_attributions


def test_save_read_round_trip_is_exact(tiny_result, study, tmp_path):
    epochs, _ = study
    attr = attribute(tiny_result, epochs, method="integrated_gradients", n_steps=4)
    fname = tmp_path / "attr.h5"
    attr.save(fname)
    back = eegsal.read_attributions(fname)
    np.testing.assert_array_equal(back.data, attr.data)
    np.testing.assert_array_equal(back.times, attr.times)
    assert back.ch_names == attr.ch_names
    # info travels as MNE's FIF, which stores positions as float32
    np.testing.assert_allclose(
        [ch["loc"] for ch in back.info["chs"]],
        [ch["loc"] for ch in attr.info["chs"]],
        rtol=1e-6,
        atol=1e-9,
    )
    assert back.info["sfreq"] == attr.info["sfreq"]
    pd.testing.assert_frame_equal(back.metadata, attr.metadata)
    assert (back.method, back.target, back.sign) == (
        attr.method,
        attr.target,
        attr.sign,
    )
    assert back.params == attr.params
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        attr.save(fname)
    attr[:3].save(fname, overwrite=True)
    assert len(read_attributions(fname)) == 3


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_attributions(tmp_path / "missing.h5")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not an eegsal attributions file"):
        read_attributions(tmp_path / "other.h5")
