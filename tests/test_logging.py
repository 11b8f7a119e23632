"""eegsal's log messages are shown once, wherever logging is (or is not) configured."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import eegsal
from eegsal.simulate import simulate_sleep_study

NEEDLE = "Simulating 2 subjects x 10 epochs"


def _simulate(**kwargs):
    return simulate_sleep_study(
        n_subjects=2, n_epochs=10, epoch_length=1.0, seed=0, **kwargs
    )


@contextlib.contextmanager
def plain_session() -> Iterator[None]:
    """Logging as in a fresh Python session: no handler on the root logger.

    pytest attaches its capture handlers to the root logger when the test body
    starts (eegsal rightly leaves messages to them), so they are set aside here,
    inside the test body, not in a fixture.
    """
    root = logging.getLogger()
    saved = root.handlers
    root.handlers = []
    try:
        yield
    finally:
        root.handlers = saved


def test_plain_python_session():
    """In a fresh interpreter: verbose=True shows the line once, and basicConfig too."""
    code = textwrap.dedent(
        """
        import logging, sys
        from eegsal.simulate import simulate_sleep_study as sim
        kw = dict(n_subjects=2, n_epochs=10, epoch_length=1.0, seed=0)
        sim(**kw)
        print("-- verbose", file=sys.stderr)
        sim(**kw, verbose=True)
        print("-- basicConfig", file=sys.stderr)
        logging.basicConfig(level=logging.INFO, format="ROOT %(message)s")
        sim(**kw)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    quiet, verbose, configured = proc.stderr.split("-- ")
    assert NEEDLE not in quiet
    assert verbose.count(NEEDLE) == 1, proc.stderr
    assert configured.count(NEEDLE) == 1 and f"ROOT {NEEDLE}" in configured


def test_verbose_true_prints_info_once(capfd):
    with plain_session():
        _simulate(verbose=True)
        out, err = capfd.readouterr()
        assert err.count(NEEDLE) == 1, err
        assert NEEDLE not in out  # messages go to stderr, as the CLI's do
        _simulate()  # the level the call set is gone afterwards
        _simulate(verbose=False)
        assert NEEDLE not in capfd.readouterr().err


def test_set_log_level_shows_and_hides(capsys):
    with plain_session():
        logger = logging.getLogger("eegsal")
        old = logger.level
        try:
            eegsal.set_log_level("info")
            _simulate()
            assert capsys.readouterr().err.count(NEEDLE) == 1
            eegsal.set_log_level(False)
            _simulate()
            assert NEEDLE not in capsys.readouterr().err
            _simulate(verbose="info")  # the call's verbose wins over the global level
            assert capsys.readouterr().err.count(NEEDLE) == 1
        finally:
            logger.setLevel(old)


def test_warnings_shown_without_configuration(capsys):
    with plain_session():
        logging.getLogger("eegsal.stats").warning("a warning from a submodule")
        assert capsys.readouterr().err == "a warning from a submodule\n"


def test_user_root_handler_gets_it_once(capsys):
    with plain_session():
        # what logging.basicConfig(level=INFO) does, with a recognisable format
        root = logging.getLogger()
        handler = logging.StreamHandler()  # binds the (captured) sys.stderr now
        handler.setFormatter(logging.Formatter("ROOT %(message)s"))
        root.addHandler(handler)
        _simulate(verbose=True)
        err = capsys.readouterr().err
        assert err.count(NEEDLE) == 1, err
        assert f"ROOT {NEEDLE}" in err


def test_root_handler_above_the_level_does_not_hide_it(capsys):
    with plain_session():
        root = logging.getLogger()
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("ROOT %(message)s"))
        handler.setLevel(logging.WARNING)
        root.addHandler(handler)
        _simulate(verbose=True)
        err = capsys.readouterr().err
        assert err.count(NEEDLE) == 1 and "ROOT" not in err, err


def test_handler_on_eegsal_logger_gets_it_once(capsys):
    with plain_session():
        logger = logging.getLogger("eegsal")
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("MINE %(message)s"))
        logger.addHandler(handler)
        try:
            _simulate(verbose=True)
        finally:
            logger.removeHandler(handler)
        err = capsys.readouterr().err
        assert err.count(NEEDLE) == 1 and f"MINE {NEEDLE}" in err, err


def test_cli_prints_each_message_once(tmp_path, capsys):
    with plain_session():
        from eegsal.cli import main

        out = tmp_path / "sim-epo.fif"
        code = main(["simulate", str(out), "--n-subjects", "2", "--n-epochs", "10"])
        assert code == 0
        err = capsys.readouterr().err
        assert err.count("Simulating 2 subjects x 10 epochs") == 1, err
