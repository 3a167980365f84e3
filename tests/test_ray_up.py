"""`ray up cluster.yaml` for real: the repository's cluster file launched over SSH onto this machine as the head.

The head is reached through an sshd of the test's own on 127.0.0.1, which gives the "remote" machine a home and a
Ray temp dir of its own (``SetEnv``), so nothing lands in this machine's home or in the ``/tmp/ray`` of other Ray
runtimes. Only what cannot work on one shared machine is changed in the file: addresses, user, free ports, and
``ray stop`` (it ends every Ray process on a machine; here it ends the processes under the head's temp dir).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_cluster import RAY, _free_port, _kill_cluster, _uses

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

RELAY = '''
import os, socket, sys, threading
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def upstream():
    while data := os.read(0, 65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := conn.recv(65536):
    os.write(1, data)
'''

# `ray stop`, as `ray up` and `ray down` run it on the head, scoped to the processes under the head's temp dir.
SCOPED_RAY_STOP = r'''
ray() {
  if [ "$1" != stop ]; then command ray "$@"; return; fi
  for signal in TERM KILL KILL; do
    for proc in /proc/[0-9]*; do
      { tr '\0' ' ' < "$proc/cmdline"; ls -l "$proc/fd"; } 2>/dev/null | grep -q -- "$RAY_TMPDIR/" \
        && kill -s $signal "$(basename "$proc")" 2>/dev/null
    done
    sleep 2
  done
  return 0
}
'''

# The head shares this machine's Python: its venv sees the dependencies installed here (and gets Ray's command
# for its own interpreter) instead of downloading them; setup_commands then install the wheel into it as written.
HOST_VENV = """\
{python} -m venv ~/raymlx-venv
echo {site} > "$(~/raymlx-venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/host-deps.pth"
printf '#!%s\\nfrom ray.scripts.scripts import main\\nmain()\\n' ~/raymlx-venv/bin/python > ~/raymlx-venv/bin/ray
chmod +x ~/raymlx-venv/bin/ray
"""

SPEC = """
name: on-the-cluster
task: regression
data: {uri: data/diabetes.csv, target: progression}
validation: {folds: 2}
tracking: {uri: "sqlite:///TRACKING/mlflow.db"}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search: {algorithm: random, num_samples: 2, space: {alpha: {type: float, low: 0.1, high: 10.0, log: true}}}
"""


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"cluster.yaml no longer has {old!r}: update this test"
    return text.replace(old, new)


def _cluster_file(base: Path, name: str, ssh_port: int) -> tuple[str, dict[int, int]]:
    """The repository's cluster.yaml with this machine's addresses, user, a proxy to the test's sshd and free ports."""
    text = (ROOT / "cluster.yaml").read_text()
    pinned = {int(p) for p in re.findall(r"--(?!min-|max-)[a-z-]*port=(\d+)", text)}
    ports = {port: _free_port() for port in pinned}
    text = re.sub(r"\b(%s)\b" % "|".join(map(str, pinned)), lambda m: str(ports[int(m.group(1))]), text)
    (base / "venv.sh").write_text(HOST_VENV.format(python=sys.executable, site=sysconfig.get_paths()["purelib"]))
    for old, new in [
        ("cluster_name: raymlx", f"cluster_name: {name}"),
        ("10.0.0.10", "127.0.0.1"),
        ("worker_ips: [10.0.0.11, 10.0.0.12]", "worker_ips: []"),
        ("min_workers: 2", "min_workers: 0"), ("max_workers: 2", "max_workers: 0"),
        ("ssh_user: ubuntu", f"ssh_user: root\n  ssh_proxy_command: {sys.executable} {base}/relay.py 127.0.0.1 {ssh_port}"),
        ("ssh_private_key: ~/.ssh/id_ed25519", f"ssh_private_key: {base}/l/.ssh/id_ed25519"),  # ssh reads ~ from passwd
        ("--dashboard-host=0.0.0.0", "--dashboard-host=127.0.0.1"),
        # The head shares this machine's Python: its venv sees the installed dependencies instead of downloading them.
        ("python3 -m venv ~/raymlx-venv", f"sh {base}/venv.sh"),
    ]:
        text = _replace(text, old, new)
    (base / "cluster.yaml").write_text(text)
    return str(base / "cluster.yaml"), ports


