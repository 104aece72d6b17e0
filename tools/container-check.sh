#!/usr/bin/env bash
# Builds the container image from the Dockerfile and checks it end to end, with buildah and podman
# (no Docker daemon needed):
#
#   1. installs buildah, podman, runc, curl and jq with apt-get if any is missing;
#   2. makes sure the base image node:20-bookworm-slim exists: pulls it, or, where no container
#      registry can be reached, builds an equivalent one from Debian packages (debootstrap) and this
#      machine's Node.js 20;
#   3. builds the image;
#   4. runs it on a free port with host networking, waits for /health, checks /ready, sends a
#      completion and checks the answer, checks that the server runs as a non-root user and that the
#      healthcheck passes;
#   5. stops it with SIGTERM (podman stop) while a stream is in flight and checks that /ready turns
#      503, the stream finishes and the server exits with status 0;
#   6. runs it again with a model mounted at /models (ORTSERVE_MODEL) and a read-only root
#      filesystem, and sends a completion;
#   7. prints a PASS/FAIL summary; the exit status is 0 only when every check passed.
#
# Run as root from anywhere in the repository:
#
#   sudo tools/container-check.sh 2>&1 | tee container-check.log
#
# Settings (environment):
#   IMAGE            tag to build                                    (ortserve:check)
#   BASE_SOURCE      auto | pull | debootstrap: how to get the base   (auto: pull, else debootstrap)
#   DEBIAN_MIRROR    mirror for debootstrap                           (http://deb.debian.org/debian)
#   STARTUP_TIMEOUT  seconds to wait for /health                      (180)
#   STOP_TIMEOUT     seconds podman stop waits before SIGKILL         (45; above the 30 s shutdown grace)
#   KEEP_IMAGE       1: keep the built image afterwards               (1)
#   BUILD_CA_FILE    extra CA certificates (PEM) npm trusts during the build, for networks whose
#                    proxy re-signs TLS; mounted for the build only, not stored in the image
#                    (default: $NODE_EXTRA_CA_CERTS, or npm's cafile setting, when set)
#
# Not part of npm test.
set -euo pipefail

cd "$(dirname "$0")/.."
REPO_ROOT=$(pwd)

IMAGE=${IMAGE:-ortserve:check}
BASE_IMAGE=docker.io/library/node:20-bookworm-slim
BASE_SOURCE=${BASE_SOURCE:-auto}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-180}
STOP_TIMEOUT=${STOP_TIMEOUT:-45}
KEEP_IMAGE=${KEEP_IMAGE:-1}
MODEL_ID=tinystories-gpt2
CONTAINER=ortserve-check-$$

WORK=$(mktemp -d /tmp/ortserve-check.XXXXXX)
CONTAINER_LOG=$WORK/container.log
PODMAN_PID=

# ---------------------------------------------------------------------------------------------------
# Reporting

RESULTS=()
FAILED=0
STEP=start

step() {
  STEP=$1
  printf '\n==> %s\n' "$1"
}
pass() {
  RESULTS+=("PASS  $1")
  printf 'PASS  %s\n' "$1"
}
fail() {
  RESULTS+=("FAIL  $1")
  FAILED=1
  printf 'FAIL  %s\n' "$1"
}
# Fails the check and stops: later steps depend on this one.
die() {
  fail "$1"
  exit 1
}

show_container_log() {
  if [[ -s $CONTAINER_LOG ]]; then
    printf -- '--- container output (last 40 lines) ---\n'
    tail -n 40 "$CONTAINER_LOG"
    printf -- '--- end of container output ---\n'
  fi
}

