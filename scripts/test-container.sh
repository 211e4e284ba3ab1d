#!/usr/bin/env bash
# Builds the container image (Dockerfile, CPU variant) and checks it from outside: the server in
# the image, started by the image's own ENTRYPOINT and CMD, serves a model from a mounted /models,
# answers a completion, a stream, /metrics and its HEALTHCHECK, and drains on SIGTERM (exit 0).
# Not part of .ci/run: a cold build compiles the project inside the image (docs/deploy.md).
#
# Engines: docker or podman when they can run containers (ports published); otherwise podman
# builds with chroot isolation and buildah runs the server in the host's network namespace (for
# machines whose kernel settings refuse `podman run`). Base images are pulled, or made from the
# Debian mirror (scripts/make-base-image.sh) when no registry answers.
#
# Environment: CONTAINER_ENGINE (docker or podman; default: detected), IMAGE (default
# localhost/switchyard:latest), PRESET (default tiny-qwen3-moe).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-localhost/switchyard:latest}
preset=${PRESET:-tiny-qwen3-moe}

log() { echo "test-container: $*"; }
fail() { echo "test-container: FAIL: $*" >&2; exit 1; }

engine=${CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null; then
    engine=podman
  else
    fail "neither a running docker nor podman (scripts/install-container-tools.sh installs podman)"
  fi
fi

# Base images: present, pulled, or (podman) made from the Debian mirror.
for base in debian:bookworm debian:bookworm-slim; do
  if $engine image inspect "$base" >/dev/null 2>&1; then continue; fi
  if timeout 120 $engine pull -q "$base" >/dev/null 2>&1; then continue; fi
  [[ $engine == podman ]] || fail "cannot pull $base"
  log "no registry answers: making the base images from the Debian mirror"
  bash scripts/make-base-image.sh
  break
done

# How containers run here: `run` (docker, or podman where the kernel lets it), or buildah with
# chroot isolation.
mode=run
build_options=()
if [[ $engine == podman ]] &&
  ! podman run --rm --pull=never debian:bookworm-slim true >/dev/null 2>&1; then
  command -v buildah >/dev/null || fail "podman cannot run containers here and buildah is missing"
  mode=buildah
  build_options=(--isolation chroot)
fi
if [[ $engine == podman ]]; then build_options+=(--format docker); fi  # keeps the HEALTHCHECK
log "engine $engine, containers via $mode"

build_log=/tmp/switchyard-image-build.log
start=$SECONDS
nice -n 10 $engine build "${build_options[@]}" -t "$image" . >"$build_log" 2>&1 ||
  { tail -n 40 "$build_log"; fail "image build (log: $build_log)"; }
size=$($engine image inspect --format '{{.Size}}' "$image")
log "image built in $((SECONDS - start)) s; size $size bytes"

inspect() { $engine image inspect --format "{{json .Config.$1}}" "$image"; }
json() { python3 -c "import json, sys; v = json.load(sys.stdin); print($1)"; }  # EXPR of v
[[ $(inspect User) == '"65532:65532"' ]] || fail "image user is $(inspect User), not 65532:65532"
read -r -a entrypoint < <(inspect Entrypoint | json '*v')
[[ ${entrypoint[*]} == /usr/local/bin/switchyard ]] || fail "ENTRYPOINT is ${entrypoint[*]}"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

workdir=$(mktemp -d)
name=switchyard-test-$$
server_pid=""
port=""
# chroot isolation shares the host's PID namespace: the server is the process on its port.
listener_pid() { ss -ltnpH "sport = :$port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1; }
cleanup() {
  if [[ $mode == run ]]; then
    $engine rm -f "$name" >/dev/null 2>&1 || true
  else
    if [[ -n $server_pid ]]; then
      pid=$(listener_pid)
      if [[ -n $port && -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; fi
      kill "$server_pid" 2>/dev/null || true
    fi
    if [[ -n ${ctr:-} ]]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
  fi
  rm -rf "$workdir"
}
trap cleanup EXIT

# The model, written by the image itself (as root: the host directory is root's) into a host
# directory that is then mounted read-only at /models, where the default CMD looks (/models/model).
# A longer context than the preset's, so that a stream lasts long enough to be drained.
models=$workdir/models
mkdir -p "$models"
make_model=(make-model --preset "$preset" --set max_position_embeddings=16384 --out /models/model)
if [[ $mode == run ]]; then
  $engine run --rm --user 0 -v "$models:/models" "$image" "${make_model[@]}" \
    >"$workdir/make-model.log" 2>&1 || { cat "$workdir/make-model.log"; fail "make-model"; }
else
  ctr=$(buildah from --pull=never "$image")
  buildah run --isolation chroot --user 0 -v "$models:/models" "$ctr" -- \
    "${entrypoint[@]}" "${make_model[@]}" \
    >"$workdir/make-model.log" 2>&1 || { cat "$workdir/make-model.log"; fail "make-model"; }
fi
chmod -R a+rX "$models"
log "model: preset $preset in $models"

# The server: the image's CMD unchanged (docker/podman run), or (buildah, host network) the CMD
# with free ports in place of 8000 and 50051.
server_log=$workdir/server.log
if [[ $mode == run ]]; then
  $engine run -d --name "$name" -p "127.0.0.1::8000" -v "$models:/models:ro" "$image" >/dev/null
  port=$($engine port "$name" 8000/tcp | head -n1 | sed 's/.*://')
  healthcheck_prefix=($engine exec "$name")
else
  port=$(free_port)
  grpc_port=$(free_port)
  read -r -a args < <(inspect Cmd | python3 -c '
import json, sys
args = json.load(sys.stdin)
ports = {"--port": sys.argv[1], "--grpc-port": sys.argv[2]}
for i, a in enumerate(args[:-1]):
    if a in ports: args[i + 1] = ports[a]
print(*args)' "$port" "$grpc_port")
  buildah run --isolation chroot -v "$models:/models:ro" "$ctr" -- \
    "${entrypoint[@]}" "${args[@]}" >"$server_log" 2>&1 &
  server_pid=$!
  healthcheck_prefix=(buildah run --isolation chroot --env "SWITCHYARD_HEALTH_PORT=$port"
    "$ctr" --)
fi
url=http://127.0.0.1:$port
log "server on $url"

for _ in $(seq 1 120); do
  if curl -fsS "$url/health/ready" >/dev/null 2>&1; then break; fi
  if [[ $mode == buildah ]] && ! kill -0 "$server_pid" 2>/dev/null; then
    cat "$server_log"; fail "server exited before it was ready"
  fi
  sleep 1
done
curl -fsS "$url/health/ready" >/dev/null || fail "not ready after 120 s"
log "ready"

# The image's HEALTHCHECK command, run inside the container.
inspect Healthcheck.Test | json '"\0".join(v[1:]) if v[0] == "CMD" else sys.exit(v)' |
  head -c -1 >"$workdir/healthcheck"
mapfile -d '' -t healthcheck <"$workdir/healthcheck"
"${healthcheck_prefix[@]}" "${healthcheck[@]}" ||
  fail "the image's HEALTHCHECK fails on a ready server"
log "HEALTHCHECK passes"

model=$(curl -fsS "$url/v1/models" | json 'v["data"][0]["id"]')
completion=$(curl -fsS "$url/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"prompt\": \"The capital of France is\", \"max_tokens\": 8}")
python3 -c '
import json, sys
r = json.loads(sys.argv[1])
c = r["choices"][0]
assert c["finish_reason"] in ("length", "stop"), r
assert r["usage"]["completion_tokens"] >= 1, r' "$completion" || fail "completion: $completion"
log "completion: usage $(json 'json.dumps(v["usage"])' <<<"$completion")"

stream=$(curl -fsSN "$url/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"prompt\": \"Once upon a time\", \"max_tokens\": 8,
       \"stream\": true}")
chunks=$(grep -c '^data: {' <<<"$stream" || true)
grep -q '^data: \[DONE\]' <<<"$stream" && ((chunks >= 1)) || fail "stream: $stream"
log "stream: $chunks chunks and [DONE]"

metrics=$(curl -fsS "$url/metrics")
grep -Eq '^vllm:generation_tokens_total(\{[^}]*\})? [1-9]' <<<"$metrics" ||
  fail "/metrics has no generation tokens counted"
log "/metrics: $(grep -E '^vllm:generation_tokens_total' <<<"$metrics" | head -n1)"

# SIGTERM with a stream in flight (started, not finished): readiness turns 503 and the
# HEALTHCHECK fails while it drains, the stream still completes, and the server exits 0.
inflight=$workdir/inflight
curl -fsSN "$url/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"model\": \"$model\", \"prompt\": \"Count:\", \"max_tokens\": 8000, \"ignore_eos\": true,
       \"stream\": true}" >"$inflight" 2>&1 &
inflight_pid=$!
for _ in $(seq 1 100); do
  if grep -q '^data: {' "$inflight"; then break; fi
  sleep 0.1
done
kill -0 "$inflight_pid" 2>/dev/null || fail "the stream ended before SIGTERM"
if [[ $mode == run ]]; then
  $engine kill --signal TERM "$name" >/dev/null
else
  pid=$(listener_pid)
  [[ -n $pid ]] || fail "no process listens on $port"
  kill -TERM "$pid"
fi
sleep 0.5
kill -0 "$inflight_pid" 2>/dev/null || fail "the stream ended too soon to observe the drain"
ready=$(curl -s -o /dev/null -w '%{http_code}' "$url/health/ready" || true)
[[ $ready == 503 ]] || fail "/health/ready answers $ready while draining, not 503"
if "${healthcheck_prefix[@]}" "${healthcheck[@]}" 2>/dev/null; then
  fail "the HEALTHCHECK passes while draining"
fi
log "draining: /health/ready 503, HEALTHCHECK fails"
if [[ $mode == run ]]; then
  rc=$($engine wait "$name")
  $engine logs "$name" >"$server_log" 2>&1
else
  rc=0
  wait "$server_pid" || rc=$?
  server_pid=""
fi
wait "$inflight_pid" || fail "the in-flight stream failed: $(tail -c 300 "$inflight")"
grep -q '^data: \[DONE\]' "$inflight" || fail "in-flight stream cut: $(tail -c 300 "$inflight")"
tokens=$(grep -c '^data: {' "$inflight" || true)
grep -q 'draining' "$server_log" || { cat "$server_log"; fail "no drain in the server log"; }
((rc == 0)) || { cat "$server_log"; fail "server exited $rc after SIGTERM"; }
log "SIGTERM: the in-flight stream completed ($tokens chunks), drained, exit 0"
log "PASS"
