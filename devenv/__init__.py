"""devenv: pinned, reproducible, containerized ML workspaces on Docker engines and GPUs."""

__version__ = "0.1.0"
