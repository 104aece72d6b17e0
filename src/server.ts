import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import cors from '@fastify/cors';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';
import { chatRoutes } from './openai/chat/route.js';
import { docsRoutes } from './http/docs.js';
import { checkListenable } from './http/address-check.js';
import { playgroundRoutes } from './http/playground.js';
import { completionRoutes } from './openai/completions/route.js';
import { apiKeyAuth } from './http/auth.js';
import { answerBadUrl, answerClientError, answerUnmetExpectation, errorHandling } from './http/error-handling.js';
import { drainGuard, Lifecycle, readiness } from './http/lifecycle.js';
import { metricsPlugin, ServerMetrics } from './http/metrics.js';
import { engineRoutes } from './openai/engines/route.js';
import { tokenizeRoutes } from './openai/tokenize/route.js';
import { responseRoutes } from './openai/responses/route.js';
import { messagesRoutes } from './anthropic/messages/route.js';
import { healthRoutes, modelRoutes } from './openai/models/route.js';
import { checkJsonDepth } from './openai/parse-body.js';
import { capConnections, connectionCap } from './http/connections.js';
import type { ServingContext } from './generation/context.js';
import { ServedModels } from './generation/served-models.js';
import { engineSettings, type ServerConfig } from './options.js';
import { Engine } from './engine/client/engine.js';
import { pino } from 'pino';
import { loadModel, servedModel, type LoadedModel } from './model/model.js';
import { locateModel } from './model/hub/locate.js';
import { grammarVocabulary as buildGrammarVocabulary } from './grammar/vocabulary.js';
import { DEFAULT_PREPROCESSOR_OPTIONS, Preprocessor } from './preprocess/preprocessor.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

/** `system_fingerprint`: changes when the model file or the server version changes. */
function systemFingerprint(model: LoadedModel): string {
  const digest = createHash('sha256').update(`${version}\0${model.id}\0${model.files.modelPath}`).digest('hex');
  return `fp_${digest.slice(0, 10)}`;
}

/** What a request's log lines say of it: the path without its query string, which may hold secrets. */
function requestLogFields(request: FastifyRequest) {
  const url = request.raw.url ?? '';
  const query = url.indexOf('?');
  return { method: request.method, url: query === -1 ? url : url.slice(0, query), host: request.host, remoteAddress: request.ip, remotePort: request.socket?.remotePort };
}

/** The settings the HTTP application uses. */
export type AppConfig = Pick<ServerConfig, 'logLevel' | 'apiKeys' | 'corsOrigins' | 'requestTimeoutMs' | 'receiveTimeoutMs' | 'limits' | 'prefixCachePartitionHeader' | 'maxConnections'>;

export interface App {
  app: FastifyInstance;
  lifecycle: Lifecycle;
}

/** The HTTP application over a loaded model and a running engine. */
export function buildApp(model: LoadedModel, preprocessor: Preprocessor, engine: Engine, config: AppConfig): App {
  const app = Fastify({
    logger: { level: config.logLevel, redact: ['req.headers.authorization'], serializers: { req: requestLogFields } },
    bodyLimit: config.limits.maxBodyBytes,
    // A trickled request is cut off (408) once it has taken longer than this to arrive.
    requestTimeout: config.receiveTimeoutMs,
    // Fastify's requestTimeout alone leaves headersTimeout at Node's 60 s, and Node checks for
    // expired requests only every 30 s by default: both are set on the HTTP server at creation.
    // Host is checked in an onRequest hook, which answers in the API's error shape.
    http: { headersTimeout: config.receiveTimeoutMs, connectionsCheckingInterval: 1_000, requireHostHeader: false },
    clientErrorHandler: answerClientError,
    frameworkErrors: answerBadUrl,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  });
  app.server.on('checkExpectation', answerUnmetExpectation);
  capConnections(app.server, connectionCap(config.maxConnections));
  // Fastify reads text/plain bodies as strings; the API takes JSON only, and says so with a 415.
  app.removeContentTypeParser('text/plain');
  const lifecycle = new Lifecycle();
  const metrics = new ServerMetrics(engine, () => lifecycle.requestsInFlight);
  void app.register(errorHandling, { limits: config.limits });
  void app.register(metricsPlugin, { metrics });
  void app.register(readiness, { lifecycle });
  void app.register(healthRoutes);
  void app.register(docsRoutes);
  void app.register(playgroundRoutes);
  if (config.corsOrigins.length > 0) {
    // Pages on the listed origins may call the API; preflights need no key (browsers send none).
    const anyOrigin = config.corsOrigins.includes('*');
    void app.register(cors, {
      origin: anyOrigin ? '*' : config.corsOrigins,
      methods: ['GET', 'POST'],
      allowedHeaders: ['authorization', 'content-type', 'x-request-id'],
      exposedHeaders: ['x-request-id', 'retry-after', 'x-should-retry'],
      maxAge: 600,
    });
  }
  const context: ServingContext = {
    model,
    preprocessor,
    engine,
    systemFingerprint: systemFingerprint(model),
    limits: config.limits,
    requestTimeoutMs: config.requestTimeoutMs,
    ...(config.prefixCachePartitionHeader !== undefined && { prefixCachePartitionHeader: config.prefixCachePartitionHeader }),
    observer: metrics.observer,
  };
  // One model today; each one served will be a context of its own here.
  const models = new ServedModels([context]);
  // The API in a scope of its own: its hooks run for every request the router matched to one of
  // its routes, however the path was spelled.
  void app.register(async (api) => {
    void api.register(drainGuard, { lifecycle });
    void api.register(apiKeyAuth, { apiKeys: config.apiKeys });
    api.addHook('preHandler', async (request) => checkJsonDepth(request.body, config.limits.maxJsonDepth));
    void api.register(modelRoutes, { models, startedAt: Math.floor(Date.now() / 1000) });
    void api.register(engineRoutes, { models });
    void api.register(completionRoutes, { models });
    void api.register(chatRoutes, { models });
    void api.register(responseRoutes, { models });
    void api.register(messagesRoutes, { models, limits: config.limits });
    void api.register(tokenizeRoutes, { models });
  });
  return { app, lifecycle };
}

