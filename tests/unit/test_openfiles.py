"""Kept-open kernel files (lxcwatch/sources/openfiles.py): a pread at offset 0 sees fresh text (files of the live host
whose process or device is gone: tests/live/test_openfiles_live.py)."""

from lxcwatch.sources.openfiles import FD_BASE, OpenFiles


def test_kept_descriptors_sit_above_the_select_range_and_see_rewrites(tmp_path):
    files = OpenFiles(budget=2)
    paths = [tmp_path / name for name in ("a", "b", "c")]
    for i, path in enumerate(paths):
        path.write_text(f"{i}\n")
    assert [files.read(str(p)) for p in paths] == ["0", "1", "2"]
    assert len(files) == 2 and not files.kept(str(paths[2]))  # over budget: opened and closed each time
    assert all(files.fd(str(p)) >= FD_BASE for p in paths[:2])
    paths[0].write_text("10\n")  # in place, as the kernel regenerates a seq_file
    assert files.read(str(paths[0])) == "10"
    files.forget_under((str(tmp_path) + "/",))
    assert len(files) == 0
    assert files.read(str(tmp_path / "missing")) is None
