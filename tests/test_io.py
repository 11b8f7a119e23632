"""Atomic writes: permissions, temporaries, the lock of an output folder."""

import os
import stat

import pytest

from eegsal._io import atomic_dir, atomic_path, remove_temporaries


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_written_files_follow_the_umask(tmp_path, umask):
    # as open() and mkdir() would make them: a lab group can read the report
    with atomic_path(tmp_path / "report.html") as tmp:
        tmp.write_text("<html></html>")
    with atomic_dir(tmp_path / "parts") as tmp:
        (tmp / "a-epo.fif").write_bytes(b"x")
    (tmp_path / "plain.txt").write_text("x")
    os.mkdir(tmp_path / "plain")
    mode = stat.S_IMODE((tmp_path / "report.html").stat().st_mode)
    assert (
        mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    )
    mode = stat.S_IMODE((tmp_path / "parts").stat().st_mode)
    assert mode == 0o777 & ~umask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_only_eegsal_temporaries_are_removed(tmp_path):
    sub = tmp_path / "tables"
    sub.mkdir()
    with pytest.raises(KeyboardInterrupt):  # a writer stopped half-way
        with atomic_path(sub / "scores.csv") as tmp:
            tmp.write_text("half")
            left = tmp.with_name(tmp.name + "x")  # what a kill -9 would leave
            os.link(tmp, left)
            raise KeyboardInterrupt
    ours = [left, tmp_path / ".epochs.k2j4_x9z.tmp", tmp_path / "epochs" / ".ab12cd_3"]
    ours[1].mkdir()
    ours[2].mkdir(parents=True)
    (ours[2] / "epochs-epo.fif").write_bytes(b"x")
    theirs = [sub / ".notes.tmp", sub / "x.tmp-y", tmp_path / ".git", sub / ".a.b.tmp"]
    for p in theirs[:2]:
        p.write_text("mine")
    theirs[2].mkdir()
    (theirs[2] / "HEAD").write_text("ref")
    theirs[3].mkdir()
    (tmp_path / "link.x1y2z3w4.tmp").symlink_to(theirs[2])
    removed = remove_temporaries(tmp_path)
    assert sorted(removed) == sorted(ours)
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs) and (theirs[2] / "HEAD").is_file()
