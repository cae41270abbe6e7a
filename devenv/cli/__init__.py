"""The `devenv` command line: thin commands over the library, one error renderer."""