finish() {
  local status=$?
  set +e
  if podman container exists "$CONTAINER" 2>/dev/null; then
    podman --runtime runc rm -f "$CONTAINER" >/dev/null 2>&1
  fi
  if [[ -n $PODMAN_PID ]]; then wait "$PODMAN_PID" 2>/dev/null; fi
  if [[ $status -ne 0 && $FAILED -eq 0 ]]; then
    RESULTS+=("FAIL  aborted during: $STEP (exit status $status)")
    FAILED=1
  fi
  if [[ $FAILED -ne 0 ]]; then show_container_log; fi
  if [[ $KEEP_IMAGE != 1 ]]; then podman rmi -f "$IMAGE" >/dev/null 2>&1; fi
  rm -rf "$WORK"
  printf '\n==================== container check summary ====================\n'
  printf '%s\n' "${RESULTS[@]}"
  if [[ $FAILED -eq 0 ]]; then
    printf 'RESULT: PASS\n'
    exit 0
  fi
  printf 'RESULT: FAIL\n'
  exit 1
}
trap finish EXIT

# ---------------------------------------------------------------------------------------------------
# Tools

step "tools"
if [[ $(id -u) -ne 0 ]]; then
  die "must run as root (buildah and podman run rootful here): sudo $0"
fi

# podman and buildah read this instead of the system containers.conf: no default ulimits, which
# some kernels and VMs refuse to apply to containers.
export CONTAINERS_CONF=$WORK/containers.conf
printf '[containers]\ndefault_ulimits = []\n' >"$CONTAINERS_CONF"

missing=()
for tool in buildah podman runc curl jq; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
echo "buildah $(buildah --version | awk '{print $3}'), podman $(podman --version | awk '{print $3}'), $(runc --version | head -n 1)"
pass "tools present (buildah, podman, runc, curl, jq)"

# ---------------------------------------------------------------------------------------------------
# Base image

# A stand-in for node:20-bookworm-slim: Debian bookworm (minbase) with this machine's Node.js 20
# binary and npm in /usr/local, and the `node` user (uid 1000), as in the official image.
make_base_image() {
  local node_bin npm_dir version rootfs
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "installing: debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap
  fi
  node_bin=$(command -v node) || die "building the base image needs Node.js 20 on this machine (node not found)"
  node_bin=$(readlink -f "$node_bin")
  version=$("$node_bin" --version)
  [[ $version == v20.* ]] || die "building the base image needs Node.js 20 on this machine (found $version)"
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  [[ -f $npm_dir/package.json ]] || die "npm's package directory not found (looked in $npm_dir)"

  rootfs=$WORK/rootfs
  echo "debootstrap --variant=minbase bookworm ($DEBIAN_MIRROR)"
  debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 20 "$WORK/debootstrap.log"
    die "debootstrap failed"
  }
  install -D -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules"
  cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  echo 'node:x:1000:' >>"$rootfs/etc/group"
  echo 'node:!::' >>"$rootfs/etc/gshadow"
  echo 'node:x:1000:1000::/home/node:/bin/bash' >>"$rootfs/etc/passwd"
  echo 'node:*:19000:0:99999:7:::' >>"$rootfs/etc/shadow"
  install -d -o 1000 -g 1000 -m 0755 "$rootfs/home/node"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  env -u NODE_EXTRA_CA_CERTS chroot "$rootfs" /usr/local/bin/node --version >/dev/null ||
    die "node does not run inside the base image"
  env -u NODE_EXTRA_CA_CERTS chroot "$rootfs" /usr/local/bin/npm --version >/dev/null ||
    die "npm does not run inside the base image"

  tar -C "$rootfs" --numeric-owner -cf - . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=${version#v}" \
    --change 'CMD ["node"]' \
    --message "Debian bookworm minbase with Node.js $version (stand-in for node:20-bookworm-slim)" \
    - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

step "base image $BASE_IMAGE"
if podman image exists "$BASE_IMAGE"; then
  echo "present: $(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" | cut -c1-12)"
else
  pulled=0
  if [[ $BASE_SOURCE == auto || $BASE_SOURCE == pull ]]; then
    if timeout 600 podman pull -q "$BASE_IMAGE"; then
      pulled=1
    elif [[ $BASE_SOURCE == pull ]]; then
      die "cannot pull $BASE_IMAGE"
    else
      echo "cannot pull $BASE_IMAGE: building it from Debian packages instead"
    fi
  fi
  if [[ $pulled -eq 0 ]]; then make_base_image; fi
fi
base_node=$(podman --runtime runc run --rm --network host "$BASE_IMAGE" node --version) ||
  die "node does not run in $BASE_IMAGE"
