"""Shipping the locked base image to a remote engine: stub engines (the real pair needs two machines;
tests/integration/test_ssh_hosts.py runs its hosts on this machine's engine, where the base already is)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker.errors
import pytest

from devenv.backends.ship import ship_image
from devenv.errors import BaseImageMissing, BuildError
from devenv.progress import ProgressEvent

TAG, DIGEST = "devenv/base:cpu-1", "sha256:" + "a" * 64


class Image:
    def __init__(self, image_id: str) -> None:
        self.id = image_id
        self.attrs = {"Size": 181_000_000}


class Engine:
    """An engine holding images by tag; `load_image` takes a tar stream and, if `lands` says so, the image."""

    def __init__(
        self,
        images: dict[str, str] | None = None,
        *,
        lands: str | None = None,
        answers: list[dict[str, Any]] | None = None,
    ) -> None:
        self.tags = dict(images or {})
        self.lands = lands
        self.answers = answers or [{"stream": f"Loaded image: {TAG}\n"}]
        self.received = b""
        self.images = self
        self.api = self

    def get(self, tag: str) -> Image:
        if tag not in self.tags:
            raise docker.errors.ImageNotFound(f"no such image: {tag}")
        return Image(self.tags[tag])

    def get_image(self, tag: str) -> Iterator[bytes]:
        assert tag in self.tags
        yield from (b"layer-one", b"layer-two")

    def load_image(self, data: Iterator[bytes]) -> Iterator[dict[str, Any]]:
        self.received = b"".join(data)
        if self.lands:
            self.tags[TAG] = self.lands
        yield from self.answers


def test_a_base_the_host_has_is_not_sent() -> None:
    here, there = Engine({TAG: DIGEST}), Engine({TAG: DIGEST})
    ship_image(here, there, TAG, DIGEST, where="gpu1")
    assert there.received == b""


def test_a_missing_base_is_streamed_with_progress_and_keeps_its_id() -> None:
    here, there = Engine({TAG: DIGEST}), Engine(lands=DIGEST)
    seen: list[ProgressEvent] = []
    ship_image(here, there, TAG, DIGEST, where="gpu1", progress=seen.append)
    assert there.received == b"layer-onelayer-two" and there.tags[TAG] == DIGEST
    assert [event.current for event in seen if event.kind == "download"] == [9, 18]
    assert seen[0].kind == "phase" and "181 MB" in seen[0].message and seen[-1].kind == "done"


def test_another_base_on_the_host_is_replaced_by_the_locked_one() -> None:
    here, there = Engine({TAG: DIGEST}), Engine({TAG: "sha256:" + "b" * 64}, lands=DIGEST)
    ship_image(here, there, TAG, DIGEST, where="gpu1")
    assert there.tags[TAG] == DIGEST and there.received


@pytest.mark.parametrize("here", [{}, {TAG: "sha256:" + "c" * 64}])
def test_without_the_locked_base_here_either_nothing_is_sent_and_the_fix_is_named(here: dict[str, str]) -> None:
    there = Engine()
    with pytest.raises(BaseImageMissing) as caught:
        ship_image(Engine(here), there, TAG, DIGEST, where="gpu1 (ssh://op@10.0.0.5)")
    assert "gpu1 (ssh://op@10.0.0.5)" in caught.value.message and "devenv images bootstrap" in (caught.value.hint or "")
    assert there.received == b""


def test_a_load_the_engine_refuses_or_that_changes_the_id_is_an_error() -> None:
    refused = Engine(answers=[{"error": "no space left on device"}])
    with pytest.raises(BuildError, match="no space left"):
        ship_image(Engine({TAG: DIGEST}), refused, TAG, DIGEST, where="gpu1")
    changed = Engine(lands="sha256:" + "d" * 64)
    with pytest.raises(BuildError, match="another id"):
        ship_image(Engine({TAG: DIGEST}), changed, TAG, DIGEST, where="gpu1")
