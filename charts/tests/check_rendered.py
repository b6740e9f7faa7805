"""Checks on `helm template` output of charts/portcullis that schemas cannot express.

    python check_rendered.py --mode sharedProxy|sidecar --kinds Kind,Kind,... rendered.yaml

The hardening every pod must have (non-root, read-only root, no capabilities, no service
account token, the pod's own network namespace), the probes, the migration hook, the kinds the
mode renders, and in sidecar mode the no-bypass layout: the gateway's upstream is on loopback,
and neither a Service nor the NetworkPolicy opens any port but the gateway's. Exits non-zero
and names every failed check.
"""

import argparse
import sys
from urllib.parse import urlsplit

import yaml

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def pod_spec(obj):
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def check_pod(obj):
    name = f'{obj["kind"]}/{obj["metadata"]["name"]}'
    spec = pod_spec(obj)
    psc = spec.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot is not true")
    check(spec.get("automountServiceAccountToken") is False,
          f"{name}: a service account token is mounted")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        check(not spec.get(flag), f"{name}: {flag} is on")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        where = f'{name} container {c["name"]}'
        sc = c.get("securityContext", {})
        check(sc.get("readOnlyRootFilesystem") is True, f"{where}: root file system is writable")
        check(sc.get("allowPrivilegeEscalation") is False, f"{where}: privilege escalation allowed")
        check(not sc.get("privileged"), f"{where}: privileged")
        check("ALL" in sc.get("capabilities", {}).get("drop", []),
              f"{where}: capabilities are not all dropped")
        check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, f"{where}: may run as root")
        for port in c.get("ports", []):
            check("hostPort" not in port, f"{where}: hostPort {port.get('hostPort')}")


