"""Signal generators of the sleep simulator (vectorized over epochs).

Amplitudes are in µV; every generator takes a :class:`numpy.random.Generator`.
Used by the simulators of :mod:`eegsal.simulate`, which documents the signal
model.
"""

from __future__ import annotations

import functools

import mne
import numpy as np

DELTA_BAND = (1.0, 4.0)  # Hz, reduced by the content signal
HIGH_BAND = (20.0, 30.0)  # Hz, added by the content signal
HIGH_AMPLITUDE = 10.0  # µV of high-band activity at effect 1
# aperiodic exponent and amplitude (µV) of the background, per stage
_APERIODIC = {
    "W": (1.2, 8.0),
    "N1": (1.5, 9.0),
    "N2": (1.8, 11.0),
    "N3": (2.2, 14.0),
    "REM": (2.0, 8.0),
}


def _band_noise(rng, n, n_times, sfreq, fmin, fmax):
    """Gaussian noise band-limited to [fmin, fmax] Hz, unit variance overall."""
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    fmin = np.broadcast_to(np.asarray(fmin, float), (n,))[:, None]
    fmax = np.broadcast_to(np.asarray(fmax, float), (n,))[:, None]
    # smooth (raised-cosine) band edges of 0.5 Hz avoid ringing
    edge = 0.5
    gain = np.clip((freqs - fmin + edge) / edge, 0, 1) * np.clip(
        (fmax + edge - freqs) / edge, 0, 1
    )
    gain = np.sin(gain * np.pi / 2) ** 2
    spec = rng.standard_normal((n, freqs.size)) + 1j * rng.standard_normal(
        (n, freqs.size)
    )
    out = np.fft.irfft(spec * gain, n=n_times, axis=-1)
    out /= out.std() + 1e-30
    return out


def _aperiodic(rng, n, n_times, sfreq, exponent):
    """1/f^exponent noise (knee at 0.5 Hz), unit variance overall."""
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    amp = (freqs**2 + 0.5**2) ** (-exponent / 4)
    amp[0] = 0.0
    spec = rng.standard_normal((n, freqs.size)) + 1j * rng.standard_normal(
        (n, freqs.size)
    )
    out = np.fft.irfft(spec * amp, n=n_times, axis=-1)
    out /= out.std() + 1e-30
    return out


def _bandpass(x, sfreq, fmin, fmax):
    """Zero-phase FFT band-pass along the last axis (brick wall, smooth edges)."""
    n_times = x.shape[-1]
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    gain = ((freqs >= fmin) & (freqs <= fmax)).astype(float)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * gain, n=n_times, axis=-1)


