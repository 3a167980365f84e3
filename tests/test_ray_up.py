"""`ray up cluster.yaml` for real: the repository's cluster file launched over SSH onto a head and a worker
"machine", each a network namespace of this test's joined by a veth pair (root only).

Each machine has an sshd of the test's own listening on its address (port 22: a namespace has ports of its own, so
the file's pinned Ray ports are used as written), which gives it a home of its own and the cluster's Ray temp dir
(``SetEnv``), so nothing lands in this machine's home or in the ``/tmp/ray`` of other Ray runtimes. ``ray up`` runs
in the head's namespace (the laptop); the head's autoscaler then sets up the worker over SSH. Only what cannot work
on one shared machine is changed in the file: addresses, user, the head's CPUs (shared with the worker here), and
``ray stop`` (it ends every Ray process on a machine; here those of the cluster in the machine's namespace).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.test_cluster import RAY, _kill_cluster, _uses
from tests.test_cluster_netns import CLIENT, _delete_namespaces, _in, _namespaces, _skip_without_namespaces

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# `ray stop`, as `ray up` and `ray down` run it on a node, scoped to the cluster's processes in the node's namespace.
SCOPED_RAY_STOP = r'''
ray() {
  if [ "$1" != stop ]; then command ray "$@"; return; fi
  here=$(readlink /proc/self/ns/net)
  for signal in TERM KILL KILL; do
    for proc in /proc/[0-9]*; do
      [ "$(readlink "$proc/ns/net" 2>/dev/null)" = "$here" ] || continue
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
tracking: {uri: "sqlite:///BASE/mlflow.db"}
runtime: {storage_path: BASE/results}
models:
  ridge:
    model: sklearn.linear_model:Ridge
    search: {algorithm: random, num_samples: 3, space: {alpha: {type: float, low: 0.1, high: 10.0, log: true}}}
"""


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"cluster.yaml no longer has {old!r}: update this test"
    return text.replace(old, new)


def _cluster_file(base: Path, name: str, head_ip: str, work_ip: str) -> str:
    """The repository's cluster.yaml with the namespaces' addresses, this machine's user and the head's CPUs left to
    the worker (both share this machine's cores: every trial must then run on the worker)."""
    text = (ROOT / "cluster.yaml").read_text()
    (base / "venv.sh").write_text(HOST_VENV.format(python=sys.executable, site=sysconfig.get_paths()["purelib"]))
    for old, new in [
        ("cluster_name: raymlx", f"cluster_name: {name}"),
        ("10.0.0.10", head_ip),
        ("worker_ips: [10.0.0.11, 10.0.0.12]", f"worker_ips: [{work_ip}]"),
        ("min_workers: 2", "min_workers: 1"), ("max_workers: 2", "max_workers: 1"),
        ("ssh_user: ubuntu", "ssh_user: root"),
        ("ssh_private_key: ~/.ssh/id_ed25519", f"ssh_private_key: {base}/l/.ssh/id_ed25519"),  # ssh reads ~ from passwd
        ("ray start --head", "ray start --head --num-cpus=0"),
        # The machines share this machine's file system: the worker keeps its Ray files apart from the head's (a
        # worker's runtime environments, the job's working dir among them, would otherwise replace the head's).
        ("ray start --address=$RAY_HEAD_IP:6379", "ray start --address=$RAY_HEAD_IP:6379 --temp-dir=$RAY_TMPDIR/ray"),
        # The nodes share this machine's Python: their venvs see the installed dependencies instead of downloading them.
        ("python3 -m venv ~/raymlx-venv", f"sh {base}/venv.sh"),
    ]:
        text = _replace(text, old, new)
    (base / "cluster.yaml").write_text(text)
    return str(base / "cluster.yaml")


def _home_on_root(home: Path) -> str:
    """Commands mounting the machine's home on root's, in the mount namespace `ip netns exec` makes for the sshd and
    its sessions alone: ssh finds ~ (in the key ``ray up`` gives the head, ~/ray_bootstrap_key.pem) in the passwd
    file, not in $HOME. This machine's Python, when it lives under root's home, is mounted back in place."""
    commands = []
    if Path(sys.base_prefix).is_relative_to("/root"):
        python = Path("/root", Path(sys.base_prefix).relative_to("/root").parts[0])
        commands += [f"mkdir -p {home / python.name}", f"mount --bind {python} {home / python.name}"]
    return " && ".join([*commands, f"mount --rbind {home} /root"])