def probe_path(container, kind):
    probe = container.get(kind) or {}
    http = probe.get("httpGet") or {}
    return http.get("path"), http.get("port")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["sharedProxy", "sidecar"], required=True)
    parser.add_argument("--kinds", required=True, help="comma-separated kinds expected")
    parser.add_argument("file")
    args = parser.parse_args()

    with open(args.file, encoding="utf-8") as f:
        objects = [o for o in yaml.safe_load_all(f) if o]

    kinds = sorted({o["kind"] for o in objects})
    expected = sorted(set(args.kinds.split(",")))
    check(kinds == expected, f"kinds rendered {kinds}, expected {expected}")

    by_component = {}
    for o in objects:
        component = o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        by_component.setdefault((o["kind"], component), []).append(o)
        if pod_spec(o) is not None:
            check_pod(o)

    for deploy in by_component.get(("Deployment", "gateway"), []):
        check_gateway(objects, by_component, deploy, args.mode)
    for deploy in by_component.get(("Deployment", "issuer"), []):
        (issuer,) = deploy["spec"]["template"]["spec"]["containers"]
        check(probe_path(issuer, "livenessProbe") == ("/healthz", "http"), "issuer liveness is not /healthz")
        check(probe_path(issuer, "readinessProbe") == ("/readyz", "http"), "issuer readiness is not /readyz")
        env = {e["name"] for e in issuer.get("env", [])}
        for var in ("PORTCULLIS_DATABASE_URL", "PORTCULLIS_KEY_ENCRYPTION_SECRET_FILE", "PORTCULLIS_ISSUER_URL"):
            check(var in env, f"issuer lacks {var}")
    for job in by_component.get(("Job", "issuer-migrate"), []):
        hooks = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        check(set(hooks.split(",")) == {"pre-install", "pre-upgrade"}, "the migration Job is not a pre-install/pre-upgrade hook")
        check(job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"], "the migration Job does not run migrate")

    for cron in by_component.get(("CronJob", "issuer-maintenance"), []):
        (prune,) = pod_spec(cron)["containers"]
        check(prune["args"][:2] == ["maintenance", "prune"], "the maintenance CronJob does not prune")
        env = {e["name"] for e in prune.get("env", [])}
        for var in ("PORTCULLIS_DATABASE_URL", "PORTCULLIS_KEY_ENCRYPTION_SECRET_FILE"):
            check(var in env, f"the maintenance CronJob lacks {var}")
        mounts = [m["mountPath"] for m in prune.get("volumeMounts", [])]
        check("/etc/portcullis/secrets" in mounts, "the maintenance CronJob does not mount the key-encryption secret")

    check(args.mode != "sidecar" or ("Deployment", "gateway") in by_component, "sidecar mode without a gateway")

    # ServiceMonitors have no schema offline: check that each selects one Service of the render
    # and scrapes a port that Service has.
    services = [o for o in objects if o["kind"] == "Service"]
    for sm in (o for o in objects if o["kind"] == "ServiceMonitor"):
        wanted = sm["spec"]["selector"]["matchLabels"]
        matched = [svc for svc in services
                   if all(svc["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]
        name = sm["metadata"]["name"]
        check(len(matched) == 1, f"ServiceMonitor {name} selects {len(matched)} Services, not 1")
        for svc in matched:
            port_names = {p.get("name") for p in svc["spec"]["ports"]}
            for endpoint in sm["spec"]["endpoints"]:
                check(endpoint.get("port") in port_names,
                      f"ServiceMonitor {name} scrapes port {endpoint.get('port')}, not one of {sorted(port_names)}")
                check(endpoint.get("path") == "/metrics", f"ServiceMonitor {name} scrapes {endpoint.get('path')}")

    if problems:
        for p in problems:
            print(f"FAIL {args.file}: {p}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.file}: {len(objects)} objects ({', '.join(kinds)}) pass the {args.mode} checks")


def check_gateway(objects, by_component, gateway, mode):
    annotations = gateway["spec"]["template"]["metadata"].get("annotations", {})
    check("checksum/config" in annotations, "gateway pods lack the config checksum annotation")
    gw = next(c for c in gateway["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway")
    check(probe_path(gw, "livenessProbe") == ("/healthz", "admin"), "gateway liveness is not /healthz on admin")
    check(probe_path(gw, "readinessProbe") == ("/readyz", "admin"), "gateway readiness is not /readyz on admin")
    gw_ports = {p["name"]: p["containerPort"] for p in gw["ports"]}

    (config_map,) = [o for o in by_component[("ConfigMap", "gateway")] if "gateway.yaml" in o["data"]]
    config = yaml.safe_load(config_map["data"]["gateway.yaml"])
    check(config["listen"].endswith(f':{gw_ports["http"]}'), "gateway listen does not match the http port")
    check(config["admin_listen"].endswith(f':{gw_ports["admin"]}'), "gateway admin_listen does not match the admin port")

    # Every file the configuration names is mounted into the gateway container.
    mounts = [m["mountPath"].rstrip("/") + "/" for m in gw.get("volumeMounts", [])]
    named = [
        config.get("signing_key_file"),
        (config.get("sessions") or {}).get("keys_file"),
        (config.get("shared_state") or {}).get("redis_url_file"),
    ]
    for path in filter(None, named):
        check(any(path.startswith(m) for m in mounts), f"the gateway config names {path}, which no volume mounts")

    # Replicas behind one address sign alike and read each other's session ids.
    scaled = gateway["spec"].get("replicas", 1) > 1 or any(
        o["kind"] == "HorizontalPodAutoscaler" for o in objects)
    if mode == "sharedProxy" and scaled:
        check("keys_file" in (config.get("sessions") or {}), "several gateway replicas without shared session keys")

    if mode == "sidecar":
        check_sidecar(objects, gateway, gw_ports, config)


def check_sidecar(objects, gateway, gw_ports, config):
    spec = gateway["spec"]["template"]["spec"]
    others = [c for c in spec["containers"] if c["name"] != "gateway"]
    check(len(others) == 1, "the sidecar pod should hold exactly one MCP server container")
    for c in others:
        check(not c.get("ports"), f"MCP server container {c['name']} declares ports")
    upstream_ports = set()
    for up in config["upstreams"]:
        url = urlsplit(up["url"])
        check(url.hostname in LOOPBACK, f"upstream {up['name']} is not on loopback: {up['url']}")
        upstream_ports.add(url.port)
    check(not upstream_ports & set(gw_ports.values()), "an upstream port collides with a gateway port")

    labels = gateway["spec"]["template"]["metadata"]["labels"]

    def selects(selector):
        return all(labels.get(k) == v for k, v in selector.items())

    for svc in (o for o in objects if o["kind"] == "Service"):
        if selects(svc["spec"].get("selector", {})):
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                check(target in gw_ports or target in gw_ports.values(),
                      f"Service {svc['metadata']['name']} exposes {target}, not a gateway port")

    policies = [o for o in objects if o["kind"] == "NetworkPolicy"
                and selects(o["spec"]["podSelector"].get("matchLabels", {}))]
    check(len(policies) >= 1, "no NetworkPolicy selects the sidecar pod")
    for np in policies:
        check("Ingress" in np["spec"].get("policyTypes", []), f"NetworkPolicy {np['metadata']['name']} does not isolate ingress")
        for rule in np["spec"].get("ingress", []):
            ports = rule.get("ports")
            check(bool(ports), f"NetworkPolicy {np['metadata']['name']} has a rule open on every port")
            for p in ports or []:
                check(p.get("port") in gw_ports.values() or p.get("port") in gw_ports,
                      f"NetworkPolicy {np['metadata']['name']} opens port {p.get('port')}")
                check("endPort" not in p, f"NetworkPolicy {np['metadata']['name']} opens a port range")


if __name__ == "__main__":
    main()
