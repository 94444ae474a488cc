#!/bin/bash
# setup-ort.sh DIR: install onnxruntime-node (pinned) into DIR/node_modules for the
# ONNX Runtime conformance tests (ort_run.js), and check that it loads.
# Idempotent: a fast no-op when DIR already holds a working install of the pinned
# version. Safe to call from parallel test processes (flock on DIR/.lock).
# npm runs with --ignore-scripts: the CPU binaries ship inside the package; the
# install script would only fetch optional GPU providers (and needs the network).
# Needs node + npm and, for a fresh install, the npm registry.
set -euo pipefail
ORT_VERSION=1.30.0
dir=${1:?usage: setup-ort.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
stamp=$dir/.onnxruntime-node-$ORT_VERSION.ok
# npm needs a writable cache: use one inside DIR when HOME is unset or read-only
if [ -z "${HOME:-}" ] || [ ! -w "$HOME" ]; then export npm_config_cache=$dir/.npm-cache; fi

check() {  # (telemetry off: ORT 1.30 would leave /tmp/mat-debug-PID.log and ~/.cache files)
    (cd "$dir" && ORT_DISABLE_TELEMETRY=1 node -e "
        const o = require('onnxruntime-node');
        if (o.env.versions.node !== '$ORT_VERSION') throw new Error('version ' + o.env.versions.node);
        if (!o.listSupportedBackends().some(b => b.name === 'cpu')) throw new Error('no cpu backend');
    ") 2>&1
}

# fast path, no lock needed: stamp written only after a verified install
[ -f "$stamp" ] && exit 0

exec 9>"$dir/.lock"
flock 9
[ -f "$stamp" ] && exit 0
if ! check >/dev/null; then
    echo "setup-ort: installing onnxruntime-node@$ORT_VERSION into $dir" >&2
    [ -f "$dir/package.json" ] || echo '{ "private": true, "name": "graft-ort", "version": "0.0.0" }' > "$dir/package.json"
    (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error \
        "onnxruntime-node@$ORT_VERSION" >&2)
    if ! err=$(check); then
        echo "setup-ort: onnxruntime-node@$ORT_VERSION does not load from $dir: $err" >&2
        exit 1
    fi
fi
touch "$stamp"
