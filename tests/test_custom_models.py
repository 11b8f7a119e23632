"""Models beyond the registered three: any module class or factory."""

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients
from torch import nn

from eegsal.attribution import attribute
from eegsal.decoding import DecodingResult, decode
from eegsal.models import build_model, model_params_for


class TinyNet(nn.Module):
    """Temporal conv (electrodes x time), spatial conv, mean over time, linear.

    It declares no Grad-CAM layers: the sizes of its outputs decide.
    """

    def __init__(self, n_chans, n_times, n_classes, n_filters=4):
        super().__init__()
        self.temporal = nn.Conv2d(1, n_filters, (1, 9))
        self.spatial = nn.Conv2d(n_filters, n_filters, (n_chans, 1))
        self.act = nn.ELU()
        self.head = nn.Linear(n_filters, n_classes)

    def forward(self, x):
        h = self.act(self.spatial(self.temporal(x.unsqueeze(1))))  # (B, F, 1, T')
        return self.head(h.mean(dim=(2, 3)))


class BraindecodeStyle(nn.Module):
    """A braindecode-like signature: keywords, ``n_outputs``, ``sfreq``."""

    def __init__(self, n_outputs=None, n_chans=None, chs_info=None, n_times=None,
                 input_window_seconds=None, sfreq=None, width=3):  # fmt: skip
        super().__init__()
        self.sfreq, self.n_times = sfreq, n_times
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_chans * n_times, n_outputs))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def custom_result(_study_session):
    epochs, _ = _study_session
    return decode(epochs, "content", model=TinyNet, model_params={"n_filters": 3},
                  cv=2, max_epochs=2, batch_size=32, seed=0, verbose=False)  # fmt: skip


def test_a_module_class_trains_and_is_recorded(custom_result):
    res = custom_result
    assert all(isinstance(m[1], TinyNet) for m in res.models)
    assert res.models[0][1].head.in_features == 3  # model_params reached it
    assert res.config["model"] == f"{__name__}.TinyNet"
    assert res.config["model_params"] == {"n_filters": 3}  # no sfreq: not taken
    assert res.predictions["fold"].isin([0, 1]).all()
    assert "TinyNet" in repr(res)


def test_a_custom_model_is_explained(custom_result, study):
    epochs, _ = study
    sal = attribute(custom_result, epochs, method="saliency")
    assert sal.data.shape == (len(epochs), 19, 200) and np.abs(sal.data).max() > 0
    # IG against Captum on the model of fold 0, for its own epochs
    ig = attribute(custom_result, epochs, method="integrated_gradients", n_steps=16)
    fold = custom_result.predictions["fold"].to_numpy()
    idx = np.flatnonzero(fold == 0)[:4]
    x = torch.from_numpy(epochs.get_data(units="uV")[idx].astype(np.float32))
    y_true = custom_result.predictions["y_true"].to_numpy()[idx]
    cls = np.searchsorted(custom_result.classes, y_true)
    ref = IntegratedGradients(custom_result.models[0]).attribute(
        x, baselines=x * 0, target=torch.from_numpy(cls), n_steps=16
    )
    np.testing.assert_allclose(ig.data[idx], ref.numpy(), rtol=1e-4, atol=1e-6)
    # Grad-CAM where the sizes say which axis is which; refused by default
    cam = attribute(custom_result, epochs, method="gradcam", layer="temporal")
    assert cam.params["spatially_resolved"] and cam.data.shape[1] == 19
    late = attribute(custom_result, epochs, method="gradcam", layer="spatial")
    assert not late.params["spatially_resolved"] and late.data.shape[1] == 1
    with pytest.raises(ValueError, match="does not say which layers"):
        attribute(custom_result, epochs, method="gradcam")


def test_a_custom_model_saves_weights_and_loads_with_its_class(
    custom_result, study, tmp_path
):
    epochs, _ = study
    custom_result.save(tmp_path / "res")
    for f in (tmp_path / "res").glob("*.pt"):  # tensors only, no pickled code
        state = torch.load(f, weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
    with pytest.raises(ValueError, match=r"TinyNet.*pass it.*model=TinyNet"):
        DecodingResult.load(tmp_path / "res")
    back = DecodingResult.load(tmp_path / "res", model=TinyNet)
    np.testing.assert_allclose(back.predict_proba(epochs),
                               custom_result.predict_proba(epochs),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(
        back.predictions["proba_flying"], custom_result.predictions["proba_flying"]
    )


def test_factories_and_braindecode_style_signatures():
    def factory(n_chans, n_times, n_classes, *, n_filters):
        return TinyNet(n_chans, n_times, n_classes, n_filters=n_filters)

    net = build_model(factory, 5, 64, 3, {"n_filters": 2})
    assert net(torch.randn(2, 5, 64)).shape == (2, 3)
    assert model_params_for(factory, {"n_filters": 2}, 100.0) == {"n_filters": 2}
    # keywords n_chans / n_times / n_outputs, and the sampling rate it asks for
    params = model_params_for(BraindecodeStyle, {}, 250.0)
    net = build_model(BraindecodeStyle, 5, 64, 3, params)
    assert net.sfreq == 250.0 and net.n_times == 64
    assert net(torch.randn(2, 5, 64)).shape == (2, 3)
    with pytest.raises(ValueError, match="sampled at 250 Hz"):
        model_params_for(BraindecodeStyle, {"sfreq": 500}, 250.0)
    with pytest.raises(TypeError, match="returned int, not a torch.nn.Module"):
        build_model(lambda c, t, k: 3, 5, 64, 3, {})
    with pytest.raises(TypeError, match="registered name"):
        build_model(3, 5, 64, 3, {})
