"""A layer keeps only what it changes: entries that repeat the layers below are dropped, whatever the driver."""

from __future__ import annotations

import io
import tarfile

from devenv.build.layer_view import LowerView
from devenv.build.reproducible import normalise_layer

EPOCH = 1_700_000_000


def _tar(entries: list[tuple[str, bytes | None, int]]) -> tarfile.TarFile:
    """An open layer tar of (name, content or None for a folder, mode) entries, at build-time mtimes."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for index, (name, content, mode) in enumerate(entries):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, EPOCH + 1000 + index
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    data.seek(0)
    return tarfile.open(fileobj=data, mode="r:")


def _names(layer: tarfile.TarFile, below: LowerView) -> list[str]:
    out = io.BytesIO()
    normalise_layer(layer, out, epoch=EPOCH, below=below)
    out.seek(0)
    with tarfile.open(fileobj=out) as written:
        return written.getnames()


def test_entries_that_repeat_the_layers_below_are_dropped_and_changes_kept() -> None:
    # an imported root's tar names its entries ./etc/...; the engine's own layers etc/...
    base = _tar(
        [
            ("./etc", None, 0o755),
            ("./etc/passwd", b"root:x:0:0\n", 0o644),
            ("./etc/.pwd.lock", b"", 0o600),
            ("./etc/group", b"root:x:0:\n", 0o644),
        ]
    )
    below = LowerView()
    below.add_layer(base, base.getmembers())
    # what overlay2 leaves after `usermod` that changed /etc/group only: copied-up, unchanged files too
    # (Docker's tar writer puts the file-type bits in the mode: 0o100644 is the base's 0o644)
    step = _tar(
        [
            ("etc", None, 0o40755),
            ("etc/passwd", b"root:x:0:0\n", 0o100644),
            ("etc/.pwd.lock", b"", 0o100600),
            ("etc/group", b"root:x:0:\ndevenv-owner:x:999:dev\n", 0o644),
            ("etc/new", b"n", 0o644),
        ]
    )
    assert _names(step, below) == ["etc", "etc/group", "etc/new"]  # the folder stays for what stays in it
    # the same step on a driver that copies up only what changed gives the same layer
    below_again = LowerView()
    below_again.add_layer(base, base.getmembers())
    lean = _tar(
        [("etc", None, 0o755), ("etc/group", b"root:x:0:\ndevenv-owner:x:999:dev\n", 0o644), ("etc/new", b"n", 0o644)]
    )
    assert _names(lean, below_again) == ["etc", "etc/group", "etc/new"]


def test_a_different_mode_or_content_is_a_change() -> None:
    base = _tar([("bin/tool", b"v1", 0o755)])
    below = LowerView()
    below.add_layer(base, base.getmembers())
    assert _names(_tar([("bin/tool", b"v1", 0o700)]), below) == ["bin/tool"]
    assert _names(_tar([("bin/tool", b"v2", 0o700)]), below) == ["bin/tool"]  # below is now the 0o700 v1


def test_a_file_removed_by_a_whiteout_and_put_back_is_kept() -> None:
    base = _tar([("opt/a", b"a", 0o644), ("opt/b", b"b", 0o644)])
    below = LowerView()
    below.add_layer(base, base.getmembers())
    removed = _tar([("opt/.wh.a", b"", 0o644), ("opt/.wh..wh..opq", b"", 0o644)])
    assert _names(removed, below) == ["opt/.wh..wh..opq", "opt/.wh.a"]
    assert _names(_tar([("opt/a", b"a", 0o644), ("opt/b", b"b", 0o644)]), below) == ["opt/a", "opt/b"]
