"""`python -m devenv` is the `devenv` command."""

from devenv.entry import main

main()
