"""Entry point of `devenvd`.

The console script exists from the first release so that packaging and docs are stable; the
daemon's API, store and reconciler land with the workspace lifecycle. Until then it says so
plainly instead of failing with an import error.
"""

from __future__ import annotations

import sys


def main() -> None:
    print("devenvd: this release has no daemon yet; images are built and run with `devenv build` and "
          "`devenv run`. The daemon comes with workspaces (`devenv up`).", file=sys.stderr)
    sys.exit(2)
