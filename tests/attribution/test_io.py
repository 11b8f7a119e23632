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


def test_streamed_file_equals_in_memory_and_reads_lazily(tiny_result, study, tmp_path):
    epochs, _ = study
    mem = attribute(tiny_result, epochs, method="integrated_gradients", n_steps=4)
    fname = tmp_path / "streamed.h5"
    lazy = attribute(tiny_result, epochs, method="integrated_gradients", n_steps=4,
                     batch_size=16, out=fname)  # fmt: skip
    assert not lazy.preload and "completeness_error" in lazy.metadata
    import h5py

    assert isinstance(lazy.data, h5py.Dataset)
    assert lazy.data.chunks == (1,) + mem.data.shape[1:]  # one chunk per epoch
    # batches of 16 and 64: float32 sums may round differently, never by more
    np.testing.assert_allclose(lazy.data[()], mem.data, rtol=1e-4, atol=1e-7)
    pd.testing.assert_frame_equal(
        lazy.metadata, mem.metadata, check_exact=False, rtol=1e-3, atol=1e-6
    )
    # averages stream over blocks; selections read only what they need
    np.testing.assert_allclose(
        lazy.average(by="stage")["REM"].data, mem.average(by="stage")["REM"].data,
        rtol=1e-6, atol=1e-12,
    )  # fmt: skip
    order = [7, 2, 2, 30]
    np.testing.assert_array_equal(lazy[order].data, lazy.data[()][order])
    np.testing.assert_array_equal(
        lazy["stage == 'REM'"].data, mem["stage == 'REM'"].data
    )
    lazy.save(tmp_path / "copy.h5")  # streams too
    np.testing.assert_array_equal(
        read_attributions(tmp_path / "copy.h5").data, mem.data
    )
    assert lazy.load_data().preload
    np.testing.assert_array_equal(lazy.data, mem.data)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        attribute(tiny_result, epochs, method="saliency", out=fname)


def test_interrupted_streaming_leaves_no_file(tiny_result, study, tmp_path):
    epochs, _ = study
    fname = tmp_path / "broken.h5"
    with pytest.raises(ValueError, match="window must be"):
        attribute(tiny_result, epochs, method="occlusion", window=(0, 5), out=fname)

    class Boom(RuntimeError):
        pass

    model = tiny_result.models[0]  # fails after the file was opened
    handle = model.register_forward_hook(
        lambda *a: (_ for _ in ()).throw(Boom("disk full"))
    )
    try:
        with pytest.raises(Boom):
            attribute(tiny_result, epochs, method="saliency", out=fname)
    finally:
        handle.remove()
    assert list(tmp_path.iterdir()) == []
