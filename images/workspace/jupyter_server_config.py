# devenv: JupyterLab inside a workspace is reached only through devenv's authenticating proxy.
#
# The proxy has already checked the person's grant; it adds two headers that this identity
# provider trusts only with this server's secret. The secret is in a file only this server's group
# can read (DEVENV_JUPYTER_TOKEN_FILE: the owner's server has devenv-owner, a grantee's own server
# that grantee's marker group), never in the environment: other processes of uid dev (a grantee's
# shell) neither inherit nor read it. Those requests are not "token-authenticated" in Jupyter's sense, so
# its XSRF checks stay on. Without the headers the usual token rules apply, with the same secret
# (devenv's own probes inside the container use it).
import ctypes
import hmac
import os

from jupyter_server.auth.identity import IdentityProvider, User

SECRET_HEADER = "X-Devenv-Proxy-Secret"
PERSON_HEADER = "X-Devenv-Person"


def _secret() -> str:
    path = os.environ.get("DEVENV_JUPYTER_TOKEN_FILE", "")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    return os.environ.get("JUPYTER_TOKEN", "")  # a plain `jupyter lab` outside devenv's entrypoint


SECRET = _secret()
# Not dumpable: other processes of uid dev may not read this server's memory (the secret) by ptrace
# or /proc/PID/mem, nor its environment. Kernels it starts are dumpable again (exec resets it).
ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


class DevenvIdentityProvider(IdentityProvider):
    def get_user(self, handler):
        presented = handler.request.headers.get(SECRET_HEADER)
        if presented is not None:
            person = handler.request.headers.get(PERSON_HEADER, "")
            if SECRET and person and hmac.compare_digest(presented.encode(), SECRET.encode()):
                return User(username=person, name=person, display_name=person)
            return None
        return super().get_user(handler)


c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
c.ServerApp.identity_provider_class = DevenvIdentityProvider
c.ServerApp.open_browser = False
if SECRET:
    c.IdentityProvider.token = SECRET
# No "get Jupyter news?" prompt and no update check: the workspace's versions are pinned by its lock,
# and its build and runtime reach no news feed (lab/settings/overrides.json turns off the frontend's side).
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.news_url = None
