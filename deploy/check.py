#!/usr/bin/env python3
"""Structural checks of deploy/ that no schema can express. Called by deploy/check.sh.

Every problem is printed as `FILE: what is wrong`; the exit status is 1 if there was any.
Needs PyYAML. Run from the repository root: python3 deploy/check.py
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path.cwd()
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
MONITORING = DEPLOY / "monitoring"
AUTOSCALING = DEPLOY / "autoscaling"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
REDIS_CONF = DEPLOY / "redis.conf"
SAMPLE = DEPLOY / "sample.csv"
CONFIG_DOC = ROOT / "docs" / "configuration.md"

# The default of ENVSHARE_SHUTDOWN_TIMEOUT_MS in docs/configuration.md.
DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000
HTTP_PORT = 9464
SERVE_PORT = 8080
APPID = re.compile(r"^wx[0-9a-f]{16}$")
ENV = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

problems: list[str] = []


def problem(path: Path, message: str) -> None:
    problems.append(f"{path.relative_to(ROOT)}: {message}")


def load_yaml(path: Path) -> list:
    try:
        with path.open(encoding="utf-8") as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except (OSError, yaml.YAMLError) as e:
        problem(path, f"not valid YAML: {e}")
        return []


def dig(obj, *keys, default=None):
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and k < len(obj):
            obj = obj[k]
        else:
            return default
    return obj


def known_settings() -> set[str]:
    """The ENVSHARE_* names documented in docs/configuration.md (empty if it is missing)."""
    if not CONFIG_DOC.exists():
        return set()
    names = set(re.findall(r"`(ENVSHARE_[A-Z_]+)`", CONFIG_DOC.read_text(encoding="utf-8")))
    return names | {"REDIS_URL"}


def check_setting_names(path: Path, names, known: set[str]) -> None:
    if not known:
        return
    for name in names:
        if name.startswith("ENVSHARE_") and name not in known:
            problem(path, f"{name} is not a setting documented in docs/configuration.md")


def parse_addr_port(path: Path, addr: str | None) -> int | None:
    if addr is None:
        problem(path, "ENVSHARE_HTTP_ADDR is not set: the worker's default 127.0.0.1 is unreachable from probes")
        return None
    host, _, port = str(addr).rpartition(":")
    if host.strip("[]") not in ("0.0.0.0", "::"):
        problem(path, f"ENVSHARE_HTTP_ADDR={addr}: must listen on every interface (0.0.0.0 or [::])")
    if not port.isdigit():
        problem(path, f"ENVSHARE_HTTP_ADDR={addr}: no port")
        return None
    return int(port)


def duration_s(value) -> float | None:
    """Compose durations: `40s`, `1m30s`, `500ms`; a bare number is seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total, rest = 0.0, str(value)
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", rest):
        total += float(amount) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
        rest = rest.replace(amount + unit, "", 1)
    return total if rest == "" else None


# --- Kubernetes ------------------------------------------------------------------------------


def check_pod_template(dep_path: Path, dep: dict, replicas_why: str) -> tuple[dict, dict, dict]:
    """The checks every envshare Deployment shares: the selector matches the pod's labels, at
    least two replicas, a non-root pod. Returns (spec, pod spec, pod labels)."""
    spec = dep.get("spec") or {}
    pod = dig(spec, "template", "spec", default={})
    labels = dig(spec, "template", "metadata", "labels", default={})
    selector = dig(spec, "selector", "matchLabels", default={})
    if not selector or any(labels.get(k) != v for k, v in selector.items()):
        problem(dep_path, "spec.selector.matchLabels does not match the pod template's labels")
    if (spec.get("replicas") or 1) < 2:
        problem(dep_path, f"replicas should be at least 2{replicas_why}")
    sc = pod.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") in (None, 0):
        problem(dep_path, "the pod must set runAsNonRoot: true and a non-zero runAsUser")
    return spec, pod, labels


def check_env_from(dep_path: Path, container: dict, cm: dict, sec: dict) -> None:
    """The container takes its settings from the ConfigMap and the Secret."""
    refs = {(next(iter(e)), dig(e, next(iter(e)), "name")) for e in container.get("envFrom") or []}
    if ("configMapRef", dig(cm, "metadata", "name")) not in refs:
        problem(dep_path, "envFrom does not reference the ConfigMap")
    if ("secretRef", dig(sec, "metadata", "name")) not in refs:
        problem(dep_path, "envFrom does not reference the Secret")


