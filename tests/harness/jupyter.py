"""Jupyter cells run from inside a workspace, for tests: a busy one that tells work from idleness, and
one that runs code in a fresh kernel and prints what it printed.

Run inside a workspace as its owner (dev, with the devenv-owner group that reads JupyterLab's secret
and its runtime folder) as `/opt/devenv/venv/bin/python -c BUSY_CELL SECONDS`: it starts a kernel
through JupyterLab's REST API, runs `time.sleep(SECONDS)` in it with jupyter_client (so the server
sees it busy exactly as it would a notebook cell), waits until it is busy, and prints its id.
A sleeping cell uses no CPU: only the kernel's state says it is work.

`/opt/devenv/venv/bin/python -c RUN_CELL CODE` (as dev) starts a kernel the same way, waiting up to
a minute for JupyterLab to answer (it may still be starting after `devenv up`), executes CODE, prints
the kernel's stream output (and an error's name and value, if it raised), then shuts the kernel down.
The kernel is JupyterLab's child, not the caller's: what it sees is what a notebook would see.

ProxyLab and run_in_kernel drive a person's JupyterLab from outside, through devenv's proxy.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
import uuid
from typing import Any

# Shared by the cells below: a client for the kernel just started (`kernel`), ready on both the
# shell and IOPub channels before anything runs in it.
KERNEL_READY = r"""
# the owner's JupyterLab keeps its kernels' connection files where only the owner's group may look
runtime = pathlib.Path(os.environ.get("JUPYTER_RUNTIME_DIR") or "/run/devenv/jupyter-runtime")
client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel['id']}.json"))
client.load_connection_file()
# No heartbeat channel and no wait_for_ready(): on a loaded machine its first heartbeat can come late,
# and jupyter_client then reports a live kernel as "died". Asking for kernel_info until it answers is exact.
client.start_channels(hb=False)
# ...and until IOPub carries that request's status too: the shell can answer before the IOPub
# subscription is live, and a busy status published before then is lost (the wait below hangs).
deadline = time.monotonic() + 120
while True:
    asked = client.kernel_info()
    try:
        reply = client.get_shell_msg(timeout=10)
        if reply["parent_header"].get("msg_id") != asked:
            continue
        while client.get_iopub_msg(timeout=2)["parent_header"].get("msg_id") != asked:
            pass
        break
    except queue.Empty:
        if time.monotonic() > deadline:
            raise
"""

BUSY_CELL = (
    r"""
import json, os, pathlib, queue, sys, time, urllib.request
from jupyter_client import BlockingKernelClient
token = pathlib.Path("/run/devenv/jupyter-token").read_text().strip()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
base = "http://127.0.0.1:8888/jupyter/" + os.environ.get("DEVENV_WORKSPACE", "workspace")
request = urllib.request.Request(base + "/api/kernels", data=b"{}", method="POST",
                                 headers={"Authorization": "token " + token, "Content-Type": "application/json"})
kernel = json.load(opener.open(request, timeout=60))
"""
    + KERNEL_READY
    + r"""
# JupyterLab learns a kernel's state from its own IOPub subscription, which can join later than ours on a
# loaded machine: a busy status published before it joins is lost and the server says "idle" for the whole
# cell. Wait until the server has heard a status (it leaves "starting"), asking again so one is published.
state_url = base + "/api/kernels/" + kernel["id"]
while json.load(opener.open(urllib.request.Request(state_url, headers={"Authorization": "token " + token}),
                            timeout=60)).get("execution_state") in ("starting", None):
    if time.monotonic() > deadline + 60:
        raise TimeoutError("JupyterLab never reported the kernel's state")
    client.kernel_info()
    time.sleep(0.2)
msg_id = client.execute("import time; time.sleep(%d)" % int(sys.argv[1]))
while True:
    msg = client.get_iopub_msg(timeout=90)
    if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "busy"):
        break
client.stop_channels()
print(kernel["id"])
"""
)


RUN_CELL = (
    r"""
import json, os, pathlib, queue, sys, time, urllib.error, urllib.request
from jupyter_client import BlockingKernelClient
token = pathlib.Path("/run/devenv/jupyter-token").read_text().strip()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
base = "http://127.0.0.1:8888/jupyter/" + os.environ.get("DEVENV_WORKSPACE", "workspace")
headers = {"Authorization": "token " + token, "Content-Type": "application/json"}
deadline = time.monotonic() + 60
while True:  # JupyterLab may not answer yet right after `devenv up`
    try:
        request = urllib.request.Request(base + "/api/kernels", data=b"{}", method="POST", headers=headers)
        kernel = json.load(opener.open(request, timeout=60))
        break
    except (urllib.error.URLError, ConnectionError) as error:
        if time.monotonic() > deadline or (isinstance(error, urllib.error.HTTPError) and error.code < 500):
            raise
        time.sleep(0.5)
"""
    + KERNEL_READY
    + r"""msg_id = client.execute(sys.argv[1])
out = []
while True:
    msg = client.get_iopub_msg(timeout=90)
    if msg["parent_header"].get("msg_id") != msg_id:
        continue
    if msg["msg_type"] == "stream":
        out.append(msg["content"]["text"])
    elif msg["msg_type"] == "error":
        out.append(msg["content"]["ename"] + ": " + msg["content"]["evalue"] + "\n")
    elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
        break
client.stop_channels()
opener.open(urllib.request.Request(base + "/api/kernels/" + kernel["id"], method="DELETE", headers=headers),
            timeout=60)
