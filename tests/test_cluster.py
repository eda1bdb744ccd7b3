"""A real two-node Ray cluster on this machine, and its dashboard, with a sweep joining it.

The head and the worker are separate Ray nodes (``ray.cluster_utils.Cluster``: each its own
raylet, one CPU each) bound to 127.0.0.1, as ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start
--head --node-ip-address 127.0.0.1`` binds one, with Ray's token authentication on.
``lstm-sweep search --address 127.0.0.1:PORT`` runs as its own process with the environment a
user has: none of the variables conftest sets for the test processes' own local Rays, so Ray
would rewrite 127.0.0.1 to the machine's network address unless lstm-sweep keeps it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # conftest sets it to "0" for every test process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""


# The cluster lives in a process of its own: Ray reads its authentication settings once, when
# it is imported, and this test process may have imported it earlier without them.
CLUSTER = """
import json, sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": True,
    "dashboard_host": "127.0.0.1", "dashboard_port": int(sys.argv[1])})
worker = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
cluster.wait_for_nodes()
print(json.dumps({"address": cluster.address, "nodes": [cluster.head_node.node_id, worker.node_id]}), flush=True)
sys.stdin.read()  # until the test closes it
cluster.shutdown()
"""


@pytest.fixture
def two_nodes(tmp_path):
    """A head and a worker node, one CPU each, token authentication on; torn down after.

    Yields the cluster's address, its node ids, the dashboard's URL, and the environment
    (with the token) that a driver joining it needs.
    """
    token = secrets.token_hex(32)
    # A user's environment: the token, and not conftest's loopback switch.
    env = {k: v for k, v in os.environ.items() if k != LOOPBACK} | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    port = free_port()
    log = (tmp_path / "cluster.log").open("w")
    # The cluster itself is bound to loopback on purpose (the switch keeps Ray's nodes on 127.0.0.1).
    process = subprocess.Popen([sys.executable, "-c", CLUSTER, str(port)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=log, text=True, env=env | {LOOPBACK: "0"})
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=60)
        pytest.fail(f"the cluster did not start:\n{(tmp_path / 'cluster.log').read_text()[-3000:]}")
    info = json.loads(line)
    assert info["address"].startswith("127.0.0.1:"), info  # the address a user passes, not a rewrite of it
    yield info["address"], info["nodes"], f"http://127.0.0.1:{port}", token, env
    process.stdin.close()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def test_a_sweep_joins_a_two_node_cluster_and_the_dashboard_lists_its_trials(tmp_path, tiny_sweep, two_nodes):
    address, node_ids, dashboard, token, env = two_nodes
    config = tiny_sweep(tmp_path / "runs", samples=4, epochs=2, concurrent=2,
                        data={"path": "builtin", "builtin_lines": 3000, "vocab_size": 400, "seed": 0},
                        resources={"cpus_per_trial": 1, "trial_memory_gb": 1})
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    log = tmp_path / "driver.log"
    driver = subprocess.Popen(
        [sys.executable, "-m", "lstm_sweep", "search", "--config", str(config_file), "--name", "run",
         "--address", address], cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)

    # While the sweep runs: the dashboard answers on 127.0.0.1, refuses a request without the
    # token, and lists the trials' actors to one with it.
    trial_actors, refused, seen = set(), None, []
    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline and not trial_actors:
        if refused is None:
            refused, _ = get(f"{dashboard}/api/v0/actors?limit=1000")
        status, body = get(f"{dashboard}/api/v0/actors?limit=1000&detail=true", token)
        if status == 200:
            actors = json.loads(body)["data"]["result"]["result"]
            seen = [(a.get("class_name"), a.get("state")) for a in actors]
            # A function trainable's trial is an actor of Ray Tune's class ImplicitFunc.
            trial_actors = {a["actor_id"] for a in actors
                            if a.get("class_name") == "ImplicitFunc" and a.get("state") == "ALIVE"}
        else:
            seen = [status]
        time.sleep(0.5)
    code = driver.wait(timeout=300)
    assert code == 0, log.read_text()[-3000:]
    assert refused in (401, 403)
    assert trial_actors, f"the dashboard never listed a trial's actor; last seen: {seen}"

    trials = pd.read_csv(tmp_path / "runs" / "run" / "trials.csv")
    assert len(trials) == 4
    nodes = {node.split("/")[1] for node in trials.node}  # "<ip>/<node id>": both nodes are 127.0.0.1
    assert nodes == {node_id[:8] for node_id in node_ids}, trials.node.tolist()