def check_k8s(known: set[str]) -> None:
    files = sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))
    if not files:
        problem(K8S, "no manifests")
        return
    by_kind: dict[str, list[tuple[Path, dict]]] = {}
    serve_objects: dict[str, list[tuple[Path, dict]]] = {}
    kustomization = None
    for path in files:
        for doc in load_yaml(path):
            if not isinstance(doc, dict):
                problem(path, "a document is not a mapping")
                continue
            kind = doc.get("kind")
            if kind == "Kustomization":
                kustomization = (path, doc)
                continue
            for field in ("apiVersion", "kind"):
                if not doc.get(field):
                    problem(path, f"missing {field}")
            if not dig(doc, "metadata", "name"):
                problem(path, f"{kind}: missing metadata.name")
            if dig(doc, "metadata", "labels", "app.kubernetes.io/name") != "envshare":
                problem(path, f"{kind}: label app.kubernetes.io/name should be envshare")
            # `envshare serve` (component serve) is checked on its own, in check_serve.
            if dig(doc, "metadata", "labels", "app.kubernetes.io/component") == "serve":
                serve_objects.setdefault(kind, []).append((path, doc))
                continue
            by_kind.setdefault(kind, []).append((path, doc))

    for kind in ("Deployment", "ConfigMap", "Secret", "Service", "PodDisruptionBudget"):
        if len(by_kind.get(kind, [])) != 1:
            problem(K8S, f"expected exactly one {kind}, found {len(by_kind.get(kind, []))}")
    if problems and any(p.startswith("deploy/k8s: expected") for p in problems):
        return

    dep_path, dep = by_kind["Deployment"][0]
    cm_path, cm = by_kind["ConfigMap"][0]
    sec_path, sec = by_kind["Secret"][0]
    svc_path, svc = by_kind["Service"][0]
    pdb_path, pdb = by_kind["PodDisruptionBudget"][0]

    # Settings: known names, an address probes can reach, a grace period above the timeout.
    data = cm.get("data") or {}
    check_setting_names(cm_path, data, known)
    port = parse_addr_port(cm_path, data.get("ENVSHARE_HTTP_ADDR"))
    if port is not None and port != HTTP_PORT:
        problem(cm_path, f"ENVSHARE_HTTP_ADDR port {port}: the image and docs use {HTTP_PORT}")
    shutdown_ms = int(data.get("ENVSHARE_SHUTDOWN_TIMEOUT_MS", DEFAULT_SHUTDOWN_TIMEOUT_MS))
    overlap = set(data) & set((sec.get("stringData") or {}) | (sec.get("data") or {}))
    if overlap:
        problem(cm_path, f"set in both the ConfigMap and the Secret: {sorted(overlap)}")

    # The example Secret holds placeholders only.
    secret_values = sec.get("stringData") or {}
    if sec.get("data"):
        problem(sec_path, "use stringData with placeholders, not base64 data")
    check_setting_names(sec_path, secret_values, known)
    for key, value in secret_values.items():
        if "REPLACE" not in str(value):
            problem(sec_path, f"{key}: an example Secret must hold a REPLACE_… placeholder, not a value")
    for key in ("ENVSHARE_COMPONENT_APPSECRET",):
        if key in data:
            problem(cm_path, f"{key} is a secret: it belongs in the Secret")

    # Deployment.
    spec, pod, labels = check_pod_template(
        dep_path, dep, " (one node's loss must not stop the queue)"
    )
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace * 1000 <= shutdown_ms:
        problem(
            dep_path,
            f"terminationGracePeriodSeconds={grace} must exceed ENVSHARE_SHUTDOWN_TIMEOUT_MS={shutdown_ms} ms",
        )
    containers = pod.get("containers") or []
    if len(containers) != 1:
        problem(dep_path, "expected one container")
        return
    c = containers[0]
    if "envshare" not in str(c.get("image", "")):
        problem(dep_path, f"image {c.get('image')!r} is not the envshare image")
    check_env_from(dep_path, c, cm, sec)
    check_setting_names(dep_path, [e.get("name", "") for e in c.get("env") or []], known)
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    if port is not None and port not in ports.values():
        problem(dep_path, f"no containerPort {port} (ENVSHARE_HTTP_ADDR)")

    def probe_port(probe_name: str, path: str) -> None:
        probe = c.get(probe_name)
        if not probe:
            problem(dep_path, f"missing {probe_name}")
            return
        get = probe.get("httpGet") or {}
        if get.get("path") != path:
            problem(dep_path, f"{probe_name} should GET {path}, not {get.get('path')}")
        target = get.get("port")
        resolved = ports.get(target) if isinstance(target, str) else target
        if resolved != port:
            problem(dep_path, f"{probe_name} port {target!r} is not ENVSHARE_HTTP_ADDR's port {port}")

    probe_port("readinessProbe", "/readyz")
    probe_port("livenessProbe", "/healthz")
    res = c.get("resources") or {}
    for part in ("requests", "limits"):
        if not dig(res, part, "memory"):
            problem(dep_path, f"resources.{part}.memory is not set")
    if not dig(res, "requests", "cpu"):
        problem(dep_path, "resources.requests.cpu is not set")
    csc = c.get("securityContext") or {}
    if csc.get("allowPrivilegeEscalation") is not False:
        problem(dep_path, "container securityContext.allowPrivilegeEscalation should be false")

    # Service: selects the workers, scrape annotations point at the metrics port.
    sel = dig(svc, "spec", "selector", default={})
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        problem(svc_path, "spec.selector does not select the Deployment's pods")
    ann = dig(svc, "metadata", "annotations", default={})
    if ann.get("prometheus.io/scrape") != "true":
        problem(svc_path, 'missing annotation prometheus.io/scrape: "true"')
    if ann.get("prometheus.io/path") != "/metrics":
        problem(svc_path, "annotation prometheus.io/path should be /metrics")
    if str(ann.get("prometheus.io/port")) != str(port):
        problem(svc_path, f"annotation prometheus.io/port should be {port}")
    svc_ports = dig(svc, "spec", "ports", default=[])
    targets = [p.get("targetPort", p.get("port")) for p in svc_ports]
    resolved = [ports.get(t) if isinstance(t, str) else t for t in targets]
    if port not in resolved:
        problem(svc_path, f"no port targets the container's metrics port {port}")

    # PodDisruptionBudget: selects the workers and lets at least one go.
    psel = dig(pdb, "spec", "selector", "matchLabels", default={})
    if not psel or any(labels.get(k) != v for k, v in psel.items()):
        problem(pdb_path, "spec.selector does not select the Deployment's pods")
    ps = pdb.get("spec") or {}
    if ("minAvailable" in ps) == ("maxUnavailable" in ps):
        problem(pdb_path, "set exactly one of minAvailable and maxUnavailable")
    if ps.get("minAvailable") is not None and isinstance(ps["minAvailable"], int):
        if ps["minAvailable"] >= (spec.get("replicas") or 1):
            problem(pdb_path, "minAvailable >= replicas blocks every node drain")

    check_serve(serve_objects, cm, sec, known)

    # Kustomization: lists every manifest but never the example Secret.
    if kustomization:
        kpath, kdoc = kustomization
        resources = kdoc.get("resources") or []
        for r in resources:
            if not (K8S / r).exists():
                problem(kpath, f"resource {r} does not exist")
        for path in files:
            name = path.name
            if name == kpath.name:
                continue
            if name.startswith("secret.example"):
                if name in resources:
                    problem(kpath, f"{name} holds placeholders and must not be applied")
            elif name not in resources:
                problem(kpath, f"{name} is not listed in resources")


