"""cluster.yaml: Ray's own validation, scale-from-zero GPU workers, a dashboard on loopback,
no port but SSH open to the internet, and this project installed on every node.

Validation is what `ray up` does before it contacts the cloud (``commands._bootstrap_config``):
``prepare_config`` merges the provider's defaults.yaml and the per-type worker counts, then
``validate_config`` checks the result against Ray's bundled ray-schema.json (jsonschema) and
its cross-field rules. Neither needs AWS credentials or the network; no Ray is started.
"""

import copy
import shlex
from pathlib import Path

import jsonschema  # a dependency of ray itself: what its validate_config checks with
import pytest
import yaml

from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
WORLD = {"0.0.0.0/0", "::/0"}


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared(raw) -> dict:
    return prepare_config(copy.deepcopy(raw))


def ray_validate(config: dict) -> None:
    """What `ray up` checks before it starts any node."""
    validate_config(prepare_config(copy.deepcopy(config)))


def test_passes_ray_validation(raw):
    ray_validate(raw)


MISTAKES = {  # a wrong copy of cluster.yaml, and what Ray's validation raises for it
    "unknown top-level key": (lambda c: c.update(max_worker=4), jsonschema.ValidationError),
    "max_workers not a number": (lambda c: c.update(max_workers="eight"), jsonschema.ValidationError),
    "node type without node_config": (lambda c: c["available_node_types"]["ray.worker.a10g-1"].pop("node_config"),
                                      jsonschema.ValidationError),
    "head type not defined": (lambda c: c.update(head_node_type="ray.head.gpu"), ValueError),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_fails_ray_validation(raw, mistake):
    spoil, error = MISTAKES[mistake]
    bad = copy.deepcopy(raw)
    spoil(bad)
    with pytest.raises(error):
        ray_validate(bad)


def gpu_types(config: dict) -> dict:
    return {name: t for name, t in config["available_node_types"].items() if t["resources"].get("GPU", 0) > 0}


def test_gpu_workers_scale_from_zero(prepared):
    types = gpu_types(prepared)
    assert types, "cluster.yaml defines no worker type with a GPU"
    for name, t in types.items():
        assert name != prepared["head_node_type"]
        assert t["min_workers"] == 0, f"{name}: min_workers {t['min_workers']}, not 0: GPUs billed while idle"
        assert 0 < t["max_workers"] <= prepared["max_workers"], name
    assert prepared["idle_timeout_minutes"] > 0


def ray_start(commands: list[str], *, head: bool) -> list[str]:
    """The arguments of the one `ray start` (with or without --head) among ``commands``."""
    found = []
    for command in commands:
        for part in command.replace("&&", ";").split(";"):
            words = shlex.split(part)
            if words[:2] == ["ray", "start"] and ("--head" in words) == head:
                found.append(words[2:])
    assert len(found) == 1, f"expected one `ray start{' --head' if head else ''}` in {commands}"
    return found[0]


def flag(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in ``args``."""
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def test_dashboard_stays_on_the_heads_loopback(prepared):
    args = ray_start(prepared["head_start_ray_commands"], head=True)
    assert flag(args, "--dashboard-host") == "127.0.0.1", f"the dashboard must listen on loopback only: {args}"
    assert flag(args, "--autoscaling-config") == "~/ray_bootstrap_config.yaml"  # else no autoscaling
    worker = ray_start(prepared["worker_start_ray_commands"], head=False)
    assert flag(worker, "--address") == "$RAY_HEAD_IP:6379"
    everything = " ".join(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"])
    assert "0.0.0.0" not in everything


def open_to_world(node: object) -> list[dict]:
    """Every ingress rule (a dict with IpProtocol) anywhere in ``node`` that admits any address."""
    rules = []
    if isinstance(node, dict):
        cidrs = ({r.get("CidrIp") for r in node.get("IpRanges", [])}
                 | {r.get("CidrIpv6") for r in node.get("Ipv6Ranges", [])})
        if "IpProtocol" in node and cidrs & WORLD:
            rules.append(node)
        for value in node.values():
            rules += open_to_world(value)
    elif isinstance(node, list):
        for value in node:
            rules += open_to_world(value)
    return rules


def test_only_ssh_is_open_to_the_internet(raw):
    # Without SecurityGroupIds, ray up's own group admits SSH from anywhere and all traffic from
    # itself (ray.autoscaler._private.aws.config._create_default_inbound_rules), plus the rules of
    # provider.security_group.IpPermissions: those, and any in a node_config, are checked here.
    for rule in open_to_world(raw):
        assert rule.get("IpProtocol") == "tcp" and rule.get("FromPort") == rule.get("ToPort") == 22, \
            f"open to the internet: {rule}"
    # The check can fail: a rule opening the dashboard is found wherever it is written.
    dashboard = {"IpProtocol": "tcp", "FromPort": 8265, "ToPort": 8265, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    bad = copy.deepcopy(raw)
    bad["provider"]["security_group"] = {"GroupName": "ray-lstm-sweep", "IpPermissions": [dashboard]}
    assert open_to_world(bad) == [dashboard]


def test_every_node_installs_this_project_and_gets_the_token(raw, prepared):
    checkout = [remote for remote, local in raw["file_mounts"].items() if local == "."]
    assert len(checkout) == 1, "file_mounts should sync this checkout ('.') to the nodes"
    # prepare_config puts setup_commands before each of head_ and worker_setup_commands.
    for kind, extra in (("head", ""), ("worker", "[gpu]")):
        commands = prepared[f"{kind}_setup_commands"]
        assert any("pip install" in c and f"{checkout[0]}{extra}" in c for c in commands), \
            f"{kind} nodes never pip install {checkout[0]}{extra}: {commands}"
    assert "~/.ray/auth_token" in raw["file_mounts"].values()
    assert any("RAY_AUTH_MODE=token" in c for c in prepared["initialization_commands"])