def _add_events(rng, n, n_times, sfreq, rate, make_waveform):
    """Sum of transient waveforms at Poisson times, shape (n, n_times).

    ``make_waveform(rng, n_events)`` returns an array (n_events, length).
    """
    counts = rng.poisson(rate * n_times / sfreq, size=n)
    n_ev = int(counts.sum())
    out = np.zeros((n, n_times))
    if n_ev == 0:
        return out
    wave = make_waveform(rng, n_ev)
    length = wave.shape[1]
    epoch_idx = np.repeat(np.arange(n), counts)
    onset = rng.integers(-length // 2, n_times - length // 2, size=n_ev)
    cols = onset[:, None] + np.arange(length)[None, :]
    keep = (cols >= 0) & (cols < n_times)
    rows = np.broadcast_to(epoch_idx[:, None], cols.shape)
    np.add.at(out, (rows[keep], cols[keep]), wave[keep])
    return out


def _spindles(freq_by_event):
    def make(rng, n_ev, sfreq):
        length = int(2.0 * sfreq)
        t = np.arange(length) / sfreq
        dur = rng.uniform(0.5, 2.0, n_ev)[:, None]
        env = np.where(t[None] < dur, np.sin(np.pi * t[None] / dur) ** 2, 0.0)
        freq = freq_by_event(rng, n_ev)[:, None]
        phase = rng.uniform(0, 2 * np.pi, (n_ev, 1))
        return env * np.sin(2 * np.pi * freq * t[None] + phase)

    return make


def _k_complex(rng, n_ev, sfreq):
    """Sharp negative deflection followed by a slower positive one (~1 s)."""
    t = np.arange(int(1.2 * sfreq)) / sfreq
    neg = -np.exp(-0.5 * ((t - 0.25) / 0.08) ** 2)
    pos = 0.6 * np.exp(-0.5 * ((t - 0.65) / 0.18) ** 2)
    amp = rng.uniform(0.7, 1.3, (n_ev, 1))
    return amp * (neg + pos)[None]


def _vertex_wave(rng, n_ev, sfreq):
    t = np.arange(int(0.4 * sfreq)) / sfreq
    wave = -np.exp(-0.5 * ((t - 0.15) / 0.04) ** 2) + 0.3 * np.exp(
        -0.5 * ((t - 0.28) / 0.05) ** 2
    )
    return rng.uniform(0.7, 1.3, (n_ev, 1)) * wave[None]


def _sawtooth_train(rng, n_ev, sfreq):
    """Bursts of 1-3 s of triangular 2-5 Hz waves (REM sawtooth waves)."""
    length = int(3.0 * sfreq)
    t = np.arange(length) / sfreq
    dur = rng.uniform(1.0, 3.0, (n_ev, 1))
    freq = rng.uniform(2.0, 5.0, (n_ev, 1))
    phase = (t[None] * freq) % 1.0
    saw = np.where(phase < 0.8, phase / 0.8, (1.0 - phase) / 0.2) * 2 - 1  # slow rise
    env = np.where(
        t[None] < dur, np.sqrt(np.clip(np.sin(np.pi * t[None] / dur), 0, None)), 0.0
    )
    return env * saw


def _saccade(rng, n_ev, sfreq):
    """Horizontal eye movement: fast step, fixation of 0.2-1 s, return."""
    length = int(1.5 * sfreq)
    t = np.arange(length) / sfreq
    hold = rng.uniform(0.2, 1.0, (n_ev, 1))
    rise = 1.0 / (1.0 + np.exp(-(t[None] - 0.1) / 0.015))
    fall = 1.0 / (1.0 + np.exp(-(t[None] - 0.1 - hold) / 0.05))
    sign = rng.choice([-1.0, 1.0], size=(n_ev, 1))
    return sign * rng.uniform(0.5, 1.0, (n_ev, 1)) * (rise - fall)


def _blink(rng, n_ev, sfreq):
    t = np.arange(int(0.5 * sfreq)) / sfreq
    return (
        rng.uniform(0.7, 1.3, (n_ev, 1)) * np.exp(-0.5 * ((t - 0.2) / 0.06) ** 2)[None]
    )


@functools.cache
def _template_positions():
    """10-05 template positions in head coordinates (the frame of ``info``)."""
    montage = mne.channels.make_standard_montage("colin27_1005")
    info = mne.create_info(montage.ch_names, 100.0, "eeg")
    info.set_montage(montage)
    return {ch["ch_name"]: ch["loc"][:3] for ch in info["chs"]}


class _Scalp:
    """Electrode positions and the topographies of each simulated component."""

    def __init__(self, info: mne.Info):
        self.ch_names = list(info["ch_names"])
        self.pos = np.array([ch["loc"][:3] for ch in info["chs"]])
        # volume conduction: a row-normalized Gaussian kernel over 3 cm
        d2 = ((self.pos[:, None] - self.pos[None]) ** 2).sum(-1)
        mix = np.exp(-d2 / (2 * 0.03**2))
        self.mixing = mix / np.sqrt((mix**2).sum(1, keepdims=True))
        self.radius = np.linalg.norm(self.pos, axis=1).mean()

    def center(self, names):
        """Mean position of the named template electrodes (whether recorded or not)."""
        return np.mean([_template_positions()[n] for n in names], axis=0)

    def bump(self, center, width, jitter=None):
        """Gaussian topography around ``center`` (m), peak 1."""
        if jitter is not None:
            center = center + jitter
        d2 = ((self.pos - center) ** 2).sum(-1)
        return np.exp(-d2 / (2 * width**2))

    def eye_leak(self):
        """Horizontal-EOG leak: + near the left outer canthus, - near the right."""
        down = np.array([0.0, 0.0, -0.02])
        left = self.center(["Fp1", "F7"]) + down
        right = self.center(["Fp2", "F8"]) + down
        near_l = np.exp(-((self.pos - left) ** 2).sum(-1) / (2 * 0.04**2))
        near_r = np.exp(-((self.pos - right) ** 2).sum(-1) / (2 * 0.04**2))
        return near_l - near_r

    def blink_leak(self):
        eye = self.center(["Fp1", "Fp2"]) + np.array([0.0, 0.01, -0.03])
        d2 = ((self.pos - eye) ** 2).sum(-1)
        return np.exp(-d2 / (2 * 0.04**2))


def _stage_components(stage, scalp, subj, sfreq):
    """List of (topography, amplitude µV, generator(rng, n, n_times)) for a stage."""
    jit = subj["jitter"]
    comps = []
    if stage == "W":
        iaf = subj["iaf"]
        comps.append(
            (
                scalp.bump(scalp.center(["O1", "O2"]), 0.05, jit[0]),
                12.0,
                lambda rng, n, nt: _band_noise(rng, n, nt, sfreq, iaf - 1.0, iaf + 1.0),
            )
        )
        comps.append(
            (
                scalp.blink_leak(),
                60.0,
                lambda rng, n, nt: _add_events(
                    rng, n, nt, sfreq, 0.15, lambda r, k: _blink(r, k, sfreq)
                ),
            )
        )
    elif stage == "N1":
        comps.append(
            (
                scalp.bump(scalp.center(["Fz", "Cz"]), 0.06, jit[1]),
                6.0,
                lambda rng, n, nt: _band_noise(rng, n, nt, sfreq, 4.0, 7.0),
            )
        )
        comps.append(
            (
                scalp.bump(scalp.center(["Cz"]), 0.04, jit[1]),
                60.0,
                lambda rng, n, nt: _add_events(
                    rng, n, nt, sfreq, 0.1, lambda r, k: _vertex_wave(r, k, sfreq)
                ),
            )
        )
    elif stage == "N2":
        fsp = subj["spindle_freq"]
        make = _spindles(lambda r, k: np.clip(r.normal(fsp, 0.4, k), 12.0, 15.0))
        comps.append(
            (
                scalp.bump(scalp.center(["C3", "Cz", "C4"]), 0.05, jit[2]),
                30.0,
                lambda rng, n, nt: _add_events(
                    rng, n, nt, sfreq, 8 / 60, lambda r, k: make(r, k, sfreq)
                ),
            )
        )
        comps.append(
            (
                scalp.bump(scalp.center(["Fz", "Cz"]), 0.06, jit[1]),
                70.0,
                lambda rng, n, nt: _add_events(
                    rng, n, nt, sfreq, 1.5 / 60, lambda r, k: _k_complex(r, k, sfreq)
                ),
            )
        )
    elif stage == "N3":
        comps.append(
            (
                scalp.bump(scalp.center(["Fz"]), 0.06, jit[3]),
                30.0,
                lambda rng, n, nt: _band_noise(rng, n, nt, sfreq, 0.5, 2.0),
            )
        )
    else:  # REM
        comps.append(
            (
                scalp.bump(scalp.center(["Cz"]), 0.06, jit[1]),
                5.0,
                lambda rng, n, nt: _band_noise(rng, n, nt, sfreq, 4.0, 7.0),
            )
        )
        comps.append(
            (
                scalp.bump(scalp.center(["Cz"]), 0.05, jit[1]),
                20.0,
                lambda rng, n, nt: _add_events(
                    rng, n, nt, sfreq, 3 / 60, lambda r, k: _sawtooth_train(r, k, sfreq)
                ),
            )
        )
        comps.append(
            (
                scalp.eye_leak(),
                60.0,
                lambda rng, n, nt: _add_events(
                    rng, n, nt, sfreq, 0.5, lambda r, k: _saccade(r, k, sfreq)
                ),
            )
        )
    return comps


def _brain_activity(rng, stage, n, n_times, scalp, subj, sfreq):
    """Background + stage activity of one subject, (n, n_channels, n_times) in µV."""
    n_ch = len(scalp.ch_names)
    exponent, amp = _APERIODIC[stage]
    src = _aperiodic(rng, n * n_ch, n_times, sfreq, exponent).reshape(n, n_ch, n_times)
    x = amp * np.einsum("cs,est->ect", scalp.mixing, src)
    for topo, amp_c, gen in _stage_components(stage, scalp, subj, sfreq):
        x += amp_c * topo[None, :, None] * gen(rng, n, n_times)[:, None, :]
    return x * subj["gain"]


def _plant_content(rng, x, ch_idx, envelope, effect, sfreq):
    """Add the content signal in place on ``x[:, ch_idx]``.

    ``envelope`` (n_times,) is zero outside the content window, so nothing
    changes outside it; ``effect`` (n,) is the per-epoch effect size.
    """
    sub = x[:, ch_idx]
    n, n_c, n_t = sub.shape
    delta = _bandpass(sub, sfreq, *DELTA_BAND)
    high = _band_noise(rng, n * n_c, n_t, sfreq, *HIGH_BAND).reshape(n, n_c, n_t)
    e = effect[:, None, None] * envelope[None, None, :]
    x[:, ch_idx] = sub - e * delta + e * HIGH_AMPLITUDE * high


def _sensor_noise(rng, x, snr, chunk=256):
    """Add white noise of RMS ``std(x) / snr``, in place, chunk by chunk.

    Working on chunks of the first axis keeps the temporaries small: a study
    of several GiB needs no second copy of itself.
    """
    if not np.isfinite(snr):
        return
    flat = x.reshape(x.shape[0], -1) if x.ndim > 1 else x[None]
    s1 = s2 = 0.0
    for i in range(0, len(flat), chunk):
        block = flat[i : i + chunk]
        s1 += block.sum()
        s2 += np.square(block).sum()
    mean = s1 / flat.size
    scale = np.sqrt(max(s2 / flat.size - mean**2, 0.0)) / snr
    for i in range(0, len(flat), chunk):
        block = flat[i : i + chunk]
        block += scale * rng.standard_normal(block.shape)
