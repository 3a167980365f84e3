"""Serving from a cluster whose nodes are machines of their own: a head and a worker node, each in a network
namespace of this test's, joined by a veth pair (root only). The relay on the head must reach the worker's replica
at the worker's address: a replica listening on its own node's 127.0.0.1 is refused there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from tests.test_cluster import RAY, _free_port, _kill_cluster, _registered, _terminate, _watched

# The served application's replicas as Serve's controller lists them: node, state and the address the relay is given
# ("head" starts each line, as tests.test_cluster._watched looks for).
WATCH = '''
import json, sys, time
import ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
while True:
    try:
        controller = ray.get_actor("SERVE_CONTROLLER_ACTOR", namespace="serve")
        details = ray.get(controller.get_serve_instance_details.remote(), timeout=10)
        replicas = [{"ip": r["node_ip"], "state": str(r["state"]).rsplit(".", 1)[-1]}
                    for r in details["applications"]["raymlx"]["deployments"]["champion"]["replicas"]]
        groups = ray.get(controller.get_target_groups.remote("raymlx"), timeout=10)
        targets = [[t.ip, t.port] for g in groups if str(g.protocol).endswith("HTTP") for t in g.targets]
    except Exception:  # not deployed yet
        replicas, targets = [], []
    print(json.dumps({"head": None, "replicas": replicas, "targets": targets}), flush=True)
    time.sleep(0.5)
'''

# Requests on a new connection each (the relay hands each connection to the next replica); prints the failures.
CLIENT = '''
import json, sys, urllib.request
url, count, row = sys.argv[1], int(sys.argv[2]), sys.argv[3]
failures = []
for _ in range(count):
    request = urllib.request.Request(url + "/predict", data=json.dumps({"records": [json.loads(row)]}).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert len(json.loads(reply.read())["predictions"]) == 1
    except Exception as exc:
        failures.append(repr(exc))
print(json.dumps(failures))
'''

# Each connection the worker's replica accepts (its SYN-ACK; a refused one gets a reset), counted in the worker's
# namespace.
COUNTER = ("add table inet rmx; add chain inet rmx out {{ type filter hook output priority 0; }}; "
           "add rule inet rmx out tcp sport {port} tcp flags & (syn | ack) == syn | ack counter")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _in(namespace: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command]


def _namespaces(tag: str, prefix: str = "rmx"):
    """Two namespaces joined by a veth pair on a 10.231.x.y/30 of this test's; their names and addresses."""
    head, work = f"{prefix}-head-{tag}", f"{prefix}-work-{tag}"
    net = int(tag) % (1 << 14)  # one of the 16384 /30s in 10.231.0.0/16
    head_ip, work_ip = (f"10.231.{net >> 6}.{(net & 63) * 4 + host}" for host in (1, 2))
    _ip("netns", "add", head)
    _ip("netns", "add", work)
    _ip("link", "add", f"{prefix}h{tag}", "type", "veth", "peer", "name", f"{prefix}w{tag}")
    for namespace, link, address in ((head, f"{prefix}h{tag}", head_ip), (work, f"{prefix}w{tag}", work_ip)):
        _ip("link", "set", link, "netns", namespace)
        _ip("-n", namespace, "addr", "add", f"{address}/30", "dev", link)
        _ip("-n", namespace, "link", "set", link, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
    return head, work, head_ip, work_ip


def _skip_without_namespaces(tag: str) -> None:
    """Skip the test, saying why, where this machine cannot make network namespaces (not root, no iproute2)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        pytest.skip("needs root, iproute2 and nftables to make network namespaces")
    try:
        _ip("netns", "add", f"rmx-probe-{tag}")
        _ip("netns", "delete", f"rmx-probe-{tag}")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot make a network namespace: {exc.stderr.decode().strip()}")


def _delete_namespaces(tag: str, prefix: str, *namespaces: str | None) -> None:
    """Delete the namespaces (and so the veth pair: deleting a namespace deletes the end in it)."""
    for namespace in namespaces:
        if namespace:
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30)
    subprocess.run(["ip", "link", "delete", f"{prefix}h{tag}"], capture_output=True, timeout=30)  # if never moved


@pytest.fixture
def netns_cluster():
    """A head node in one namespace and a worker node in another, 1 CPU each; torn down by PID and name, always."""
    tag = str(os.getpid())
    _skip_without_namespaces(tag)
    temp_dir = tempfile.mkdtemp(prefix="rmxn", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_") and k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    head = work = None
    try:
        head, work, head_ip, work_ip = _namespaces(tag)
        port = _free_port()
        common = ["--num-cpus=1", "--disable-usage-stats"]
        subprocess.run(_in(head, RAY, "start", "--head", f"--node-ip-address={head_ip}", f"--port={port}",
                           f"--temp-dir={temp_dir}", "--include-dashboard=false", *common),
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(_in(work, RAY, "start", f"--address={head_ip}:{port}", f"--node-ip-address={work_ip}", *common),
                       env=env, check=True, capture_output=True, timeout=120)
        yield {"head": head, "work": work, "head_ip": head_ip, "work_ip": work_ip, "address": f"{head_ip}:{port}",
               "env": env}
    finally:
        _kill_cluster(temp_dir)
        _delete_namespaces(tag, "rmx", head, work)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_the_relay_on_the_head_reaches_a_replica_on_another_machine(netns_cluster, tmp_path):
    """`raymlx serve --address` in the head's namespace with a replica on each node: every request through the relay
    is answered, and the worker's replica accepts about half of the connections (counted in its namespace)."""
    from tests.serve.conftest import ROW

    cluster = netns_cluster
    store = _registered(tmp_path, "apart")
    port, log = _free_port(), tmp_path / "watch.jsonl"
    command = [sys.executable, "-m", "raymlx.cli", "serve", "--model", "models:/apart@champion",
               "--tracking-uri", store, "--address", cluster["address"], "--set", f"serve.port={port}",
               "--set", "serve.num_cpus=0.5", "--set", "serve.autoscaling.min_replicas=2",
               "--set", "serve.autoscaling.max_replicas=2"]
    env = cluster["env"]
    with open(tmp_path / "serve.out", "w") as serve_out, open(log, "w") as watch_out:
        serving = subprocess.Popen(_in(cluster["head"], *command), cwd=tmp_path,
                                   env={**env, "RAYMLX_HOME": str(tmp_path / "home")},
                                   stdout=serve_out, stderr=subprocess.STDOUT)
        watcher = subprocess.Popen(_in(cluster["head"], sys.executable, "-c", WATCH, cluster["address"]), env=env,
                                   stdout=watch_out, stderr=subprocess.DEVNULL)
    try:
        state = _watched(log, lambda s: sorted(r["ip"] for r in s["replicas"] if r["state"] == "RUNNING")
                         == sorted([cluster["head_ip"], cluster["work_ip"]]) and len(s["targets"]) == 2,
                         timeout_s=240)
        (worker_port,) = [p for ip, p in state["targets"] if ip == cluster["work_ip"]]
        subprocess.run(_in(cluster["work"], "nft", COUNTER.format(port=worker_port)), check=True, timeout=30)
        time.sleep(1.5)  # the relay re-reads the replicas every second
        client = subprocess.run(_in(cluster["head"], sys.executable, "-c", CLIENT, f"http://127.0.0.1:{port}", "20",
                                    json.dumps(ROW)), env=env, capture_output=True, text=True, timeout=120)
        assert client.returncode == 0, client.stderr[-2000:]
        assert json.loads(client.stdout) == []  # every request answered
        counted = subprocess.run(_in(cluster["work"], "nft", "list", "table", "inet", "rmx"), check=True,
                                 capture_output=True, text=True, timeout=30).stdout
        connections = int(counted.split("counter packets ")[1].split()[0])
        # The relay hands connections to the replicas in turn: about half reach the worker's replica. One listening
        # on the worker's 127.0.0.1 refuses them all (the relay then sends each to the head's: all still answered).
        listening = subprocess.run(_in(cluster["work"], "ss", "-ltn"), capture_output=True, text=True).stdout
        assert connections >= 5, (connections, listening)
    finally:
        _terminate(serving, watcher)
    assert serving.returncode == 0, (tmp_path / "serve.out").read_text()[-3000:]