# --- Monitoring and autoscaling -------------------------------------------------------------

# Grafana's interval variables, replaced by a fixed range so promtool can parse the expressions.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def k8s_docs(path: Path) -> list[dict]:
    docs = []
    for doc in load_yaml(path):
        if not isinstance(doc, dict):
            problem(path, "a document is not a mapping")
        else:
            docs.append(doc)
    return docs


def check_serve(objs: dict, cm: dict, sec: dict, known: set[str]) -> None:
    """`envshare serve`: its own Deployment, Service, PodDisruptionBudget and Ingress."""
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "Ingress"):
        if len(objs.get(kind, [])) != 1:
            problem(K8S, f"expected exactly one serve {kind}, found {len(objs.get(kind, []))}")
            return
    dep_path, dep = objs["Deployment"][0]
    svc_path, svc = objs["Service"][0]
    pdb_path, pdb = objs["PodDisruptionBudget"][0]
    ing_path, ing = objs["Ingress"][0]
    _, pod, labels = check_pod_template(dep_path, dep, "")
    containers = pod.get("containers") or []
    if len(containers) != 1:
        problem(dep_path, "expected one container")
        return
    c = containers[0]
    if c.get("command") != ["envshare", "serve"]:
        problem(dep_path, "the container must run `envshare serve`")
    check_env_from(dep_path, c, cm, sec)
    env = {e.get("name", ""): e.get("value") for e in c.get("env") or []}
    check_setting_names(dep_path, env, known)
    addr = env.get("ENVSHARE_SERVE_ADDR") or ""
    host, _, port_s = addr.rpartition(":")
    if host not in ("0.0.0.0", "[::]") or port_s != str(SERVE_PORT):
        problem(dep_path, f"ENVSHARE_SERVE_ADDR={addr!r}: should be 0.0.0.0:{SERVE_PORT}")
    if "ENVSHARE_API_TOKEN" not in (sec.get("stringData") or {}):
        problem(dep_path, "the Secret has no ENVSHARE_API_TOKEN: serve refuses a non-loopback address without it")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    if SERVE_PORT not in ports.values():
        problem(dep_path, f"no containerPort {SERVE_PORT}")
    for probe_name, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = dig(c, probe_name, "httpGet", default={})
        target = get.get("port")
        resolved = ports.get(target) if isinstance(target, str) else target
        if get.get("path") != path or resolved != SERVE_PORT:
            problem(dep_path, f"{probe_name} should GET {path} on port {SERVE_PORT}")
    if not dig(c, "resources", "limits", "memory") or not dig(c, "resources", "requests", "cpu"):
        problem(dep_path, "resources.limits.memory and resources.requests.cpu must be set")
    if dig(c, "securityContext", "allowPrivilegeEscalation") is not False:
        problem(dep_path, "container securityContext.allowPrivilegeEscalation should be false")

    sel = dig(svc, "spec", "selector", default={})
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        problem(svc_path, "spec.selector does not select the serve pods")
    svc_ports = {p.get("name"): p for p in dig(svc, "spec", "ports", default=[])}
    targets = [p.get("targetPort") for p in svc_ports.values()]
    if not any((ports.get(t) if isinstance(t, str) else t) == SERVE_PORT for t in targets):
        problem(svc_path, f"no port targets the serve container's port {SERVE_PORT}")
    psel = dig(pdb, "spec", "selector", "matchLabels", default={})
    if not psel or any(labels.get(k) != v for k, v in psel.items()):
        problem(pdb_path, "spec.selector does not select the serve pods")

    # The Ingress routes the API, the console and the callback to the Service; never /metrics,
    # /healthz or /readyz, and "/" only as an exact path (the console's overview), never as a
    # prefix that would make everything public.
    routed = set()
    prefixes = set()
    for rule in dig(ing, "spec", "rules", default=[]):
        for p in dig(rule, "http", "paths", default=[]):
            backend = dig(p, "backend", "service", default={})
            if backend.get("name") != dig(svc, "metadata", "name"):
                problem(ing_path, f"path {p.get('path')} does not go to the serve Service")
            port = dig(backend, "port", default={})
            if port.get("name") not in svc_ports and port.get("number") not in [
                q.get("port") for q in svc_ports.values()
            ]:
                problem(ing_path, f"path {p.get('path')} names no port of the serve Service")
            routed.add(p.get("path"))
            if p.get("pathType") != "Exact":
                prefixes.add(p.get("path"))
    for want in ("/api/v1", "/wechat/callback", "/", "/login", "/batches"):
        if want not in routed:
            problem(ing_path, f"{want} is not routed")
    for private in ("/metrics", "/healthz", "/readyz"):
        if private in routed or any(private.startswith(x.rstrip("/") + "/") for x in prefixes):
            problem(ing_path, f"{private} must not be public")
    if "/" in prefixes:
        problem(ing_path, "/ must be an Exact path: a prefix / would make /metrics public")


