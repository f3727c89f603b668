#!/usr/bin/env bash
# Proof that the one image serves both runtimes, built and run on this machine WITHOUT a registry:
#   1. Debian's docker.io daemon on a private socket (no iptables, no bridge, vfs storage);
#   2. a base image made with debootstrap (bookworm minbase + python3 3.11), passed as BASE_IMAGE;
#   3. the wheels built on the host (pip wheel) so the image build itself runs with --network none;
#   4. a Batch-style run: the container command is the subcommand, over a lake mounted read-only,
#      with no network at all;
#   5. a Lambda-style run: the real runtime client (awslambdaric) in the container against the
#      local Runtime API stub on the host (condvest.aws.runtime_stub): one success, one raised error.
# Slow (minutes; debootstrap and the vfs driver copy whole layers), so not part of the test suite.
#
# Usage: scripts/image-proof.sh            (as root; needs apt for docker.io and debootstrap)
#   BATCH_CMD="consolidate --dry-run" scripts/image-proof.sh   # the Batch command to run
#   PROOF_DIR=/tmp/condvest-proof (work dir, kept between runs: the base rootfs is reused)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PROOF_DIR=${PROOF_DIR:-/tmp/condvest-proof}
BATCH_CMD=${BATCH_CMD:-consolidate --dry-run}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
IMAGE=${IMAGE:-condvest:proof}
BASE=condvest-base:bookworm
STUB_PORT=${STUB_PORT:-9071}
SOCK=$PROOF_DIR/docker.sock

step() { printf '\n== %s\n' "$*"; }
mkdir -p "$PROOF_DIR"

step "tools"
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap
fi
# The Debian client matches the Debian daemon (another docker client may sit earlier on PATH).
DOCKER_BIN=/usr/bin/docker
[ -x "$DOCKER_BIN" ] || DOCKER_BIN=$(command -v docker)
docker_() { DOCKER_BUILDKIT=0 "$DOCKER_BIN" -H "unix://$SOCK" "$@"; }
dockerd --version

step "dockerd on a private socket ($SOCK)"
STARTED_DOCKERD=""
if ! docker_ version >/dev/null 2>&1; then
    dockerd --host "unix://$SOCK" --data-root "$PROOF_DIR/docker-root" \
        --exec-root "$PROOF_DIR/docker-exec" --pidfile "$PROOF_DIR/docker.pid" \
        --iptables=false --ip-masq=false --bridge=none --storage-driver=vfs \
        >"$PROOF_DIR/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    for _ in $(seq 1 60); do docker_ version >/dev/null 2>&1 && break; sleep 1; done
fi
STUB_PID=""
cleanup() {
    [ -n "$STUB_PID" ] && kill "$STUB_PID" 2>/dev/null || true
    if [ -n "$STARTED_DOCKERD" ]; then
        kill "$STARTED_DOCKERD" 2>/dev/null || true
        wait "$STARTED_DOCKERD" 2>/dev/null || true
    fi
}
trap cleanup EXIT
docker_ version --format 'daemon {{.Server.Version}}, storage driver vfs'

