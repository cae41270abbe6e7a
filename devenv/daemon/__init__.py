"""devenvd: the one owner of workspace state (HTTP API, reconciler, autostop, access). See DESIGN.md."""
