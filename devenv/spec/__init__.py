"""The workspace spec (devenv.yaml): models, units, located loading, devcontainer import, JSON Schema."""

from devenv.spec.devcontainer import import_devcontainer
from devenv.spec.loader import load_spec, load_spec_text
from devenv.spec.models import SPEC_FILENAME, Spec
from devenv.spec.schema import spec_json_schema
from devenv.spec.units import GpuRequest, parse_duration, parse_gpu, parse_size

__all__ = [
    "SPEC_FILENAME",
    "GpuRequest",
    "Spec",
    "import_devcontainer",
    "load_spec",
    "load_spec_text",
    "parse_duration",
    "parse_gpu",
    "parse_size",
    "spec_json_schema",
]
