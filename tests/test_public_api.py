import subprocess
import sys

import eegsal

DESIGN_NAMES_SO_FAR = {
    "simulate",
    "decode",
    "attribute",
    "Attributions",
    "DecodingResult",
    "read_attributions",
}


def test_public_surface_exposes_design_names():
    assert DESIGN_NAMES_SO_FAR <= set(eegsal.__all__)
    for name in eegsal.__all__:
        assert getattr(eegsal, name) is not None
    assert callable(eegsal.decode) and callable(eegsal.attribute)
    assert callable(eegsal.simulate.simulate_sleep_study)
    assert callable(eegsal.simulate.simulate_night)


def test_import_does_not_load_torch():
    code = "import sys, eegsal; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        eegsal.nope  # noqa: B018
