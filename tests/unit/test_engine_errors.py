"""The engine's one translation boundary: the SDK's exceptions, as the SDK raises them, become devenv errors."""

from __future__ import annotations

import pytest
import requests

from devenv.engine.errors import creation_error, engine_errors
from devenv.engine.sdk import APIError, ImageNotFound
from devenv.errors import BackendError, EngineUnreachable, MountSourceMissing, PortInUse

URL = "ssh://dev@gpu-1"


def _refused(explanation: str, status: int = 500) -> APIError:
    response = requests.Response()
    response.status_code = status
    return APIError("500 Server Error", response=response, explanation=explanation)


def test_a_taken_port_names_the_port_and_the_engine() -> None:
    with pytest.raises(PortInUse) as caught, engine_errors("starting ws-a", URL, ports=(2222,)):
        raise _refused("driver failed: Bind for 127.0.0.1:8888 failed: port is already allocated")
    assert "port 8888" in caught.value.message and URL in caught.value.message
    assert "ports:" in (caught.value.hint or "")


def test_a_refusal_keeps_the_engines_explanation() -> None:
    with pytest.raises(BackendError) as on_backend, engine_errors("creating volume v", URL):
        raise _refused("no space left on device")
    assert on_backend.value.message == f"creating volume v on {URL}: no space left on device"
    with pytest.raises(BackendError) as in_build, engine_errors("building devenv/x:1"):
        raise _refused("no space left on device")
    assert in_build.value.message == "building devenv/x:1 failed: no space left on device"


def test_an_engine_that_does_not_answer_is_unreachable_in_a_few_words() -> None:
    cause = requests.exceptions.ConnectionError(
        "('Connection aborted.', ConnectionRefusedError(111, 'Connection refused'))"
    )
    with pytest.raises(EngineUnreachable) as caught, engine_errors("listing workspaces", URL):
        raise cause
    assert caught.value.message == f"the Docker engine at {URL} does not answer (Connection refused)"


def test_a_file_error_of_a_build_is_its_own_not_the_engines() -> None:
    """Without the engine's URL (a build reading its context), an OSError is the caller's: it passes through."""
    with pytest.raises(FileNotFoundError), engine_errors("building devenv/x:1"):
        raise FileNotFoundError("context/requirements.txt")
    with pytest.raises(EngineUnreachable), engine_errors("pinging the engine", URL):
        raise ConnectionResetError(104, "Connection reset by peer")


def test_creation_errors_a_person_can_fix_are_named() -> None:
    missing_image = creation_error(ImageNotFound("no such image"), "creating ws-a", URL, image="devenv/a:1", binds={})
    assert missing_image is not None and "devenv/a:1 is not on this engine" in missing_image.message
    missing_folder = creation_error(
        _refused("invalid mount config: bind source path does not exist: /data/x", 400),
        "creating ws-a",
        URL,
        image="devenv/a:1",
        binds=["/data/x", "/data/a"],
    )
    assert isinstance(missing_folder, MountSourceMissing) and "(/data/a, /data/x)" in missing_folder.message
    assert creation_error(_refused("conflict", 409), "creating ws-a", URL, image="devenv/a:1", binds=[]) is None
