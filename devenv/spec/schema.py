"""The JSON Schema of devenv.yaml for editors (yaml-language-server, VS Code), generated from Spec.

Generated, never hand-written, so it cannot drift from what the loader actually accepts.
"""

from __future__ import annotations

from typing import Any

from devenv.spec.models import Spec

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def spec_json_schema() -> dict[str, Any]:
    """The validation-mode schema of Spec, i.e. the forms a person may write ("30m", "A100:2")."""
    schema = Spec.model_json_schema(mode="validation")
    schema.pop("title", None)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": "devenv.yaml", **schema}