def worker_objects() -> tuple[dict, dict]:
    """The worker's Deployment and Service in deploy/k8s."""
    dep = svc = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in k8s_docs(path):
            if dig(doc, "metadata", "labels", "app.kubernetes.io/component") == "serve":
                continue
            if doc.get("kind") == "Deployment":
                dep = doc
            elif doc.get("kind") == "Service":
                svc = doc
    return dep, svc


def promtool_check(path: Path, exprs: list[tuple[str, str]]) -> None:
    """Parses every (name, PromQL) with `promtool check rules`, as recording rules."""
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool:
        problem(path, "promtool is not installed (Debian: apt-get install prometheus); PromQL not checked")
        return
    rules = [{"record": f"check:{i}", "expr": e} for i, (_, e) in enumerate(exprs)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}, f)
    try:
        out = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        text = (out.stdout + out.stderr).replace(f.name, str(path.relative_to(ROOT)))
        for i, (name, _) in enumerate(exprs):
            text = text.replace(f"check:{i}", name)
        problem(path, f"promtool check rules failed:\n{text}")


def check_rule_file(path: Path, doc: dict) -> list[tuple[str, str]]:
    exprs = []
    groups = dig(doc, "spec", "groups", default=None)
    if not isinstance(groups, list) or not groups:
        problem(path, "spec.groups is missing or empty")
        return exprs
    for g in groups:
        if not g.get("name"):
            problem(path, "a rule group has no name")
        for r in g.get("rules") or []:
            name = r.get("alert") or r.get("record")
            if ("alert" in r) == ("record" in r):
                problem(path, f"rule {name!r}: set exactly one of alert and record")
            if not isinstance(r.get("expr"), str) or not r["expr"].strip():
                problem(path, f"rule {name!r}: expr is missing")
                continue
            if "for" in r and not DURATION.match(str(r["for"])):
                problem(path, f"rule {name!r}: for {r['for']!r} is not a Prometheus duration")
            if "alert" in r and not dig(r, "labels", "severity"):
                problem(path, f"rule {name!r}: no severity label")
            if "alert" in r and not dig(r, "annotations", "summary"):
                problem(path, f"rule {name!r}: no summary annotation")
            for k, v in list((r.get("labels") or {}).items()) + list((r.get("annotations") or {}).items()):
                if not isinstance(v, str):
                    problem(path, f"rule {name!r}: {k} must be a string")
            exprs.append((str(name), r["expr"]))
    return exprs


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    import json

    try:
        dash = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problem(path, f"not valid JSON: {e}")
        return []
    for field in ("title", "uid", "panels", "schemaVersion"):
        if field not in dash:
            problem(path, f"missing {field}")
    ids = [p.get("id") for p in dash.get("panels", [])]
    if len(ids) != len(set(ids)):
        problem(path, "panel ids are not unique")
    exprs = []
    for p in dash.get("panels", []):
        if p.get("type") == "row":
            continue
        if not p.get("title") or not p.get("gridPos"):
            problem(path, f"panel {p.get('id')}: needs a title and a gridPos")
        targets = p.get("targets") or []
        if not targets:
            problem(path, f"panel {p.get('title')!r}: no targets")
        for t in targets:
            expr = t.get("expr", "")
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            if "$" in expr:
                problem(path, f"panel {p.get('title')!r}: unknown variable in {t.get('expr')!r}")
            exprs.append((f"{p.get('title')} {t.get('refId')}", expr))
    return exprs


