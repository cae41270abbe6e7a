"""devenv's own test harness: the real servers and processes its integration tests, unit tests and benchmarks
stand on (a devenvd process, git over HTTP, sshd hosts, a second engine, a registry, S3 and EC2 under moto, a
Slurm cluster, Jupyter, tmux and the TUI pilot, load generators). Not shipped in the wheel: plugin authors get
devenv.testing (the fake backend, the backend contract suite, the fake daemon, project factories).

Importable as `harness` because pyproject.toml's pytest `pythonpath` names tests/; the bench scripts, run as
files, put tests/ on sys.path themselves.
"""
