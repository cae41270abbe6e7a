"""A busy Jupyter cell, for tests that must tell work from idleness.

Run inside a workspace as `/opt/devenv/venv/bin/python -c BUSY_CELL SECONDS`: it starts a kernel
through JupyterLab's REST API, runs `time.sleep(SECONDS)` in it with jupyter_client (so the server
sees it busy exactly as it would a notebook cell), waits until it is busy, and prints its id.
A sleeping cell uses no CPU: only the kernel's state says it is work.
"""

BUSY_CELL = r"""
import json, os, pathlib, queue, sys, time, urllib.request
from jupyter_client import BlockingKernelClient
token = pathlib.Path("/run/devenv/jupyter-token").read_text().strip()
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
base = "http://127.0.0.1:8888/jupyter/" + os.environ.get("DEVENV_WORKSPACE", "workspace")
request = urllib.request.Request(base + "/api/kernels", data=b"{}", method="POST",
                                 headers={"Authorization": "token " + token, "Content-Type": "application/json"})
kernel = json.load(opener.open(request, timeout=60))
runtime = pathlib.Path("/home/dev/.local/share/jupyter/runtime")
client = BlockingKernelClient(connection_file=str(runtime / f"kernel-{kernel['id']}.json"))
client.load_connection_file()
# No heartbeat channel and no wait_for_ready(): on a loaded machine its first heartbeat can come late,
# and jupyter_client then reports a live kernel as "died". Asking for kernel_info until it answers is exact.
client.start_channels(hb=False)
deadline = time.monotonic() + 120
while True:
    asked = client.kernel_info()
    try:
        reply = client.get_shell_msg(timeout=10)
    except queue.Empty:
        if time.monotonic() > deadline:
            raise
        continue
    if reply["parent_header"].get("msg_id") == asked:
        break
msg_id = client.execute("import time; time.sleep(%d)" % int(sys.argv[1]))
while True:
    msg = client.get_iopub_msg(timeout=90)
    if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "busy"):
        break
client.stop_channels()
print(kernel["id"])
"""