def _sshd(base: Path, namespace: str, address: str, home: Path, temp: Path) -> subprocess.Popen:
    """An sshd in the namespace on its address, port 22, for the laptop's key; ``home`` is its sessions' home."""
    config = base / f"sshd_{home.name}"
    config.write_text(textwrap.dedent(f"""\
        ListenAddress {address}:22
        HostKey {base}/host_key
        AuthorizedKeysFile {base}/authorized_keys
        PidFile {config}.pid
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        StrictModes no
        SetEnv RAY_TMPDIR={temp}
        """))
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory, as its service makes it
    start = f"{_home_on_root(home)} && exec /usr/sbin/sshd -D -e -f {config}"
    sshd = subprocess.Popen(_in(namespace, "sh", "-c", start), stderr=open(f"{config}.log", "w"))
    probe = f"import socket; socket.create_connection(({address!r}, 22), timeout=1).close()"
    deadline = time.monotonic() + 30
    while subprocess.run(_in(namespace, sys.executable, "-c", probe), capture_output=True).returncode:
        assert sshd.poll() is None and time.monotonic() < deadline, Path(f"{config}.log").read_text()
        time.sleep(0.3)
    return sshd


def _keys(base: Path, laptop: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key")], check=True)
    (laptop / ".ssh").mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(laptop / ".ssh" / "id_ed25519")],
                   check=True)
    shutil.copy(laptop / ".ssh" / "id_ed25519.pub", base / "authorized_keys")


