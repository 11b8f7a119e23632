import numpy as np
import pytest
import torch

from eegsal.attribution import attribute, saturation


def test_probability_gradient_is_the_saturated_log_odds_gradient(tiny_result, study):
    epochs, _ = study
    table = saturation(tiny_result, epochs)
    contrast = attribute(tiny_result, epochs, method="saliency", target="contrast")
    p = table["probability"].to_numpy()
    # two classes: dp/dx = p (1 - p) d(logit_true - logit_other)/dx, analytically
    expected = p * (1 - p) * np.linalg.norm(contrast.data.reshape(len(p), -1), axis=1)
    np.testing.assert_allclose(table["probability_norm"], expected, rtol=1e-3)
    np.testing.assert_allclose(
        table["ratio"], table["probability_norm"] / table["logit_norm"], rtol=1e-6
    )
    # the probability is the fold model's softmax for the true class
    X = torch.from_numpy(epochs.get_data(units="uV").astype(np.float32))
    pred = tiny_result.predictions
    np.testing.assert_allclose(
        np.where(pred["y_true"] == "flying", pred["proba_flying"], pred["proba_other"]),
        p,
        rtol=1e-4,
    )
    assert len(X) == len(table) and {"stage", "subject"} <= set(table.columns)


def test_plot_image(tiny_result, study):
    epochs, truth = study
    attr = attribute(tiny_result, epochs, method="saliency")
    fig = attr.plot_image(by="content", absolute=True, mask=truth.content_mask)
    assert len(fig.axes) == 3  # two panels + colour bar
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (s)" and len(ax.get_yticks()) == 19
    assert ax.images and ax.collections  # the image and the mask outline
    assert "a.u." in fig.axes[-1].get_ylabel()
    with pytest.raises(ValueError, match="mask must have shape"):
        attr.plot_image(mask=np.zeros((3, 3), bool))
    t_only = attribute(tiny_result, epochs, method="gradcam", layer="spatial_conv")
    fig = t_only.plot_image()  # one row, labelled as a time course, no electrodes
    assert fig.axes[0].get_ylabel() == "time course (no electrode axis)"
    assert len(fig.axes[0].get_yticks()) == 0
