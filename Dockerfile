# ortserve: OpenAI-compatible completion server for ONNX decoder models (CPU).
#
#   docker build -t ortserve .
#   docker run --rm -p 8000:8000 ortserve
#
# The default model (models/tinystories-gpt2) is baked in. Other models are mounted under /models
# and picked with ORTSERVE_MODEL, e.g.
#
#   docker run --rm -p 8000:8000 -v "$PWD/my-models:/models:ro" -e ORTSERVE_MODEL=/models/my-model ortserve
#
# Every option is an environment variable (PORT, ORTSERVE_HOST, ORTSERVE_MODEL, ORTSERVE_MODEL_FILE,
# ORTSERVE_MAX_BATCH, ...; see `docker run --rm ortserve --help`); arguments after the image name are
# passed to the server as flags.

# ---------------------------------------------------------------------------------------------------
# Stage 1: production dependencies only.
FROM node:20-bookworm-slim AS deps
WORKDIR /app

# .npmrc (ignore-scripts=true) must be in place before npm ci: no dependency's install script runs,
# so onnxruntime-node's does not download the CUDA execution provider and @scarf/scarf's (a
# dependency of swagger-ui-dist) does not report the install. Nothing needs one: onnxruntime-node
# ships prebuilt binaries for every platform; keep this platform's only.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 && arch="$(node -p process.arch)" \
 && for dir in node_modules/onnxruntime-node/bin/napi-v*/*/*; do \
      case "$dir" in */linux/"$arch") ;; *) rm -rf "$dir" ;; esac; \
    done \
 && test -f node_modules/onnxruntime-node/bin/napi-v*/linux/"$arch"/onnxruntime_binding.node

# ---------------------------------------------------------------------------------------------------
# Stage 2: runtime.
FROM node:20-bookworm-slim
WORKDIR /app

# The listening port is PORT (or ORTSERVE_PORT), 8000 unless set. ORT_DISABLE_TELEMETRY turns off
# onnxruntime's usage telemetry (which otherwise keeps a device id under ~/.cache and tries to upload).
ENV NODE_ENV=production \
    ORTSERVE_HOST=0.0.0.0 \
    ORT_DISABLE_TELEMETRY=1

COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json openapi.yaml ./
COPY bin ./bin
COPY src ./src
COPY models/README.md ./models/README.md
COPY models/tinystories-gpt2 ./models/tinystories-gpt2

# Mount point for other models: -v /host/models:/models:ro -e ORTSERVE_MODEL=/models/<name>
RUN mkdir -p /models

# Run as the base image's unprivileged `node` user (uid 1000). Numeric, so that Kubernetes'
# runAsNonRoot can verify it. The application files stay owned by root and read-only to it.
USER 1000:1000

EXPOSE 8000

# Liveness: the process answers HTTP. (Readiness, /ready, is for load balancers.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || process.env.ORTSERVE_PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

# node is PID 1 and gets SIGTERM directly; the server drains and exits 0 on SIGTERM and SIGINT.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/ortserve.js"]
CMD []