def check_monitoring() -> None:
    dep, svc = worker_objects()
    svc_labels = dig(svc, "metadata", "labels", default={})
    svc_ports = {p.get("name") for p in dig(svc, "spec", "ports", default=[])}
    metrics_path = dig(svc, "metadata", "annotations", "prometheus.io/path", default="/metrics")
    kinds: dict[str, int] = {}
    exprs: list[tuple[str, str]] = []
    rules_path = None
    for path in sorted(MONITORING.glob("*.yaml")):
        if path.name.startswith("kustomization"):
            continue
        for doc in k8s_docs(path):
            kind = doc.get("kind")
            kinds[kind] = kinds.get(kind, 0) + 1
            if doc.get("apiVersion") != "monitoring.coreos.com/v1":
                problem(path, f"{kind}: apiVersion should be monitoring.coreos.com/v1")
            if not dig(doc, "metadata", "name"):
                problem(path, f"{kind}: missing metadata.name")
            if dig(doc, "metadata", "labels", "app.kubernetes.io/name") != "envshare":
                problem(path, f"{kind}: label app.kubernetes.io/name should be envshare")
            if kind == "PrometheusRule":
                rules_path = path
                exprs += check_rule_file(path, doc)
            elif kind == "ServiceMonitor":
                sel = dig(doc, "spec", "selector", "matchLabels", default={})
                if not sel or any(svc_labels.get(k) != v for k, v in sel.items()):
                    problem(path, "spec.selector.matchLabels does not select the envshare-worker Service")
                eps = dig(doc, "spec", "endpoints", default=[])
                if not eps:
                    problem(path, "no endpoints")
                for ep in eps:
                    if ep.get("port") not in svc_ports:
                        problem(path, f"endpoint port {ep.get('port')!r} is not a port name of the Service")
                    if ep.get("path", "/metrics") != metrics_path:
                        problem(path, f"endpoint path {ep.get('path')!r} is not {metrics_path}")
                    for k in ("interval", "scrapeTimeout"):
                        if k in ep and not DURATION.match(str(ep[k])):
                            problem(path, f"endpoint {k} {ep[k]!r} is not a duration")
                unknown = set(doc.get("spec", {})) - {"selector", "endpoints", "namespaceSelector",
                                                      "jobLabel", "targetLabels", "podTargetLabels"}
                if unknown:
                    problem(path, f"unknown spec fields {sorted(unknown)}")
            else:
                problem(path, f"unexpected kind {kind}")
    for kind in ("PrometheusRule", "ServiceMonitor"):
        if kinds.get(kind) != 1:
            problem(MONITORING, f"expected exactly one {kind}, found {kinds.get(kind, 0)}")
    if rules_path:
        promtool_check(rules_path, exprs)
    dash = MONITORING / "grafana-dashboard.json"
    if not dash.exists():
        problem(MONITORING, "grafana-dashboard.json is missing")
    else:
        promtool_check(dash, dashboard_exprs(dash))
    kust = MONITORING / "kustomization.yaml"
    for doc in k8s_docs(kust) if kust.exists() else []:
        listed = set(doc.get("resources") or [])
        listed |= {f for g in doc.get("configMapGenerator") or [] for f in g.get("files") or []}
        for path in sorted(MONITORING.iterdir()):
            if path.name != kust.name and path.name not in listed:
                problem(kust, f"{path.name} is not listed")
        for name in listed:
            if not (MONITORING / name).exists():
                problem(kust, f"{name} does not exist")


