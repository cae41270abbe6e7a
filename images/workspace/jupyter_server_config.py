# devenv: JupyterLab inside a workspace is reached only through devenv's authenticating proxy.
#
# The proxy has already checked the person's grant; it adds two headers that this identity
# provider trusts only with the workspace's internal secret (/run/devenv/jupyter-token, which the
# daemon derives and places and which never leaves the daemon and the container). Those requests
# are not "token-authenticated" in Jupyter's sense, so its XSRF checks stay on. Without the headers
# the usual token rules apply (devenv's own probes inside the container use the token).
import hmac
import os

from jupyter_server.auth.identity import IdentityProvider, User

SECRET_HEADER = "X-Devenv-Proxy-Secret"
PERSON_HEADER = "X-Devenv-Person"


class DevenvIdentityProvider(IdentityProvider):
    def get_user(self, handler):
        presented = handler.request.headers.get(SECRET_HEADER)
        if presented is not None:
            expected = os.environ.get("JUPYTER_TOKEN", "")
            person = handler.request.headers.get(PERSON_HEADER, "")
            if expected and person and hmac.compare_digest(presented.encode(), expected.encode()):
                return User(username=person, name=person, display_name=person)
            return None
        return super().get_user(handler)


c = get_config()  # noqa: F821 - provided by traitlets when it loads this file
c.ServerApp.identity_provider_class = DevenvIdentityProvider
c.ServerApp.open_browser = False
