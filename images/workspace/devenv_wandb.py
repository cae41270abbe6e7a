"""devenv: every W&B run started in this workspace carries what pins it.

Loaded at Python start by devenv_wandb.pth in the project's venv, and inert until `wandb` itself is
imported: then `wandb.init` is wrapped so that each run gets the tags `devenv`, `workspace:NAME`,
`image:`, `lock:`, `commit:` and `data:` (added to any tags the code passes) and the config key
`devenv` (workspace, image_hash, lock_hash, base_digest, git_commit, data_hash). The pins come from
/etc/devenv/workspace.env, which the daemon writes at each start; the commit is read when the run
starts, so a run after a new commit records the new one. W&B's project, entity and key come from
there too when the process was not started from a shell that sourced them.
"""

import os
import sys

_PINS_FILE = "/etc/devenv/workspace.env"
_SECRETS_DIR = "/run/devenv/secrets"


def _read_pins():
    import shlex

    values = {}
    try:
        with open(_PINS_FILE, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return values
    for line in lines:
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            values[key] = value
    return values


def _commit(repo):
    import subprocess

    try:
        done = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def pins():
    """The workspace's pins now: (the run's `devenv` config, tags, the raw values)."""
    values = _read_pins()
    repo = values.get("DEVENV_REPO_DIR")
    config = {
        "workspace": os.environ.get("DEVENV_WORKSPACE", ""),
        "image_hash": values.get("DEVENV_IMAGE_HASH"),
        "lock_hash": values.get("DEVENV_LOCK_HASH"),
        "base_digest": values.get("DEVENV_BASE_DIGEST"),
        "git_commit": _commit(repo) if repo and os.path.isdir(os.path.join(repo, ".git")) else None,
        "data_hash": values.get("DEVENV_DATA_HASH"),
    }
    tags = ["devenv", ("workspace:" + config["workspace"])[:64]]
    for label, key in (("image", "image_hash"), ("lock", "lock_hash"), ("commit", "git_commit"),
                       ("data", "data_hash")):
        if config[key]:
            tags.append(f"{label}:{config[key][:12]}")
    return config, tags, values


def _wrap(wandb):
    original = getattr(wandb, "init", None)
    if original is None or getattr(original, "_devenv", False):
        return

    def init(*args, **kwargs):
        config, tags, values = pins()
        for key in ("WANDB_PROJECT", "WANDB_ENTITY"):
            if values.get(key):
                os.environ.setdefault(key, values[key])
        if "WANDB_API_KEY" not in os.environ:
            try:
                with open(os.path.join(_SECRETS_DIR, "WANDB_API_KEY"), encoding="utf-8") as handle:
                    os.environ["WANDB_API_KEY"] = handle.read().strip()
            except OSError:
                pass
        given = kwargs.get("tags")
        if given is None:
            given = [tag for tag in os.environ.get("WANDB_TAGS", "").split(",") if tag]
        kwargs["tags"] = list(given) + [tag for tag in tags if tag not in given]
        run = original(*args, **kwargs)
        try:
            run.config.update({"devenv": config}, allow_val_change=True)
        except Exception:  # a disabled run has no config to update; the run itself is what matters
            pass
        return run

    init._devenv = True
    init.__doc__ = original.__doc__
    wandb.init = init


class _WandbFinder:
    """Finds `wandb` like the other finders do, and wraps `wandb.init` right after it is loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != "wandb":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            _wrap(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)

        loader.exec_module = exec_and_wrap
        return spec


def install():
    if os.environ.get("DEVENV_WORKSPACE") and "wandb" not in sys.modules:
        sys.meta_path.insert(0, _WandbFinder())
