import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Engine } from '../engine/client/engine.js';
import type { GenerationObserver } from '../generation/context.js';

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/**
 * The server's Prometheus metrics, in a registry of its own (several servers may share a process,
 * as in the tests). Served at `GET /metrics`.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'ortserve_requests_total',
    help: 'HTTP requests answered, by route and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly promptTokens = new Counter({ name: 'ortserve_prompt_tokens_total', help: 'Prompt tokens of the requests served', registers: [this.registry] });
  private readonly completionTokens = new Counter({ name: 'ortserve_completion_tokens_total', help: 'Tokens generated', registers: [this.registry] });
  private readonly cachedPromptTokens = new Counter({
    name: 'ortserve_prefix_cache_hit_tokens_total',
    help: 'Prompt tokens whose KV came from the prefix cache instead of a prefill',
    registers: [this.registry],
  });
  private readonly timeToFirstToken = new Histogram({
    name: 'ortserve_time_to_first_token_seconds',
    help: "Seconds from a choice's start to its first text",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly interTokenLatency = new Histogram({
    name: 'ortserve_inter_token_latency_seconds',
    help: "Seconds between consecutive pieces of a choice's text",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  private readonly batchSize = new Histogram({ name: 'ortserve_batch_size', help: 'Sequences in each decode step', buckets: BATCH_BUCKETS, registers: [this.registry] });

  readonly observer: GenerationObserver = {
    firstToken: (seconds) => this.timeToFirstToken.observe(seconds),
    interToken: (seconds) => this.interTokenLatency.observe(seconds),
    finished: (promptTokens, completionTokens, cachedTokens) => {
      this.promptTokens.inc(promptTokens);
      this.completionTokens.inc(completionTokens);
      this.cachedPromptTokens.inc(cachedTokens);
    },
  };

  constructor(engine: Engine, requestsInFlight: () => number) {
    collectDefaultMetrics({ register: this.registry });
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(read());
        },
      });
    gauge('ortserve_queue_length', 'Sequences waiting for a batch slot', () => engine.stats.waiting);
    gauge('ortserve_active_sequences', 'Sequences in the running batch', () => engine.stats.running);
    gauge('ortserve_kv_cache_tokens', 'Tokens held in the KV cache', () => engine.stats.kvTokens);
    gauge('ortserve_kv_cache_usage_ratio', 'Fraction of the KV-cache token budget held by running sequences (0 to 1)', () => {
      const { kvTokens, kvCapacity } = engine.stats;
      return kvCapacity > 0 ? Math.min(1, kvTokens / kvCapacity) : 0;
    });
    gauge('ortserve_prefix_cache_tokens', 'Prompt positions held in the prefix cache', () => engine.stats.prefixCacheTokens);
    gauge('ortserve_requests_in_flight', 'API requests being served', requestsInFlight);
    engine.onStep((size) => this.batchSize.observe(size));
  }

  register(app: FastifyInstance): void {
    app.addHook('onRequest', async (request, reply) => {
      // `close` also fires for streams, whose replies are hijacked and skip Fastify's onResponse.
      reply.raw.once('close', () => {
        const route = request.routeOptions.url ?? 'unmatched';
        this.requests.inc({ method: request.method, route, status: String(reply.raw.statusCode) });
      });
    });
    app.get('/metrics', async (_request, reply) => {
      void reply.type(this.registry.contentType);
      return this.registry.metrics();
    });
  }
}

/** Counts every request the server answers, and serves `GET /metrics`; registered right after the error handling, ahead of every route. */
export const metricsPlugin = fp<{ metrics: ServerMetrics }>(async (app, { metrics }) => metrics.register(app), { name: 'ortserve-metrics', dependencies: ['ortserve-errors'] });
