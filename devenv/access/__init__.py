"""Access to workspaces: the SSH certificate authority (and, next, grants and the Jupyter proxy)."""