def _sshd(base: Path, laptop: Path, head: Path) -> tuple[subprocess.Popen, int]:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True)
    (laptop / ".ssh").mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(laptop / ".ssh" / "id_ed25519")],
                   check=True)
    shutil.copy(laptop / ".ssh" / "id_ed25519.pub", base / "authorized_keys")
    port = _free_port()
    (base / "sshd_config").write_text(textwrap.dedent(f"""\
        ListenAddress 127.0.0.1:{port}
        HostKey {base}/host_key
        AuthorizedKeysFile {base}/authorized_keys
        PidFile {base}/sshd.pid
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        StrictModes no
        SetEnv HOME={head} RAY_TMPDIR={base}/r
        """))
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory, as its service makes it
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(base / "sshd_config")],
                            stderr=open(base / "sshd.log", "w"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sshd, port
        except OSError:
            assert sshd.poll() is None, (base / "sshd.log").read_text()
            time.sleep(0.2)
    raise AssertionError("sshd did not listen")


def _command_line(pid: Path) -> str:
    try:
        return (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return "?"


def _ray_cli(base: Path, laptop: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(laptop), TMPDIR=f"{base}/t", RAY_TMPDIR=f"{base}/t", RAY_AUTH_MODE="token",
               PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    return subprocess.run([RAY, *args], cwd=base, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cluster():
    """`ray up -y` of cluster.yaml with the head on 127.0.0.1; `ray down -y` and every leftover process ended after."""
    base = Path(tempfile.mkdtemp(prefix="rmxu", dir="/tmp"))
    laptop, head = base / "l", base / "h"
    for folder in (laptop, head, base / "r", base / "t"):
        folder.mkdir()
    (head / ".bashrc").write_text(SCOPED_RAY_STOP)
    (base / "relay.py").write_text(RELAY)
    name = f"raymlx-{base.name}"
    sshd = None
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(ROOT)],
                       check=True, capture_output=True, timeout=300)
        assert _ray_cli(base, laptop, "get-auth-token", "--generate").returncode == 0
        sshd, ssh_port = _sshd(base, laptop, head)
        config, ports = _cluster_file(base, name, ssh_port)
        started = time.monotonic()
        up = _ray_cli(base, laptop, "up", "-y", "--no-config-cache", config, timeout=420)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        yield {"base": base, "laptop": laptop, "head": head, "config": config, "ports": ports,
               "up_seconds": time.monotonic() - started}
        down = _ray_cli(base, laptop, "down", "-y", config)
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
        left = {p.name: _command_line(p) for p in Path("/proc").iterdir() if p.name.isdigit() and _uses(p, f"{base}/r/")}
        assert not left, f"`ray down` left these processes of the cluster running: {left}"
    finally:
        if sshd is not None:
            sshd.send_signal(signal.SIGTERM)
            sshd.wait(10)
        _kill_cluster(str(base))  # ssh masters (their proxy command names base) and anything ray down left
        control = hashlib.sha256(name.encode()).hexdigest()[:10]
        for path in Path("/tmp").glob(f"ray_ssh_*/{control}"):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def test_ray_up_then_a_job_tunes_on_the_cluster_registers_the_champion_and_the_head_serves_it(cluster, project):
    from mlflow import MlflowClient

    (project / "specs.yaml").write_text(SPEC.replace("TRACKING", str(cluster["base"])))
    dashboard = cluster["ports"][8265]
    job = _ray_cli(cluster["base"], cluster["laptop"], "job", "submit", f"--address=http://127.0.0.1:{dashboard}",
                   f"--working-dir={project}", "--", "sh", "-c",
                   "python -c 'import raymlx; print(\"raymlx from\", raymlx.__file__)' && raymlx tune specs.yaml")
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
    assert f"raymlx from {cluster['head']}/raymlx-venv/" in job.stdout  # the wheel setup_commands installed
    assert "champion: ridge registered" in job.stdout, job.stdout[-3000:]
    print(f"ray up took {cluster['up_seconds']:.0f} s")
    client = MlflowClient(f"sqlite:///{cluster['base']}/mlflow.db")
    assert client.get_model_version_by_alias("on-the-cluster", "champion").version in (1, "1")
    _serves_the_champion_from_the_head(cluster, project)


def _serves_the_champion_from_the_head(cluster, project) -> None:
    """`raymlx serve --detach` run on the head (as over `ray attach`) answers; `--stop` ends it."""
    import httpx

    base, laptop, config = cluster["base"], cluster["laptop"], cluster["config"]
    synced = _ray_cli(base, laptop, "rsync-up", config, f"{project}/", "~/project/")
    assert synced.returncode == 0, synced.stdout[-2000:] + synced.stderr[-2000:]
    port = _free_port()
    serve = f"cd ~/project && RAY_AUTH_MODE=token raymlx serve specs.yaml --address auto --set serve.port={port}"
    started = _ray_cli(base, laptop, "exec", config, f"{serve} --detach")
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert f"at http://127.0.0.1:{port}" in started.stdout, started.stdout[-2000:]
        row = {"age": 59.0, "sex": 2.0, "bmi": 32.1, "bp": 101.0, "s1": 157.0, "s2": 93.2, "s3": 38.0, "s4": 4.0,
               "s5": 4.8598, "s6": 87.0}
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"records": [row]}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 1
    finally:
        stopped = _ray_cli(base, laptop, "exec", config, f"{serve} --stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout[-2000:] + stopped.stderr[-2000:]
