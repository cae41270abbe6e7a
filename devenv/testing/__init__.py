"""Helpers shared by devenv's own tests and by plugin authors' tests (factories, fakes)."""