pass "base image $BASE_IMAGE (node $base_node)"

# ---------------------------------------------------------------------------------------------------
# Build

step "build $IMAGE"
# --format docker: the OCI image format has no HEALTHCHECK.
build_opts=(--isolation chroot --format docker --layers --force-rm -t "$IMAGE")
# Behind a TLS-inspecting proxy npm must trust its CA: bind-mount the certificates and a global
# npmrc (prefix /usr/local) naming them into the build's RUN steps; neither ends up in the image.
ca_file=${BUILD_CA_FILE-${NODE_EXTRA_CA_CERTS:-}}
if [[ -z $ca_file && -z ${BUILD_CA_FILE+set} ]] && command -v npm >/dev/null 2>&1; then
  ca_file=$(npm config get cafile 2>/dev/null || true)
  [[ $ca_file == null || $ca_file == undefined ]] && ca_file=
fi
if [[ -n $ca_file ]]; then
  [[ -f $ca_file ]] || die "CA file $ca_file not found"
  echo "npm trusts $ca_file during the build"
  printf 'cafile=/run/build-ca/ca.crt\n' >"$WORK/npmrc"
  build_opts+=(-v "$(readlink -f "$ca_file"):/run/build-ca/ca.crt:ro" -v "$WORK/npmrc:/usr/local/etc/npmrc:ro")
fi
build_start=$(date +%s)
if ! buildah bud "${build_opts[@]}" "$REPO_ROOT"; then
  die "image build"
fi
build_seconds=$(($(date +%s) - build_start))
size_bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$(awk -v b="$size_bytes" 'BEGIN { printf "%.0f", b / 1000000 }')
pass "image built in ${build_seconds}s: $IMAGE, ${size_mb} MB"

user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
healthcheck=$(podman image inspect --format '{{if .Config.Healthcheck}}{{json .Config.Healthcheck.Test}}{{end}}' "$IMAGE")
echo "image user: '$user'"
echo "image healthcheck: $healthcheck"
if [[ -n $user && $user != 0 && $user != root && $user != 0:* && $user != root:* ]]; then
  pass "image runs as a non-root user ($user)"
else
  fail "image user is root or unset ('$user')"
fi
if [[ $healthcheck == *"/health"* ]]; then pass "image has a HEALTHCHECK on /health"; else fail "image has no HEALTHCHECK on /health"; fi

# ---------------------------------------------------------------------------------------------------
# Run

# A TCP port nothing listens on.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  return 1
}

PORT=$(free_port) || die "no free port found"
API_KEY=check-$RANDOM$RANDOM
BASE_URL=http://127.0.0.1:$PORT

step "run $IMAGE on port $PORT"
podman --runtime runc run --rm --name "$CONTAINER" --network host \
  -e PORT="$PORT" -e ORTSERVE_API_KEYS="$API_KEY" \
  "$IMAGE" >"$CONTAINER_LOG" 2>&1 &
PODMAN_PID=$!

start=$(date +%s)
until curl -fsS -o /dev/null "$BASE_URL/health" 2>/dev/null; do
  if ! kill -0 "$PODMAN_PID" 2>/dev/null; then
    wait "$PODMAN_PID" && status=0 || status=$?
    PODMAN_PID=
    die "container exited during start-up with status $status"
  fi
  if (($(date +%s) - start > STARTUP_TIMEOUT)); then die "/health did not answer within ${STARTUP_TIMEOUT}s"; fi
  sleep 1
done
pass "/health answers after $(($(date +%s) - start))s: $(curl -fsS "$BASE_URL/health")"

ready_status=$(curl -s -o "$WORK/ready.json" -w '%{http_code}' "$BASE_URL/ready" || true)
case $ready_status in
  200) pass "/ready is 200: $(cat "$WORK/ready.json")" ;;
  404) echo "note: this build has no /ready endpoint (404)" ;;
  *) fail "/ready answers $ready_status: $(cat "$WORK/ready.json")" ;;
esac

# ---------------------------------------------------------------------------------------------------
# Completion

