"""Access figures for issue 5, each against a floor measured in the same run.

    python tests/bench/bench_access.py [--rounds 10]

1. `ssh WS.devenv true` through `devenv ssh-config` (ProxyCommand, renewal hook, cached certificate)
   vs `ssh -p PORT` with a plain key (authorized_keys) to a second sshd in the same container, the
   same binary and host keys; also vs the same certificate straight at the published port.
2. Revocation to refusal over SSH: from the revoke API call until the person's live session has
   closed, and until a new login with their still-in-date certificate is refused.
3. JupyterLab in Debian's chromium (Playwright): `devenv jupyter WS` until the first cell's output,
   and from the revoke until the person's kernel websocket is closed.

Everything is real: devenvd, the workspace image, OpenSSH, the browser. Not a timed test: it prints
figures and ratios; nothing asserts on them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import docker

from devenv.backends.base import container_name
from devenv.client import Client, Target
from devenv.testing.projects import built_minimal_project

# run as a file (python tests/bench/...): tests/ goes on sys.path so that `harness` (tests/harness) imports
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.devenvd import Devenvd, devenv_command
from harness.jupyter import BROWSER_CELL, BROWSER_RUN

WS = "bench-access"
NO_AGENT = {key: value for key, value in os.environ.items() if key != "SSH_AUTH_SOCK"}
FLOOR_SSHD = """\
Port 2222
HostKey /etc/devenv/ssh/host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers dev
AuthorizedKeysFile /tmp/floor/authorized_keys
StrictModes no
PidFile none
"""


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stderr}")
    return elapsed


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # figures as they come
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    spec = built_minimal_project(WS)
    work = spec.parent.parent
    daemon = Devenvd(env={"DEVENV_ACCESS_INTERVAL": "0.5"})
    daemon.start()
    env = {**NO_AGENT, **daemon.env}
    local = Client(Target(socket=str(daemon.home / "devenvd.sock")), autostart=False)
    try:
        subprocess.run([devenv_command(), "up"], cwd=spec.parent, env=env, check=True, capture_output=True)
        key = keygen(work / "owner_ed25519")
        config = work / "ssh_config"
        subprocess.run(
            [devenv_command(), "ssh-config", "-i", str(key), "--config", str(config)],
            env=env,
            check=True,
            capture_output=True,
        )
        ours = ["ssh", "-F", str(config), "-o", "BatchMode=yes", f"{WS}.devenv", "true"]
        deadline = time.monotonic() + 60
        while subprocess.run(ours, env=env, capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("ssh WS.devenv never worked")
            time.sleep(0.5)

        # the floor: a second sshd in the same container that takes the same key from authorized_keys
        container = docker.from_env().containers.get(container_name(WS))
        container.exec_run(["sh", "-c", "mkdir -p /tmp/floor && chown dev /tmp/floor"])
        container.put_archive(
            "/tmp/floor",
            _tar({"sshd_config": FLOOR_SSHD.encode(), "authorized_keys": key.with_suffix(".pub").read_bytes()}),
        )
        container.exec_run(
            [
                "sh",
                "-c",
                "chown dev /tmp/floor/authorized_keys && chmod 600 /tmp/floor/authorized_keys && chmod 755 /tmp/floor",
            ]
        )
        container.exec_run(["/usr/sbin/sshd", "-f", "/tmp/floor/sshd_config"], detach=False)
        container.reload()
        address = next(net["IPAddress"] for net in container.attrs["NetworkSettings"]["Networks"].values())
        port = int(local.workspace(WS)["ssh_port"])
        cert = daemon.home / "ssh" / f"{WS}.devenv-cert.pub"
        common = [
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-F",
            "/dev/null",
            "-i",
            str(key),
        ]
        floor = ["ssh", *common, "-p", "2222", f"dev@{address}", "true"]
        direct = ["ssh", *common, "-o", f"CertificateFile={cert}", "-p", str(port), "dev@127.0.0.1", "true"]
        inside = ["ssh", *common, "-o", f"CertificateFile={cert}", "-p", "22", f"dev@{address}", "true"]
        timed(floor, env)
        runs: dict[str, list[float]] = {"ours": [], "floor": [], "direct": [], "inside": []}
        for _ in range(args.rounds):
            runs["floor"].append(timed(floor, env))
            runs["ours"].append(timed(ours, env))
            runs["direct"].append(timed(direct, env))
            runs["inside"].append(timed(inside, env))
        med = {name: statistics.median(values) * 1000 for name, values in runs.items()}
        print(f"ssh WS.devenv true (cached cert)        {med['ours']:7.1f} ms")
        print(
            f"ssh -p 2222 plain key, same container   {med['floor']:7.1f} ms   ratio {med['ours'] / med['floor']:.2f}"
            f" (target <= 1.3)"
        )
        print(
            f"ssh -p PORT same cert, no devenv        {med['direct']:7.1f} ms   ratio {med['ours'] / med['direct']:.2f}"
        )
        print(
            f"same cert to the container's :22        {med['inside']:7.1f} ms   (the published port's share: "
            f"{med['direct'] - med['inside']:.0f} ms)"
        )

        # 2. revocation to refusal over SSH
        token = subprocess.run(
            [*_devenvd(), "token", "create", "alice"], env=daemon.env, text=True, capture_output=True, check=True
        ).stdout.strip()
        alice_home = work / "alice"
        alice_home.mkdir()
        alice_env = {**env, "DEVENV_HOME": str(alice_home), "DEVENV_TOKEN": token}
        alice_key = keygen(work / "alice_ed25519")
        closed, refused = [], []
        for _ in range(max(3, args.rounds // 3)):
            local.grant(WS, "alice", ssh=True, jupyter=False)
            alice_env["DEVENV_HOST"] = _tcp_url(daemon, local)
            session = subprocess.Popen(
                [devenv_command(), "ssh", "-i", str(alice_key), WS, "-o", "BatchMode=yes", "--", "sleep", "120"],
                env=alice_env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            while b"sleep 120" not in container.exec_run(["ps", "-eo", "args"]).output:
                if session.poll() is not None:
                    raise SystemExit(
                        f"alice's ssh session ended at once: {session.communicate()[1]}\n"
                        f"{container.logs(tail=15).decode(errors='replace')}"
                    )
                time.sleep(0.1)
            started = time.perf_counter()
            local.revoke(WS, "alice")
            session.wait(30)
            closed.append(time.perf_counter() - started)
            alice_cert = alice_home / "ssh" / f"{WS}.devenv-cert.pub"
            again = subprocess.run(
                [
                    "ssh",
                    *common[:-1],
                    str(alice_key),
                    "-o",
                    f"CertificateFile={alice_cert}",
                    "-p",
                    str(port),
                    "dev@127.0.0.1",
                    "true",
                ],
                env=env,
                capture_output=True,
            )
            refused.append(time.perf_counter() - started)
            assert again.returncode == 255, again.stderr
        print(f"revoke -> SSH session closed             {statistics.median(closed):7.2f} s (target < 5, goal < 1)")
        print(f"revoke -> new SSH login refused (done)  {statistics.median(refused):7.2f} s")

        # 3. JupyterLab in a real browser
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            local.grant(WS, "alice", ssh=False, jupyter=True)
            started = time.perf_counter()
            link = subprocess.run(
                [devenv_command(), "jupyter", WS, "--no-browser"],
                env=alice_env,
                text=True,
                capture_output=True,
                check=True,
            ).stdout.split()[0]
            page = browser.new_context().new_page()
            page.goto(link)
            page.evaluate(BROWSER_RUN)
            output = page.evaluate(BROWSER_CELL, {"base": f"/jupyter/{WS}/", "code": "print(6 * 7)"})
            first_cell = time.perf_counter() - started
            assert output == "42\n", output
            started = time.perf_counter()
            local.revoke(WS, "alice")
            page.wait_for_function("window.__devenvClosed !== null", timeout=10000, polling=20)
            ws_closed = time.perf_counter() - started
            status = page.reload().status
            browser.close()
        print(f"`devenv jupyter` -> first cell output   {first_cell:7.2f} s (browser, kernel start included)")
        print(
            f"revoke -> kernel websocket closed        {ws_closed:7.2f} s (target < 5, goal < 1); "
            f"reload then: HTTP {status}"
        )
    finally:
        daemon.cleanup()


def _devenvd() -> list[str]:
    return [sys.executable, "-m", "devenv.daemon.process.main"]


def _tcp_url(daemon: Devenvd, local: Client) -> str:
    """The daemon's loopback web listener, which also serves the API (with tokens)."""
    return str(local.health()["web_url"])


def _tar(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


if __name__ == "__main__":
    main()
