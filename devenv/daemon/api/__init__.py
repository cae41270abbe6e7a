"""The HTTP face of the daemon: routes, who may call them, and their streams, kept thin over the services."""
