"""meshd's Deployment in manifests/: its settings, its containers, its Services and network.

- the ConfigMap's settings are all known to mesh.daemon.flags.OPTIONS and parse (as meshd reads
  the file), name the overlay's cluster and region as `meshd demo` and examples/ do, keep
  the base's shared settings, and agree with the Deployment's ports, mounts and environment;
- every container has probes, requests and limits, and the restricted security context;
- two replicas spread across zones, a PodDisruptionBudget, DNS on Service port 53, the ring
  headless, and a NetworkPolicy admitting DNS from the cluster and the ring from the other
  clusters' pod ranges (as examples/ places their pods);
- the CoreDNS and NodeLocal DNSCache stanzas forward the zone meshd serves.
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.daemon import flags as config
from mesh.daemon.demo import CLUSTERS
from tests.meta.k8s_manifests import (
    BUILDS,
    MANIFESTS,
    NAMESPACE,
    OVERLAYS,
    POD_LABELS,
    ROOT,
    Objects,
    all_builds,
    container,
    one,
    port_of,
    settings,
)


@pytest.fixture(scope="module")
def builds() -> dict[str, Objects]:
    return all_builds()


# --- meshd's settings -----------------------------------------------------------------------


@pytest.mark.parametrize("build", BUILDS)
def test_config_keys_are_known_and_parse(
    builds: dict[str, Objects], build: str, tmp_path: Path
) -> None:
    values = settings(builds[build])
    options = {opt.name: opt for opt in config.OPTIONS}
    assert set(values) <= set(options), f"unknown settings {set(values) - set(options)}"
    for key, value in values.items():
        options[key].parse(value)
    # And as meshd reads it: the file whole, with the Deployment's environment.
    path = tmp_path / "meshd.yaml"
    path.write_text(yaml.safe_dump(values))
    parser = argparse.ArgumentParser()
    config.add_run_arguments(parser)
    resolved = config.resolve(
        parser.parse_args(["--config", str(path)]), {"MESHD_ADVERTISE": "10.1.0.5:7946"}
    )
    assert resolved["advertise"] == "10.1.0.5:7946"
    assert resolved["manifests"] is None
    assert resolved["kubeconfig"] is None
    assert not resolved["insecure"], "gossip between clusters must use mutual TLS"
    assert all(resolved[k] is not None for k in ("tls_cert", "tls_key", "tls_ca"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_config_names_its_cluster_and_keeps_the_shared_settings(
    builds: dict[str, Objects], overlay: str
) -> None:
    values = settings(builds[overlay])
    regions = {cluster: region for cluster, region, _ in CLUSTERS}
    assert (
        set(OVERLAYS)
        == set(regions)
        == {p.name for p in (ROOT / "examples").iterdir() if p.is_dir()}
    )
    assert values["cluster_id"] == overlay
    assert values["region"] == regions[overlay]
    shared = settings(builds["base"])
    assert {k: values[k] for k in shared if k in values} == shared
    assert set(values) - set(shared) == {"cluster_id", "region", "join"}
    ring = one(builds[overlay], "Service", "meshd-ring")
    local_seed = f"{ring['metadata']['name']}.{NAMESPACE}.svc.cluster.local:7946"
    assert local_seed in values["join"]
    assert len(values["join"]) == len(OVERLAYS), "one seed per other cluster, and the local one"


@pytest.mark.parametrize("build", BUILDS)
def test_config_agrees_with_the_deployment(builds: dict[str, Objects], build: str) -> None:
    objects = builds[build]
    values = settings(objects)
    c = container(objects)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    ports = {(p["name"]): (p["containerPort"], p["protocol"]) for p in c["ports"]}
    assert ports == {
        "dns": (port_of(values["dns_listen"]), "UDP"),
        "dns-tcp": (port_of(values["dns_listen"]), "TCP"),
        "ring": (port_of(values["grpc_listen"]), "TCP"),
        "admin": (port_of(values["admin_listen"]), "TCP"),
    }
    assert ports["dns"][0] > 1023, "an unprivileged DNS port: the container has no capability"
    # --config FILE and the TLS files are where the projected volume puts them.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    projected = {}
    for source in volumes["config"]["projected"]["sources"]:
        [(kind, ref)] = source.items()
        for item in ref["items"]:
            projected[f"{mounts['config']}/{item['path']}"] = (kind, ref["name"], item["key"])
    args = c["args"]
    assert args[args.index("--config") + 1] == "/etc/meshd/meshd.yaml"
    config_map = one(objects, "ConfigMap", "meshd-config")["metadata"]["name"]
    assert projected["/etc/meshd/meshd.yaml"] == ("configMap", config_map, "meshd.yaml")
    for key, secret_key in (
        ("tls_cert", "tls.crt"),
        ("tls_key", "tls.key"),
        ("tls_ca", "ca.crt"),
        ("signing_cert", "signing.crt"),
        ("signing_key", "signing.key"),
    ):
        assert projected[values[key]] == ("secret", "meshd-tls", secret_key), key
    assert mounts["state"] == values["state_dir"]
    assert "emptyDir" in volumes["state"]
    # The advertised address: the pod IP from the downward API, and the ring port.
    env = [(e["name"], e.get("value"), e.get("valueFrom")) for e in c["env"]]
    assert env == [
        ("POD_IP", None, {"fieldRef": {"fieldPath": "status.podIP"}}),
        ("MESHD_ADVERTISE", f"$(POD_IP):{ports['ring'][0]}", None),
    ]
    assert pod["enableServiceLinks"] is False, "service links would add MESHD_* variables"


# --- the workload ---------------------------------------------------------------------------


def pod_templates(objects: Objects) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]


def container_problems(pod: dict[str, Any], c: dict[str, Any]) -> list[str]:
    problems = []
    for probe in ("readinessProbe", "livenessProbe"):
        if probe not in c:
            problems.append(f"no {probe}")
    for kind in ("requests", "limits"):
        if set(c.get("resources", {}).get(kind, {})) != {"cpu", "memory"}:
            problems.append(f"resources.{kind} must set cpu and memory")
    # The container's security context, falling back to the pod's where Kubernetes does.
    context = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    expected = {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for key, value in expected.items():
        if context.get(key) != value:
            problems.append(f"securityContext.{key} is {context.get(key)!r}, not {value!r}")
    if context.get("runAsUser", 1) == 0 or context.get("privileged"):
        problems.append("runs as root or privileged")
    return problems


@pytest.mark.parametrize("build", BUILDS)
def test_every_container_has_probes_limits_and_a_restricted_security_context(
    builds: dict[str, Objects], build: str
) -> None:
    templates = list(pod_templates(builds[build]))
    assert templates
    problems = []
    for name, template in templates:
        pod = template["spec"]
        assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        for c in pod.get("initContainers", []) + pod["containers"]:
            problems += [f"{name} {c['name']}: {p}" for p in container_problems(pod, c)]
    assert problems == []


def test_the_container_check_can_fail(builds: dict[str, Objects]) -> None:
    pod = one(builds["base"], "Deployment")["spec"]["template"]["spec"]
    bad = copy.deepcopy(pod["containers"][0])
    del bad["livenessProbe"]
    bad["securityContext"]["capabilities"] = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert len(container_problems(pod, bad)) == 2


@pytest.mark.parametrize("build", BUILDS)
def test_deployment_spreads_two_replicas_probed_on_the_admin_port(
    builds: dict[str, Objects], build: str
) -> None:
    objects = builds[build]
    deployment = one(objects, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == POD_LABELS
    assert spec["template"]["metadata"]["labels"] == POD_LABELS
    pod = spec["template"]["spec"]
    spread = {t["topologyKey"]: t for t in pod["topologySpreadConstraints"]}
    assert spread["topology.kubernetes.io/zone"]["labelSelector"] == {"matchLabels": POD_LABELS}
    c = container(objects)
    admin = next(p["containerPort"] for p in c["ports"] if p["name"] == "admin")
    assert admin == 9090
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    pdb = one(objects, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"] == POD_LABELS
    assert 0 < pdb["minAvailable"] < spec["replicas"]


def test_services_reach_the_agents_dns_on_53_and_the_ring_headless(
    builds: dict[str, Objects],
) -> None:
    objects = builds["base"]
    ports = {(p["name"], p["protocol"]): p["containerPort"] for p in container(objects)["ports"]}
    names = {name for name, _ in ports}
    dns = one(objects, "Service", "meshd-dns")["spec"]
    assert dns["selector"] == POD_LABELS
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    for p in dns["ports"]:
        assert (p["targetPort"], p["protocol"]) in ports, p
    ring = one(objects, "Service", "meshd-ring")["spec"]
    assert ring["clusterIP"] == "None"
    assert ring["publishNotReadyAddresses"] is True
    assert ring["selector"] == POD_LABELS
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in ring["ports"]] == [
        (7946, "ring", "TCP")
    ]
    assert {"dns", "dns-tcp", "ring", "admin"} == names


def example_addresses(cluster: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found = []
    for doc in yaml.safe_load_all((ROOT / "examples" / cluster / "shop.yaml").read_text()):
        if doc and doc["kind"] == "EndpointSlice":
            for endpoint in doc["endpoints"]:
                found += [ipaddress.ip_address(a) for a in endpoint["addresses"]]
    assert found
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_dns_from_the_cluster_and_the_ring_from_peers(
    builds: dict[str, Objects], overlay: str
) -> None:
    policy = one(builds[overlay], "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == POD_LABELS
    assert policy["policyTypes"] == ["Ingress"]
    by_port: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            by_port.setdefault((port["port"], port["protocol"]), []).extend(rule["from"])
    assert {"namespaceSelector": {}} in by_port[("dns", "UDP")]
    assert {"namespaceSelector": {}} in by_port[("dns-tcp", "TCP")]
    ring = by_port[("ring", "TCP")]
    assert {"podSelector": {"matchLabels": POD_LABELS}} in ring
    blocks = [ipaddress.ip_network(f["ipBlock"]["cidr"]) for f in ring if "ipBlock" in f]
    # The other clusters' pods (as examples/ places them) may dial the ring; nobody else.
    for other in OVERLAYS:
        inside = [any(a in b for b in blocks) for a in example_addresses(other)]
        assert all(inside) if other != overlay else not any(inside), (overlay, other)
    assert len(blocks) == len(OVERLAYS) - 1
    assert ring == [f for f in ring if set(f) <= {"podSelector", "ipBlock"}]
    # meshd drill, in an agent's pod of any cluster, queries every agent's DNS port.
    for port in (("dns", "UDP"), ("dns-tcp", "TCP")):
        dns_blocks = [
            ipaddress.ip_network(f["ipBlock"]["cidr"]) for f in by_port[port] if "ipBlock" in f
        ]
        for other in OVERLAYS:
            if other != overlay:
                assert all(any(a in b for b in dns_blocks) for a in example_addresses(other))


# --- CoreDNS and NodeLocal DNSCache ---------------------------------------------------------


def server_blocks(text: str) -> dict[str, list[str]]:
    """A Corefile's server blocks: `zone:port` -> its directive lines, comments dropped."""
    blocks: dict[str, list[str]] = {}
    depth, current = 0, ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if depth == 0:
            assert line.endswith("{"), f"expected a server block, got {line!r}"
            current = line[:-1].strip()
            blocks[current] = []
        else:
            blocks[current].append(line)
        depth += line.count("{") - line.count("}")
        assert depth >= 0, text
    assert depth == 0, "unbalanced braces"
    return blocks


@pytest.mark.parametrize("name", ["Corefile.clusterset", "nodelocaldns.clusterset"])
def test_dns_stanzas_forward_the_zone_to_meshd(builds: dict[str, Objects], name: str) -> None:
    text = (MANIFESTS / "coredns" / name).read_text()
    zone = settings(builds["base"])["dns_zone"]
    blocks = server_blocks(text)
    assert list(blocks) == [f"{zone}:53"]
    directives = blocks[f"{zone}:53"]
    assert "forward . MESHD_DNS_IP {" in directives
    assert text.lstrip().startswith("#"), "say where the stanza goes"
    if name.startswith("nodelocaldns"):
        assert "bind __PILLAR__LOCAL__DNS__ __PILLAR__DNS__SERVER__" in directives
        assert "force_tcp" in directives