step "base image $BASE (debootstrap bookworm minbase + python3)"
if ! docker_ image inspect "$BASE" >/dev/null 2>&1; then
    if [ ! -x "$PROOF_DIR/rootfs/usr/bin/python3" ]; then
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$PROOF_DIR/rootfs" http://deb.debian.org/debian >"$PROOF_DIR/debootstrap.log"
    fi
    # Trim what an image never needs (apt lists, docs, caches) before importing.
    rm -rf "$PROOF_DIR"/rootfs/var/lib/apt/lists/* "$PROOF_DIR"/rootfs/var/cache/apt/*.bin \
        "$PROOF_DIR"/rootfs/usr/share/doc/* "$PROOF_DIR"/rootfs/usr/share/man/*
    tar -C "$PROOF_DIR/rootfs" -c . | docker_ import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
fi
docker_ run --rm --network none "$BASE" python3 --version

step "wheelhouse on the host (the build runs with --network none)"
rm -rf "$REPO/wheelhouse"
"$PYTHON" -m pip wheel -q --wheel-dir "$REPO/wheelhouse" "$REPO[aws]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
ls "$REPO/wheelhouse" | wc -l | xargs printf '%s wheels\n'

step "build $IMAGE (BASE_IMAGE=$BASE)"
start=$(date +%s)
docker_ build --network none --build-arg "BASE_IMAGE=$BASE" -t "$IMAGE" "$REPO" \
    >"$PROOF_DIR/build.log" 2>&1 || { tail -30 "$PROOF_DIR/build.log"; exit 1; }
echo "built in $(( $(date +%s) - start ))s"
size=$(docker_ image inspect "$IMAGE" --format '{{.Size}}')
base_size=$(docker_ image inspect "$BASE" --format '{{.Size}}')
echo "image size: $(( size / 1000000 )) MB (base $(( base_size / 1000000 )) MB," \
    "condvest layers $(( (size - base_size) / 1000000 )) MB)"
echo "user: $(docker_ image inspect "$IMAGE" --format '{{.Config.User}}')"

step "a small lake (3 symbols x 2 pending sessions) for the runs"
rm -rf "$PROOF_DIR/lake"
"$PYTHON" - "$PROOF_DIR/lake" <<'PY'
import sys
from datetime import UTC, date, datetime

import pyarrow as pa

from condvest.core import layout
from condvest.core.schema import BRONZE_SCHEMA
from condvest.storage import LocalStorage

storage = LocalStorage(sys.argv[1])
for symbol in ("AAPL", "MSFT", "INF"):
    for day in (date(2026, 11, 23), date(2026, 11, 24)):
        row = {name: [None] for name in BRONZE_SCHEMA.names}
        row.update(symbol=[symbol], date=[day], open=[1.0], high=[2.0], low=[0.5], close=[1.5],
                   volume=[1000.0], fetched_at=[datetime.now(UTC)], source=["proof"])
        table = pa.table({k: row[k] for k in BRONZE_SCHEMA.names}, schema=BRONZE_SCHEMA)
        storage.write_parquet(layout.date_file(symbol, day), table)
PY
chmod -R a+rX "$PROOF_DIR/lake"

step "Batch: condvest --output json $BATCH_CMD (no network, lake mounted read-only)"
# shellcheck disable=SC2086  # BATCH_CMD is a command line: split it into words
docker_ run --rm --network none -v "$PROOF_DIR/lake:/lake:ro" -e CONDVEST_LAKE__URI=/lake \
    "$IMAGE" --output json $BATCH_CMD >"$PROOF_DIR/batch.out" 2>"$PROOF_DIR/batch.err"
echo "exit 0; stdout:"
cut -c1-600 "$PROOF_DIR/batch.out"
echo "stderr (JSON log lines): $(wc -l <"$PROOF_DIR/batch.err") lines"

step "Lambda: awslambdaric in the container, Runtime API stub on 127.0.0.1:$STUB_PORT"
"$PYTHON" -m condvest.aws.runtime_stub --port "$STUB_PORT" --timeout-ms 120000 \
    --event '{"command": "status"}' \
    --event '{"command": "status", "args": {"check": true}}' >"$PROOF_DIR/stub.out" 2>&1 &
STUB_PID=$!
sleep 1
# Like Lambda: read-only root file system, writable /tmp only, an unprivileged user.
docker_ run --rm --network host --read-only --tmpfs /tmp:rw,exec,mode=1777 --user 993:993 \
    -v "$PROOF_DIR/lake:/tmp/lake:ro" -e CONDVEST_LAKE__URI=/tmp/lake \
    -e "AWS_LAMBDA_RUNTIME_API=127.0.0.1:$STUB_PORT" "$IMAGE" \
    >"$PROOF_DIR/lambda.log" 2>&1 &
RUNTIME_PID=$!
stub_rc=0
wait "$STUB_PID" || stub_rc=$?
STUB_PID=""
# The stub has stopped, so the runtime's next poll fails and the container exits by itself.
wait "$RUNTIME_PID" || true
echo "stub exit $stub_rc (1 = an error outcome was received, as intended); outcomes:"
"$PYTHON" - "$PROOF_DIR/stub.out" <<'PY'
import json
import sys

for line in open(sys.argv[1]):
    item = json.loads(line)
    if "kind" not in item:
        print(" ", line.strip())
        continue
    body = item["body"]
    if item["kind"] == "response":
        shown = {k: body.get(k) for k in ("stage", "ok", "lake", "continue")}
        shown["pending_date_files"] = body.get("bronze", {}).get("pending_date_files")
    else:
        shown = {k: body.get(k) for k in ("errorType", "errorMessage")}
    print(f"  {json.dumps(item['event'])} -> {item['kind']}: {json.dumps(shown)}")
PY
kinds=$(grep -o '"kind": "[a-z_]*"' "$PROOF_DIR/stub.out" | tr '\n' ' ')
if [ "$kinds" != '"kind": "response" "kind": "error" ' ]; then
    echo "FAILED: expected one response then one error, got: $kinds"
    tail -20 "$PROOF_DIR/lambda.log"
    exit 1
fi
step "OK: one image, Batch and Lambda runtimes both work (image $(( size / 1000000 )) MB)"