step "completion"
request='{"model":"tinystories-gpt2","prompt":"Once upon a time","max_tokens":16}'
echo "POST /v1/completions $request"
http_status=$(curl -sS -o "$WORK/completion.json" -w '%{http_code}' \
  -H 'content-type: application/json' -H "authorization: Bearer $API_KEY" \
  -d "$request" "$BASE_URL/v1/completions" || true)
echo "HTTP $http_status"
jq . "$WORK/completion.json" 2>/dev/null || cat "$WORK/completion.json"
if [[ $http_status == 200 ]] &&
  jq -e --arg model "$MODEL_ID" '.object == "text_completion" and .model == $model
    and (.choices | length) == 1 and (.choices[0].text | type == "string" and length > 0)' \
    "$WORK/completion.json" >/dev/null; then
  pass "completion: text_completion with text $(jq -c '.choices[0].text' "$WORK/completion.json")"
else
  fail "completion: expected HTTP 200 and a text_completion with non-empty text"
fi

# The API key came from the environment: without it the API should refuse (where the build has keys).
unauth_status=$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/v1/models" || true)
case $unauth_status in
  401) pass "ORTSERVE_API_KEYS from the environment: /v1/models without a key is 401" ;;
  200) echo "note: this build does not enforce ORTSERVE_API_KEYS (/v1/models without a key is 200)" ;;
  *) fail "/v1/models without a key answers $unauth_status" ;;
esac

# ---------------------------------------------------------------------------------------------------
# Container properties

step "container"
pid1_uid=$(podman --runtime runc exec "$CONTAINER" awk '/^Uid:/ { print $2 }' /proc/1/status)
pid1_cmd=$(podman --runtime runc exec "$CONTAINER" cat /proc/1/cmdline | tr '\0' ' ')
echo "PID 1: uid $pid1_uid: $pid1_cmd"
if [[ $pid1_uid =~ ^[0-9]+$ && $pid1_uid -ne 0 ]]; then
  pass "server runs as a non-root user (uid $pid1_uid)"
else
  fail "server runs as uid '$pid1_uid'"
fi
if [[ $pid1_cmd == node* ]]; then
  pass "node is PID 1 (receives SIGTERM directly)"
else
  fail "PID 1 is not node: $pid1_cmd"
fi
if podman --runtime runc healthcheck run "$CONTAINER" >"$WORK/healthcheck.log" 2>&1; then
  pass "image HEALTHCHECK command passes"
else
  cat "$WORK/healthcheck.log"
  fail "image HEALTHCHECK command fails"
fi

# ---------------------------------------------------------------------------------------------------
# Graceful shutdown

step "stop (SIGTERM) with a stream in flight"
# A long stream (end-of-text token banned) is running when SIGTERM arrives: /ready turns 503, the
# stream still finishes, then the server exits 0.
stream_request='{"model":"tinystories-gpt2","prompt":"Once upon a time","max_tokens":500,"stream":true,"logit_bias":{"0":-100}}'
curl -sSN -H 'content-type: application/json' -H "authorization: Bearer $API_KEY" \
  -d "$stream_request" "$BASE_URL/v1/completions" >"$WORK/stream.txt" 2>&1 &
stream_pid=$!
for _ in $(seq 1 300); do
  grep -q '^data: {' "$WORK/stream.txt" 2>/dev/null && break
  sleep 0.1
done
grep -q '^data: {' "$WORK/stream.txt" || fail "the stream did not start"

stop_start=$(date +%s.%N)
podman --runtime runc stop -t "$STOP_TIMEOUT" "$CONTAINER" >/dev/null 2>&1 &
stop_pid=$!
# /ready while draining (only meaningful if the stream is still running).
draining_ready=none
for _ in $(seq 1 50); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/ready" || true)
  if [[ $code == 503 ]]; then draining_ready=503; break; fi
  sleep 0.05
done
stream_done_before=$(grep -c '^data: \[DONE\]' "$WORK/stream.txt" || true)

