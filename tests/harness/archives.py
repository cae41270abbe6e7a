"""A project folder's tar as `devenv up` sends it (PUT /v1/code), from a dict: for tests of what uses code."""

from __future__ import annotations

import io
import tarfile


def code_tar(files: dict[str, bytes]) -> bytes:
    """Regular files only, root's, 0644, in the order given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, data in files.items():
            member = tarfile.TarInfo(path)
            member.size, member.mode = len(data), 0o644
            archive.addfile(member, io.BytesIO(data))
    return out.getvalue()