sys.stdout.write("".join(out))
"""
)

# Run in a page of JupyterLab (through devenv's proxy) with Playwright's page.evaluate(BROWSER_CELL,
# {"base": "/jupyter/WS/", "code": "print(6 * 7)"}): starts a kernel with the page's cookies and XSRF
# token, opens its channels websocket as JupyterLab does, executes `code` and resolves to its stdout.
# The websocket stays open as window.__devenvKernel; window.__devenvClosed gets its close code.
BROWSER_CELL = r"""
async ({base, code}) => {
  const xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || "");
  const started = await fetch(base + "api/kernels", {method: "POST", body: "{}",
    headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"}});
  if (!started.ok) return "kernel start refused: " + started.status;
  const kernel = await started.json();
  const session = crypto.randomUUID();
  const url = location.origin.replace(/^http/, "ws") + base + "api/kernels/" + kernel.id +
    "/channels?session_id=" + session;
  const socket = new WebSocket(url);
  window.__devenvKernel = socket;
  window.__devenvClosed = null;
  socket.addEventListener("close", (event) => { window.__devenvClosed = event.code; });
  await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
  return await window.__devenvRun(code);
}
"""

# Defines window.__devenvRun(code) (used by BROWSER_CELL, and again later on the same websocket).
BROWSER_RUN = r"""
() => {
  window.__devenvRun = (code) => new Promise((resolve) => {
    const socket = window.__devenvKernel;
    const id = crypto.randomUUID();
    let out = "";
    const listener = (event) => {
      const message = JSON.parse(event.data);
      if (message.parent_header.msg_id !== id) return;
      if (message.msg_type === "stream") out += message.content.text;
      if (message.msg_type === "error") out += message.content.ename + ": " + message.content.evalue;
      if (message.msg_type === "status" && message.content.execution_state === "idle") {
        socket.removeEventListener("message", listener);
        resolve(out);
      }
    };
    socket.addEventListener("message", listener);
    socket.send(JSON.stringify({
      header: {msg_id: id, username: "", session: id, msg_type: "execute_request", version: "5.3",
               date: new Date().toISOString()},
      parent_header: {}, metadata: {}, channel: "shell", buffers: [],
      content: {code: code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false,
                stop_on_error: true}}));
  });
}
"""


class ProxyLab:
    """A person's JupyterLab through devenv's proxy, as a browser would use it, without a browser: the
    single-use login link for the cookie, JupyterLab's _xsrf cookie for changes, REST for kernels and
    terminals, and their websockets (kept open, so a test sees when the proxy closes them)."""

    def __init__(self, link: str, workspace: str) -> None:
        import httpx

        parts = httpx.URL(link)
        self.origin = f"{parts.scheme}://{parts.netloc.decode()}"
        self.base = f"/jupyter/{workspace}/"
        self.http = httpx.Client(base_url=self.origin, timeout=httpx.Timeout(30.0, read=240.0), trust_env=False)
        entered = self.http.get(link)
        assert entered.status_code == 303, (entered.status_code, entered.text)
        page = self.http.get(self.base + "lab")  # a grantee's first request starts their own JupyterLab
        assert page.status_code == 200, (page.status_code, page.text[:300])
        self._stack = contextlib.ExitStack()  # the websockets opened

    def _headers(self) -> dict[str, str]:
        return {"X-XSRFToken": self.http.cookies.get("_xsrf") or "", "Content-Type": "application/json"}

    def get(self, path: str) -> Any:
        return self.http.get(self.base + path)

    def post(self, path: str, body: str = "{}") -> Any:
        return self.http.post(self.base + path, content=body, headers=self._headers())

    def websocket(self, path: str) -> Any:
        from websockets.sync.client import connect

        url = self.origin.replace("http", "ws", 1) + self.base + path
        cookie = "; ".join(f"{name}={value}" for name, value in self.http.cookies.items())
        return self._stack.enter_context(
            connect(url, additional_headers={"Cookie": cookie}, open_timeout=60, max_size=None, proxy=None)
        )

    def kernel(self) -> tuple[str, Any]:
        """A new kernel and its open channels websocket."""
        started = self.post("api/kernels")
        assert started.status_code == 201, (started.status_code, started.text)
        kernel_id = started.json()["id"]
        return kernel_id, self.websocket(f"api/kernels/{kernel_id}/channels?session_id={uuid.uuid4()}")

    def terminal(self, command: str) -> tuple[str, Any]:
        """A new terminal that was sent `command` (and a newline), with its websocket open."""
        started = self.post("api/terminals")
        assert started.status_code == 200, (started.status_code, started.text)
        name = started.json()["name"]
        socket = self.websocket(f"terminals/websocket/{name}")
        socket.send(json.dumps(["stdin", command + "\r"]))
        return name, socket

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        self.http.close()


def run_in_kernel(socket: Any, code: str, timeout: float = 120.0) -> str:
    """Execute `code` over a kernel's channels websocket (JupyterLab's JSON protocol); its stdout."""
    msg_id = str(uuid.uuid4())
    socket.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": "",
                    "session": msg_id,
                    "msg_type": "execute_request",
                    "version": "5.3",
                    "date": datetime.datetime.now(datetime.UTC).isoformat(),
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    out = []
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "stream":
            out.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            out.append(message["content"]["ename"] + ": " + message["content"]["evalue"] + "\n")
        elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return "".join(out)