export interface RunningServer {
  app: FastifyInstance;
  model: LoadedModel;
  engine: Engine;
  lifecycle: Lifecycle;
  /** The address the server listens on, e.g. http://127.0.0.1:8000. */
  url: string;
  /**
   * Graceful stop: readiness turns 503 and new API requests are refused, in-flight requests get
   * `graceMs` to finish (then their connections are cut), and the engine stops.
   */
  /** `/ready` says 503 at once; requests are still taken for `drainDelayMs`, then refused while those in flight get `graceMs` to finish. */
  shutdown(graceMs: number, drainDelayMs?: number): Promise<{ drained: boolean }>;
  /** Stops at once. */
  close(): Promise<void>;
}

/**
 * The engine, then the preprocessing workers: the engine reads the graph and says what context and
 * vocabulary it serves, and the grammar checks are sized to that vocabulary. If the preprocessor
 * fails to start, the engine is stopped.
 */
async function startWorkers(config: ServerConfig, model: LoadedModel): Promise<[Engine, Preprocessor]> {
  const { tokenizerJson, tokenizerConfig } = model.files;
  const { contextLength, vocabSize, numKvHeads, headDim } = model.config;
  // Both start at once; only the grammar-checking worker, started with its first task, waits for the engine's vocabulary.
  const engineStarting = Engine.start(
    { modelPath: model.files.modelPath, declared: { contextLength, vocabSize, numKvHeads, headDim }, settings: engineSettings(config) },
    config.maxQueue,
    (servedVocabSize) => buildGrammarVocabulary(tokenizerJson, servedVocabSize),
  );
  const grammarVocabulary = engineStarting.then((engine) => engine.grammarVocabulary);
  grammarVocabulary.catch(() => {});
  const preprocessorStarting = Preprocessor.start(
    { tokenizerJson, tokenizerConfig, grammarVocabulary },
    { ...DEFAULT_PREPROCESSOR_OPTIONS, grammarLimitMs: config.grammarCompileLimitMs, grammarBudgetBytes: config.grammarCacheBytes },
  );
  const [engine, preprocessor] = await Promise.allSettled([engineStarting, preprocessorStarting]);
  if (engine.status === 'fulfilled' && preprocessor.status === 'fulfilled') return [engine.value, preprocessor.value];
  await Promise.all([engine.status === 'fulfilled' && engine.value.close(), preprocessor.status === 'fulfilled' && preprocessor.value.close()]);
  throw engine.status === 'rejected' ? engine.reason : (preprocessor as PromiseRejectedResult).reason;
}

/** Loads the model, starts the engine and listens. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  await checkListenable(config.host, config.port);
  const located = await locateModel(
    { model: config.model, revision: config.revision, dtype: config.dtype, modelFile: config.modelFile, offline: config.offline },
    pino({ level: config.logLevel }),
    { terminal: process.stderr.isTTY ? process.stderr : undefined },
  );
  const servedModelNames = config.servedModelNames.length > 0 || !located.hubId ? config.servedModelNames : [located.hubId];
  const loaded = loadModel(located.dir, { modelFile: config.modelFile, dtype: config.dtype, servedModelNames, reasoningParser: config.reasoningParser, toolCallParser: config.toolCallParser });
  const configured = { ...loaded, files: { ...loaded.files, notes: [...located.notes, ...loaded.files.notes] } };
  const [engine, preprocessor] = await startWorkers(config, configured);
  const stopWorkers = () => Promise.all([engine.close(), preprocessor.close()]);
  let started;
  try {
    const { model, warnings } = servedModel(configured, engine.served, engine.graphLimits);
    const { app, lifecycle } = buildApp(model, preprocessor, engine, config);
    for (const note of model.files.notes) app.log.info({ model: model.id }, note);
    app.log.info({ model: model.id, rewrites: engine.graphRewrites }, 'graph edits at load');
    if (model.chatTemplate.isFallback) {
      warnings.push("no chat template in the folder (chat_template.jinja, chat_template.json, tokenizer_config.json): chat requests use the plain 'role: content' fallback template");
    }
    for (const warning of warnings) app.log.warn({ model: model.id }, warning);
    await app.listen({ host: config.host, port: config.port });
    started = { model, app, lifecycle };
  } catch (err) {
    await stopWorkers();
    throw err;
  }
  const { model, app, lifecycle } = started;
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  app.log.info(
    {
      url,
      model: model.id,
      modelPath: model.files.modelPath,
      contextLength: model.config.contextLength,
      device: config.device,
      toolCallFormat: model.toolCallFormat.name,
      reasoningFormat: model.reasoningFormat?.name ?? null,
    },
    'model ready',
  );
  const close = async () => {
    app.server.closeAllConnections();
    await app.close();
    await stopWorkers();
  };
  return {
    app,
    model,
    engine,
    lifecycle,
    url,
    shutdown: async (graceMs, drainDelayMs = 0) => {
      const drained = await lifecycle.drain(graceMs, drainDelayMs);
      app.log.info({ drained, requestsInFlight: lifecycle.requestsInFlight }, drained ? 'in-flight requests finished' : 'shutdown grace period over');
      await close();
      return { drained };
    },
    close,
  };
}