wait "$stream_pid" && stream_status=0 || stream_status=$?
wait "$stop_pid" || true
wait "$PODMAN_PID" && exit_status=0 || exit_status=$?
PODMAN_PID=
stop_seconds=$(awk -v a="$stop_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
chunks=$(grep -c '^data: {' "$WORK/stream.txt" || true)
echo "stream: $chunks chunks, curl status $stream_status, last line: $(grep -v '^$' "$WORK/stream.txt" | tail -n 1 | cut -c1-120)"
echo "/ready during shutdown: $draining_ready; container exit status $exit_status after ${stop_seconds}s"
printf -- '--- container output (last 4 lines) ---\n'
tail -n 4 "$CONTAINER_LOG" | cut -c1-300
printf -- '---\n'

if [[ $exit_status -eq 0 ]]; then
  pass "SIGTERM: exited with status 0 in ${stop_seconds}s"
else
  fail "SIGTERM: exit status $exit_status after ${stop_seconds}s (137: killed after the ${STOP_TIMEOUT}s stop timeout)"
fi
if grep -q 'shutting down' "$CONTAINER_LOG"; then
  pass "SIGTERM reached the server (\"shutting down\" logged)"
else
  fail "the server did not log \"shutting down\""
fi
if [[ $stream_status -eq 0 ]] && grep -q '^data: \[DONE\]' "$WORK/stream.txt"; then
  if [[ $stream_done_before -eq 0 && $draining_ready == 503 ]]; then
    pass "in-flight stream finished during shutdown ($chunks chunks); /ready was 503 meanwhile"
  else
    echo "note: the stream ended before the server began draining; drain not exercised"
  fi
else
  fail "in-flight stream cut off by shutdown (curl status $stream_status)"
fi

# ---------------------------------------------------------------------------------------------------
# A model mounted at /models

step "model mounted at /models, read-only root filesystem"
MOUNT_PORT=$(free_port) || die "no free port found"
# As `docker run --read-only --tmpfs /tmp`: only /tmp (tsx's compile cache) is writable.
podman --runtime runc run --rm --name "$CONTAINER" --network host \
  --read-only --read-only-tmpfs=false --tmpfs /tmp \
  -v "$REPO_ROOT/models/tinystories-gpt2:/models/story:ro" \
  -e PORT="$MOUNT_PORT" -e ORTSERVE_MODEL=/models/story -e ORTSERVE_MODEL_FILE=model_quantized.onnx \
  "$IMAGE" >"$CONTAINER_LOG" 2>&1 &
PODMAN_PID=$!
start=$(date +%s)
until curl -fsS -o /dev/null "http://127.0.0.1:$MOUNT_PORT/health" 2>/dev/null; do
  kill -0 "$PODMAN_PID" 2>/dev/null || die "container with a mounted model exited during start-up"
  (($(date +%s) - start > STARTUP_TIMEOUT)) && die "/health did not answer within ${STARTUP_TIMEOUT}s"
  sleep 1
done
models=$(curl -fsS "http://127.0.0.1:$MOUNT_PORT/v1/models" | jq -c '[.data[].id]')
mounted=$(curl -sS -H 'content-type: application/json' \
  -d '{"model":"story","prompt":"Once upon a time","max_tokens":8}' "http://127.0.0.1:$MOUNT_PORT/v1/completions")
echo "models: $models; completion: $(jq -c '{object, model, text: .choices[0].text}' <<<"$mounted" 2>/dev/null || echo "$mounted")"
if [[ $models == '["story"]' ]] && jq -e '.object == "text_completion" and (.choices[0].text | length > 0)' <<<"$mounted" >/dev/null 2>&1; then
  pass "ORTSERVE_MODEL=/models/story (mounted read-only, model_quantized.onnx, read-only root) serves completions"
else
  fail "model mounted at /models/story"
fi
podman --runtime runc stop -t "$STOP_TIMEOUT" "$CONTAINER" >/dev/null
wait "$PODMAN_PID" && exit_status=0 || exit_status=$?
PODMAN_PID=
[[ $exit_status -eq 0 ]] || fail "container with a mounted model: exit status $exit_status on SIGTERM"

printf '\nimage: %s, %s MB\n' "$IMAGE" "$size_mb"