def check_autoscaling() -> None:
    dep, _ = worker_objects()
    dep_name = dig(dep, "metadata", "name")
    hpa_metric = None
    adapter_names = []
    for path in sorted(AUTOSCALING.glob("*.yaml")):
        for doc in k8s_docs(path):
            kind = doc.get("kind")
            if path.name.startswith("prometheus-adapter"):
                for r in dig(doc, "rules", "external", default=[]):
                    adapter_names.append(dig(r, "name", "as"))
                    q = str(r.get("metricsQuery", ""))
                    if "<<.LabelMatchers>>" not in q:
                        problem(path, "metricsQuery should limit itself with <<.LabelMatchers>>")
                    q = q.replace(",<<.LabelMatchers>>", "").replace("<<.LabelMatchers>>", "")
                    promtool_check(path, [(str(dig(r, "name", "as")), q)])
                continue
            if dig(doc, "metadata", "labels", "app.kubernetes.io/name") != "envshare":
                problem(path, f"{kind}: label app.kubernetes.io/name should be envshare")
            target = dig(doc, "spec", "scaleTargetRef", default={})
            if target.get("kind", "Deployment") != "Deployment" or target.get("name") != dep_name:
                problem(path, f"{kind}: scaleTargetRef should be the Deployment {dep_name}")
            if kind == "ScaledObject":
                if doc.get("apiVersion") != "keda.sh/v1alpha1":
                    problem(path, "ScaledObject: apiVersion should be keda.sh/v1alpha1")
                lo, hi = dig(doc, "spec", "minReplicaCount"), dig(doc, "spec", "maxReplicaCount")
                if not isinstance(lo, int) or lo < 1:
                    problem(path, "minReplicaCount must be at least 1: the workers export the metric")
                if not isinstance(hi, int) or (isinstance(lo, int) and hi < lo):
                    problem(path, "maxReplicaCount must be an integer >= minReplicaCount")
                triggers = dig(doc, "spec", "triggers", default=[])
                if not triggers:
                    problem(path, "no triggers")
                for t in triggers:
                    meta = t.get("metadata") or {}
                    if t.get("type") != "prometheus":
                        problem(path, f"trigger type {t.get('type')!r}: expected prometheus")
                    for k in ("serverAddress", "query", "threshold"):
                        if not meta.get(k):
                            problem(path, f"trigger: metadata.{k} is missing")
                    for k in ("threshold", "activationThreshold"):
                        if k in meta:
                            try:
                                float(str(meta[k]))
                            except ValueError:
                                problem(path, f"trigger: {k} {meta[k]!r} is not a number")
                            if not isinstance(meta[k], str):
                                problem(path, f"trigger: {k} must be a quoted string")
                    if meta.get("query"):
                        promtool_check(path, [("query", meta["query"])])
            elif kind == "HorizontalPodAutoscaler":
                if (dig(doc, "spec", "minReplicas") or 1) < 1:
                    problem(path, "minReplicas must be at least 1: the workers export the metric")
                for m in dig(doc, "spec", "metrics", default=[]):
                    if m.get("type") == "External":
                        hpa_metric = dig(m, "external", "metric", "name")
            else:
                problem(path, f"unexpected kind {kind}")
    if hpa_metric and hpa_metric not in adapter_names:
        problem(AUTOSCALING, f"the HPA's metric {hpa_metric} is not served by the prometheus-adapter rules")


# --- Compose ---------------------------------------------------------------------------------


