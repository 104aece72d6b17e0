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
  private readonly engines = new Map<string, Engine>();
  private readonly requests = new Counter({
    name: 'ortserve_requests_total',
    help: 'HTTP requests answered, by route and status code',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  private readonly promptTokens = new Counter({ name: 'ortserve_prompt_tokens_total', help: 'Prompt tokens of the requests served', labelNames: ['model'] as const, registers: [this.registry] });
  private readonly completionTokens = new Counter({ name: 'ortserve_completion_tokens_total', help: 'Tokens generated', labelNames: ['model'] as const, registers: [this.registry] });
  private readonly cachedPromptTokens = new Counter({
    name: 'ortserve_prefix_cache_hit_tokens_total',
    help: 'Prompt tokens whose KV came from the prefix cache instead of a prefill',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  private readonly timeToFirstToken = new Histogram({
    name: 'ortserve_time_to_first_token_seconds',
    help: "Seconds from a choice's start to its first text",
    buckets: LATENCY_BUCKETS,
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  private readonly interTokenLatency = new Histogram({
    name: 'ortserve_inter_token_latency_seconds',
    help: "Seconds between consecutive pieces of a choice's text",
    buckets: LATENCY_BUCKETS,
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  private readonly batchSize = new Histogram({ name: 'ortserve_batch_size', help: 'Sequences in each decode step', buckets: BATCH_BUCKETS, labelNames: ['model'] as const, registers: [this.registry] });
  private readonly loadSeconds = new Histogram({
    name: 'ortserve_model_load_seconds',
    help: 'Seconds from the start of a model load to its engine and workers being ready',
    buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
    labelNames: ['model'] as const,
    registers: [this.registry],
  });

  /** Watches one model's generations. */
  observerFor(model: string): GenerationObserver {
    const labels = { model };
    return {
      firstToken: (seconds) => this.timeToFirstToken.observe(labels, seconds),
      interToken: (seconds) => this.interTokenLatency.observe(labels, seconds),
      finished: (promptTokens, completionTokens, cachedTokens) => {
        this.promptTokens.inc(labels, promptTokens);
        this.completionTokens.inc(labels, completionTokens);
        this.cachedPromptTokens.inc(labels, cachedTokens);
      },
    };
  }

  private requestsInFlight: () => number = () => 0;

  /** Where the requests in flight are counted (the HTTP application's lifecycle). */
  countRequestsInFlight(read: () => number): void {
    this.requestsInFlight = read;
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    const engines = this.engines;
    /** A gauge with a sample for each loaded model, read from its engine when scraped. */
    const modelGauge = (name: string, help: string, read: (engine: Engine) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['model'] as const,
        registers: [this.registry],
        collect() {
          this.reset();
          for (const [model, engine] of engines) this.set({ model }, read(engine));
        },
      });
    modelGauge('ortserve_queue_length', 'Sequences waiting for a batch slot', (engine) => engine.stats.waiting);
    modelGauge('ortserve_active_sequences', 'Sequences in the running batch', (engine) => engine.stats.running);
    modelGauge('ortserve_kv_cache_tokens', 'Tokens held in the KV cache', (engine) => engine.stats.kvTokens);
    modelGauge('ortserve_kv_cache_usage_ratio', 'Fraction of the KV-cache token budget held by running sequences (0 to 1)', (engine) => {
      const { kvTokens, kvCapacity } = engine.stats;
      return kvCapacity > 0 ? Math.min(1, kvTokens / kvCapacity) : 0;
    });
    modelGauge('ortserve_prefix_cache_tokens', 'Prompt positions held in the prefix cache', (engine) => engine.stats.prefixCacheTokens);
    new Gauge({
      name: 'ortserve_models_loaded',
      help: 'Models loaded, each in its own engine',
      registers: [this.registry],
      collect() {
        this.set(engines.size);
      },
    });
    const inFlight = () => this.requestsInFlight();
    new Gauge({
      name: 'ortserve_requests_in_flight',
      help: 'API requests being served',
      registers: [this.registry],
      collect() {
        this.set(inFlight());
      },
    });
  }

  /** A model's engine, loaded in `seconds`, reported on from now until it is detached. */
  attach(model: string, engine: Engine, seconds: number): void {
    this.engines.set(model, engine);
    this.loadSeconds.observe({ model }, seconds);
    engine.onStep((size) => {
      if (this.engines.get(model) === engine) this.batchSize.observe({ model }, size);
    });
  }

  detach(model: string): void {
    this.engines.delete(model);
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
