"""Code, data and experiments wired into a workspace: Git clone, DVC pull, W&B tags, and the facts
(commit, dirty diff, data hashes, run ids) a reproducibility record is made of.

Everything here runs INSIDE the workspace through the backend's exec, so it works the same on a
remote engine; nothing here touches the store (the daemon records what these steps report).
"""