def check_compose(known: set[str]) -> None:
    docs = load_yaml(COMPOSE)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        problem(COMPOSE, "expected one YAML mapping")
        return
    c = docs[0]
    services = c.get("services") or {}
    for name in ("redis", "worker", "sandbox", "import", "events"):
        if name not in services:
            problem(COMPOSE, f"missing service {name}")
    if problems and any("missing service" in p for p in problems):
        return
    for name, s in services.items():
        for dep in s.get("depends_on") or {}:
            if dep not in services:
                problem(COMPOSE, f"service {name} depends on unknown service {dep}")
        env = s.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        check_setting_names(COMPOSE, env, known)
        build = s.get("build")
        if build:
            context = (DEPLOY / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.exists():
                problem(COMPOSE, f"service {name}: build file {dockerfile} does not exist")
        for vol in s.get("volumes") or []:
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith("."):
                if not (DEPLOY / source).exists():
                    problem(COMPOSE, f"service {name}: bind mount {source} does not exist")
            elif source and source not in (c.get("volumes") or {}):
                problem(COMPOSE, f"service {name}: volume {source} is not declared under volumes")

    redis = services["redis"]
    if not any("redis.conf" in str(a) for a in redis.get("command") or []):
        problem(COMPOSE, "redis must start with deploy/redis.conf")
    if not any(isinstance(v, str) and v.endswith(":/data") for v in redis.get("volumes") or []):
        problem(COMPOSE, "redis must keep /data on a volume (the AOF lives there)")

    worker = services["worker"]
    if (dig(worker, "deploy", "replicas") or 1) < 2:
        problem(COMPOSE, "worker: deploy.replicas should be 2")
    if worker.get("profiles"):
        problem(COMPOSE, "worker must run without a profile")
    env = worker.get("environment") or {}
    port = parse_addr_port(COMPOSE, env.get("ENVSHARE_HTTP_ADDR"))
    if port is not None and str(port) not in [str(p) for p in worker.get("expose") or []]:
        problem(COMPOSE, f"worker: expose does not include {port}")
    shutdown_ms = int(env.get("ENVSHARE_SHUTDOWN_TIMEOUT_MS", DEFAULT_SHUTDOWN_TIMEOUT_MS))
    grace = duration_s(worker.get("stop_grace_period", "10s"))
    if grace is None or grace * 1000 <= shutdown_ms:
        problem(COMPOSE, f"worker: stop_grace_period must exceed ENVSHARE_SHUTDOWN_TIMEOUT_MS={shutdown_ms} ms")
    if dig(worker, "depends_on", "redis", "condition") != "service_healthy":
        problem(COMPOSE, "worker should wait for redis to be healthy")

    # `envshare serve`, behind the ingress.
    serve = services.get("serve")
    if not serve:
        problem(COMPOSE, "missing service serve")
    else:
        senv = serve.get("environment") or {}
        if serve.get("profiles"):
            problem(COMPOSE, "serve must run without a profile")
        if serve.get("command") != ["serve"] or serve.get("entrypoint") != ["envshare"]:
            problem(COMPOSE, "serve must run `envshare serve`")
        if senv.get("ENVSHARE_SERVE_ADDR") != f"0.0.0.0:{SERVE_PORT}":
            problem(COMPOSE, f"serve: ENVSHARE_SERVE_ADDR should be 0.0.0.0:{SERVE_PORT}")
        if not senv.get("ENVSHARE_API_TOKEN"):
            problem(COMPOSE, "serve: a non-loopback address needs ENVSHARE_API_TOKEN")
        if serve.get("ports"):
            problem(COMPOSE, "serve: reach it through the ingress, do not publish it")
        if str(SERVE_PORT) not in str(dig(serve, "healthcheck", "test", default="")):
            problem(COMPOSE, f"serve: the healthcheck should probe port {SERVE_PORT}")
        ingress = services.get("ingress") or {}
        if "serve" not in (ingress.get("depends_on") or {}):
            problem(COMPOSE, "missing an ingress service in front of serve")
        caddyfile = DEPLOY / "Caddyfile"
        text = caddyfile.read_text() if caddyfile.exists() else ""
        if f"serve:{SERVE_PORT}" not in text or "/api/v1" not in text or "/wechat/callback" not in text:
            problem(caddyfile, f"should route /api/v1 and /wechat/callback to serve:{SERVE_PORT}")
        body = "\n".join(l for l in text.splitlines() if not l.strip().startswith("#"))
        if "/metrics" in body:
            problem(caddyfile, "/metrics must not be routed")

    for name in ("sandbox", "import", "events"):
        if "demo" not in (services[name].get("profiles") or []):
            problem(COMPOSE, f"service {name} belongs to the demo profile")
    sandbox_port = next(iter(services["sandbox"].get("expose") or []), None)
    base = str(env.get("ENVSHARE_WECHAT_BASE_URL", ""))
    if sandbox_port is None or f"sandbox:{sandbox_port}" not in base:
        problem(COMPOSE, "worker's default ENVSHARE_WECHAT_BASE_URL does not point at the sandbox")
    if not any("sample.csv" in str(v) for v in services["import"].get("volumes") or []):
        problem(COMPOSE, "import does not mount deploy/sample.csv")
    if services["import"].get("restart") not in (None, "no"):
        problem(COMPOSE, "import is one-shot: restart must be \"no\"")


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def check_dockerfile() -> None:
    if not DOCKERFILE.exists():
        problem(DOCKERFILE, "missing")
        return
    ins = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    froms = [i for i, (w, _) in enumerate(ins) if w == "FROM"]
    if len(froms) < 2:
        problem(DOCKERFILE, "expected a multi-stage build (two FROM lines or more)")
        return
    args = {}
    for w, rest in ins[: froms[0]]:
        if w == "ARG":
            k, _, v = rest.partition("=")
            args[k] = v

    def expand(s: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), s)

    first = expand(ins[froms[0]][1]).split()[0]
    last = expand(ins[froms[-1]][1]).split()[0]
    if not first.startswith("rust:"):
        problem(DOCKERFILE, f"the builder should start FROM the official rust image, not {first}")
    if not re.match(r"^debian:[\w.-]*-slim$", last):
        problem(DOCKERFILE, f"the runtime should be a debian slim image, not {last}")
    if "$" in first + last:
        problem(DOCKERFILE, "a FROM uses an ARG that has no default")

    final = ins[froms[-1] :]
    words = [w for w, _ in final]
    users = [rest for w, rest in final if w == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem(DOCKERFILE, "the runtime stage must end as a non-root USER")
    health = [rest for w, rest in final if w == "HEALTHCHECK"]
    if not health or "/healthz" not in health[-1]:
        problem(DOCKERFILE, "the runtime stage needs a HEALTHCHECK on /healthz")
    runs = " ".join(rest for w, rest in final if w == "RUN")
    for tool in ("curl", "wget"):
        if health and re.search(rf"\b{tool}\b", health[-1]) and tool not in runs:
            problem(DOCKERFILE, f"HEALTHCHECK uses {tool}, which the runtime stage never installs")
    if "ca-certificates" not in runs:
        problem(DOCKERFILE, "the runtime stage does not install ca-certificates (WeChat is HTTPS)")
    entry = [rest for w, rest in final if w == "ENTRYPOINT"]
    if not entry or entry[-1] != '["envshare-worker"]':
        problem(DOCKERFILE, 'ENTRYPOINT should be ["envshare-worker"] (exec form, so SIGTERM reaches it)')
    envs = " ".join(rest for w, rest in final if w == "ENV")
    if f"ENVSHARE_HTTP_ADDR=0.0.0.0:{HTTP_PORT}" not in envs:
        problem(DOCKERFILE, f"the runtime stage should set ENVSHARE_HTTP_ADDR=0.0.0.0:{HTTP_PORT}")
    if not any(w == "EXPOSE" and str(HTTP_PORT) in rest for w, rest in final):
        problem(DOCKERFILE, f"the runtime stage should EXPOSE {HTTP_PORT}")
    copies = " ".join(rest for w, rest in final if w == "COPY")
    copied = {Path(t).name for t in re.findall(r"[\w./-]+", copies)}
    for binary in ("envshare-worker", "envshare"):
        if binary not in copied:
            problem(DOCKERFILE, f"the runtime stage does not copy the {binary} binary")
    if "STOPSIGNAL" in words and "SIGTERM" not in " ".join(r for w, r in final if w == "STOPSIGNAL"):
        problem(DOCKERFILE, "STOPSIGNAL must be SIGTERM: the worker shuts down gracefully on it")

    # Every workspace member's manifest is copied before the dependency build, and every
    # source tree after it; a member added to Cargo.toml and not here breaks the image.
    workspace = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    members = re.search(r"members\s*=\s*\[([^\]]*)\]", workspace)
    builder_copies = [rest for w, rest in ins[: froms[-1]] if w == "COPY"]
    for member in re.findall(r'"([^"]+)"', members.group(1) if members else ""):
        if not any(c.split()[0] == f"{member}/Cargo.toml" for c in builder_copies):
            problem(DOCKERFILE, f"workspace member {member}: its Cargo.toml is not copied for the dependency layer")
        if not any(c.split()[0] == member for c in builder_copies):
            problem(DOCKERFILE, f"workspace member {member}: its sources are not copied")
    for c in builder_copies:
        if c.startswith("--"):
            continue
        for src in c.split()[:-1]:
            if not (ROOT / src).exists():
                problem(DOCKERFILE, f"COPY {src}: no such path in the build context")

    ignore = ROOT / ".dockerignore"
    if not ignore.exists():
        problem(ignore, "missing: the build context would include target/ (gigabytes)")
    else:
        patterns = [l.strip() for l in ignore.read_text(encoding="utf-8").splitlines()]
        if "target" not in patterns and "/target" not in patterns:
            problem(ignore, "does not exclude target")
        for needed in ("Cargo.toml", "Cargo.lock", "shared", "worker", "producer-cli"):
            if needed in patterns:
                problem(ignore, f"excludes {needed}, which the build needs")


# --- redis.conf ------------------------------------------------------------------------------

REQUIRED_REDIS = {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_redis_conf() -> None:
    if not REDIS_CONF.exists():
        problem(REDIS_CONF, "missing")
        return
    directives = {}
    for line in REDIS_CONF.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            directives[key.lower()] = value.strip().strip('"')
    for key, want in REQUIRED_REDIS.items():
        if directives.get(key) != want:
            problem(REDIS_CONF, f"{key} should be {want}, is {directives.get(key)}")
    if "dir" in directives:
        problem(REDIS_CONF, "no `dir`: the image's working directory /data is the volume")

    # Load it into a real redis-server when one is installed: catches directives that this
    # version rejects, which a text check cannot.
    server = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if not server or not cli:
        print("  (redis-server not on PATH: redis.conf checked as text only)")
        return
    with tempfile.TemporaryDirectory(prefix="envshare-redis-conf-") as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [server, str(REDIS_CONF), "--port", str(port), "--bind", "127.0.0.1",
             "--dir", tmp, "--save", "", "--daemonize", "no"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            got = {}
            for _ in range(50):
                if proc.poll() is not None:
                    break
                r = subprocess.run([cli, "-p", str(port), "ping"], capture_output=True, text=True)
                if r.stdout.strip() == "PONG":
                    for key in REQUIRED_REDIS:
                        out = subprocess.run([cli, "-p", str(port), "config", "get", key],
                                             capture_output=True, text=True).stdout.split()
                        got[key] = out[1] if len(out) > 1 else None
                    break
                time.sleep(0.1)
            if proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                problem(REDIS_CONF, "redis-server refused it:\n" + output.strip())
            elif not got:
                problem(REDIS_CONF, "redis-server did not answer within 5 s")
            for key, want in REQUIRED_REDIS.items():
                if got and got.get(key) != want:
                    problem(REDIS_CONF, f"redis-server runs with {key}={got.get(key)}, expected {want}")
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


# --- sample.csv ------------------------------------------------------------------------------


def check_sample() -> None:
    if not SAMPLE.exists():
        problem(SAMPLE, "missing")
        return
    with SAMPLE.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != ["env", "appid"]:
        problem(SAMPLE, "the header must be env,appid")
        return
    if len(rows) < 2:
        problem(SAMPLE, "no rows")
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not ENV.match(row[0]) or not APPID.match(row[1]):
            problem(SAMPLE, f"line {n}: not a valid env,appid pair: {','.join(row)}")


def main() -> int:
    os.chdir(ROOT)
    known = known_settings()
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        load_yaml(path)
    checks = [("kubernetes manifests", lambda: check_k8s(known)),
              ("monitoring (rules, ServiceMonitor, dashboard)", check_monitoring),
              ("autoscaling (KEDA, HPA, prometheus-adapter)", check_autoscaling),
              ("compose file", lambda: check_compose(known)),
              ("Dockerfile", check_dockerfile),
              ("redis.conf", check_redis_conf),
              ("sample.csv", check_sample)]
    for name, check in checks:
        before = len(problems)
        check()
        print(f"  structure: {name}: {'ok' if len(problems) == before else 'PROBLEMS'}")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
