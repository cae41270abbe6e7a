"""What plugin authors need to test against devenv (shipped in the wheel): the FakeBackend, the backend contract
suite, the fake daemon (in process and served over HTTP) and project factories. devenv's own test servers live in
tests/harness, outside the wheel."""
