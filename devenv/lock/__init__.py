"""devenv.lock: resolving every pin (base digest, apt versions, Python wheels) deterministically."""

from devenv.lock.lockfile import check_lock, differences, dump_lock, read_lock, write_lock
from devenv.lock.models import LOCK_FILENAME, Lock, LockInputs

__all__ = ["LOCK_FILENAME", "Lock", "LockInputs", "check_lock", "differences", "dump_lock", "read_lock", "write_lock"]