def _command_line(pid: Path) -> str:
    try:
        return (pid / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return "?"


def _namespace_of(pid: Path, namespaces: dict[int, str]) -> str:
    try:
        return namespaces.get(os.stat(pid / "ns" / "net").st_ino, "another namespace")
    except OSError:
        return "?"


def _leftovers(base: Path, namespaces: dict[int, str]) -> dict[str, str]:
    """The cluster's processes still running (they hold its Ray temp dir), with their namespace and command line."""
    return {p.name: f"{_namespace_of(p, namespaces)}: {_command_line(p)}" for p in Path("/proc").iterdir()
            if p.name.isdigit() and _uses(p, f"{base}/r/")}


def _ray_cli(cluster: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """The ray command run on the laptop, which here shares the head's namespace (the only way to its address)."""
    base, laptop = cluster["base"], cluster["laptop"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(laptop), TMPDIR=f"{base}/t", RAY_TMPDIR=f"{base}/t", RAY_AUTH_MODE="token",
               PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    return subprocess.run(_in(cluster["head_ns"], RAY, *args), cwd=base, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _alive_nodes(cluster: dict) -> int:
    status = _ray_cli(cluster, "exec", cluster["config"], "RAY_AUTH_MODE=token ray status", timeout=120)
    cluster["status"] = status.stdout[-2000:] + status.stderr[-2000:]
    alive = status.stdout.split("Active:")[-1].split("Pending:")[0]  # the active and the idle nodes, by type
    return sum(int(n) for n in re.findall(r"^\s*(\d+) \S", alive, re.M)) if status.returncode == 0 else 0


def _autoscaler_log(cluster: dict) -> str:
    """`ray status` and the tail of the head's autoscaler log, for a worker that did not join."""
    logs = sorted(cluster["base"].glob("r/ray/session_2*/logs/monitor.*"))
    return cluster.get("status", "") + "".join(f"\n--- {p.name}\n" + p.read_text()[-3000:] for p in logs)


def _wait(what: str, condition, timeout_s: float, interval_s: float = 3.0, detail=lambda: ""):
    deadline = time.monotonic() + timeout_s
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s {detail()}"
        time.sleep(interval_s)
    return result


@pytest.fixture
def cluster():
    """`ray up -y` of cluster.yaml onto a head and a worker namespace; `ray down -y`, and every leftover process ended
    and the namespaces deleted after."""
    tag = str(os.getpid())
    _skip_without_namespaces(tag)
    base = Path(tempfile.mkdtemp(prefix="rmxu", dir="/tmp"))
    laptop, head, worker = base / "l", base / "h", base / "w"
    for folder in (laptop, head, worker, base / "r", base / "r" / "w", base / "t"):
        folder.mkdir()
    for home in (head, worker):
        (home / ".bashrc").write_text(SCOPED_RAY_STOP)
    name = f"raymlx-{base.name}"
    head_ns = work_ns = None
    sshds: list[subprocess.Popen] = []
    try:
        head_ns, work_ns, head_ip, work_ip = _namespaces(tag, prefix="rmu")
        namespaces = {os.stat(f"/run/netns/{n}").st_ino: n for n in (head_ns, work_ns)}
        cluster = {"base": base, "laptop": laptop, "head": head, "head_ns": head_ns, "work_ns": work_ns,
                   "head_ip": head_ip, "work_ip": work_ip, "namespaces": namespaces}
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "dist"), str(ROOT)],
                       check=True, capture_output=True, timeout=300)
        assert _ray_cli(cluster, "get-auth-token", "--generate").returncode == 0
        _keys(base, laptop)
        sshds += [_sshd(base, head_ns, head_ip, head, base / "r"),
                  _sshd(base, work_ns, work_ip, worker, base / "r" / "w")]
        cluster["config"] = config = _cluster_file(base, name, head_ip, work_ip)
        started = time.monotonic()
        up = _ray_cli(cluster, "up", "-y", "--no-config-cache", config, timeout=420)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        cluster["up_seconds"] = time.monotonic() - started
        _wait("the head's autoscaler set up the worker and it joined", lambda: _alive_nodes(cluster) == 2, 300,
              detail=lambda: _autoscaler_log(cluster))
        cluster["worker_seconds"] = time.monotonic() - started
        yield cluster
        down = _ray_cli(cluster, "down", "-y", config)
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
        # `ray down` stops Ray on the head only (the local provider does not reach the workers, and a worker's log
        # monitor outlives its raylet): `ray stop` on each worker, over SSH as the README shows.
        key = f"{laptop}/.ssh/id_ed25519"
        stop = subprocess.run(_in(head_ns, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o",
                                  "UserKnownHostsFile=/dev/null", f"root@{work_ip}", "bash -ic 'ray stop'"),
                              capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stdout[-2000:] + stop.stderr[-2000:]
        try:
            _wait("`ray down` left nothing of the cluster running", lambda: not _leftovers(base, namespaces), 30, 2)
        except AssertionError:
            raise AssertionError(f"`ray down` left these processes of the cluster running: "
                                 f"{_leftovers(base, namespaces)}") from None
        print(f"ray up {cluster['up_seconds']:.0f} s, worker joined after {cluster['worker_seconds']:.0f} s")
    finally:
        for sshd in sshds:
            sshd.send_signal(signal.SIGTERM)
            sshd.wait(10)
        _kill_cluster(str(base))  # ssh masters (their key is under base) and anything ray down left
        _delete_namespaces(tag, "rmu", head_ns, work_ns)
        control = hashlib.sha256(name.encode()).hexdigest()[:10]
        for path in Path("/tmp").glob(f"ray_ssh_*/{control}"):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _trial_nodes(results: Path) -> list[str]:
    """The node address Tune recorded for each trial (its result.json's last line)."""
    lines = [path.read_text().splitlines() for path in results.rglob("result.json")]
    return [json.loads(trial[-1])["node_ip"] for trial in lines if trial]


def test_ray_up_with_a_worker_then_a_job_tunes_on_the_worker_and_the_champion_is_served(cluster, project):
    from mlflow import MlflowClient

    base = cluster["base"]
    (project / "specs.yaml").write_text(SPEC.replace("BASE", str(base)))
    job = _ray_cli(cluster, "job", "submit", f"--address=http://{cluster['head_ip']}:8265", f"--working-dir={project}",
                   "--", "sh", "-c",
                   "python -c 'import raymlx; print(\"raymlx from\", raymlx.__file__)' && raymlx tune specs.yaml")
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
    # The wheel setup_commands installed, in the head's home (root's, on the head)
    assert "raymlx from /root/raymlx-venv/" in job.stdout and (cluster["head"] / "raymlx-venv").is_dir()
    assert "champion: ridge registered" in job.stdout, job.stdout[-3000:]
    client = MlflowClient(f"sqlite:///{base}/mlflow.db")
    assert client.get_model_version_by_alias("on-the-cluster", "champion").version in (1, "1")
    nodes = _trial_nodes(base / "results")
    assert len(nodes) >= 3 and set(nodes) == {cluster["work_ip"]}, nodes  # the head keeps no CPU for trials
    _serves_the_champion_from_the_cluster(cluster, project)


def _serves_the_champion_from_the_cluster(cluster, project) -> None:
    """`raymlx serve --detach` run on the head (as the README shows) answers through the relay on the head from a
    replica on the worker; `--stop` ends it."""
    from tests.serve.conftest import ROW

    config = cluster["config"]
    synced = _ray_cli(cluster, "rsync-up", config, f"{project}/", "~/project/")
    assert synced.returncode == 0, synced.stdout[-2000:] + synced.stderr[-2000:]
    serve = "cd ~/project && RAY_AUTH_MODE=token raymlx serve specs.yaml --address auto"
    started = _ray_cli(cluster, "exec", config, f"{serve} --detach")
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        assert "at http://127.0.0.1:8000" in started.stdout, started.stdout[-2000:]
        answered = subprocess.run(_in(cluster["head_ns"], sys.executable, "-c", CLIENT, "http://127.0.0.1:8000", "4",
                                      json.dumps(ROW)), capture_output=True, text=True, timeout=120)
        assert answered.returncode == 0, answered.stderr[-2000:]
        assert json.loads(answered.stdout) == []  # every request answered, by the worker's replica
    finally:
        stopped = _ray_cli(cluster, "exec", config, f"{serve} --stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout[-2000:] + stopped.stderr[-2000:]
