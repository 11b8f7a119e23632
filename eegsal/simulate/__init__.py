"""Ground-truth simulations of sleep studies: scored epochs or a whole night.

The simulator is eegsal's yardstick: every stage of the package (decoding,
attribution, statistics) can be checked against where the content signal was
planted and which stage markers lie where.

Signal model, per epoch (amplitudes are standard deviations at the peak of a
component's topography, in µV, before the subject's gain):

* aperiodic 1/f^chi background on every channel, spatially smoothed over the
  scalp (volume conduction), with a stage-specific exponent chi;
* W: posterior alpha at the subject's individual alpha frequency, eye blinks;
* N1: fronto-central theta (4-7 Hz) and vertex sharp waves at Cz;
* N2: central sleep spindles (12-15 Hz, 0.5-2 s) and fronto-central K-complexes;
* N3: high-amplitude frontal slow waves (0.5-2 Hz);
* REM: central theta, sawtooth-wave trains (2-5 Hz), and rapid eye movements
  whose horizontal EOG leaks into Fp1/Fp2/F7/F8 with opposite polarity left/right;
* the content signal (positive-content epochs of the ``"content"`` and
  ``"both"`` scenarios only): inside ``content_window`` and on exactly the
  ``content_channels``, the delta (1-4 Hz) activity is scaled by
  ``1 - effect`` and beta/gamma activity (20-30 Hz) of ``effect * 10 µV`` is
  added: the posterior "hot zone" of dreaming (Siclari et al., 2017);
* white sensor noise at the requested ``snr``.

The names are defined in submodules, by what they hold: ``study``
(:func:`simulate_sleep_study`), ``night`` (:func:`simulate_night`),
``planted`` (:func:`plant_content`), ``shortcut`` (:func:`plant_shortcut`),
``depth`` (the depth confound and its measures, :func:`relative_delta_power`
and :func:`log_delta_power`), ``common`` (:class:`GroundTruth`, the constants
and the parameter checks the simulators share) and ``signals`` (the signal
generators). Import them from here.
"""

from __future__ import annotations

from eegsal.simulate import common as _common
from eegsal.simulate import planted as _planted
from eegsal.simulate import shortcut as _shortcut
from eegsal.simulate.common import DEFAULT_CH_NAMES as DEFAULT_CH_NAMES
from eegsal.simulate.common import SCENARIOS as SCENARIOS
from eegsal.simulate.common import GroundTruth
from eegsal.simulate.depth import DEPTH_BAND as DEPTH_BAND
from eegsal.simulate.depth import DEPTH_GAIN as DEPTH_GAIN
from eegsal.simulate.depth import log_delta_power, relative_delta_power
from eegsal.simulate.night import simulate_night
from eegsal.simulate.planted import plant_content
from eegsal.simulate.shortcut import plant_shortcut
from eegsal.simulate.study import simulate_sleep_study

__all__ = [
    "FRONTAL",
    "GroundTruth",
    "STAGES",
    "WAVEFORMS",
    "plant_content",
    "plant_shortcut",
    "log_delta_power",
    "relative_delta_power",
    "simulate_night",
    "simulate_sleep_study",
]

# The constants, with the comments that document them here (autodata)
#: The simulated sleep stages (AASM), in order.
STAGES = _common.STAGES
#: Parieto-occipital electrodes of the posterior "hot zone" (those present are used).
HOT_ZONE = _common.HOT_ZONE
#: Frontopolar and frontal electrodes, where eye movements show up.
FRONTAL = _shortcut.FRONTAL
#: Waveforms :func:`plant_content` can plant.
WAVEFORMS = _planted.WAVEFORMS
