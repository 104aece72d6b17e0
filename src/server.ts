import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import cors from '@fastify/cors';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
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
import { ServedModels, type PreparedModel } from './generation/served-models.js';
import { DEFAULT_MODEL_DIR, engineSettings, type ServerConfig } from './options.js';
import { Engine } from './engine/client/engine.js';
import { pino, type Logger } from 'pino';
import { totalmem } from 'node:os';
import { loadModel, servedModel, type LoadedModel } from './model/model.js';
import { locateModel } from './model/hub/locate.js';
import { modelCatalogue, type CatalogueEntry } from './model/catalogue.js';
import { modelFootprint } from './model/footprint.js';
import { ModelLoadError } from './model/errors.js';
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

/** The server's log: pino JSON lines, the request lines without query strings or keys. */
export const serverLog = (level: ServerConfig['logLevel']) => pino({ level, redact: ['req.headers.authorization'], serializers: { req: requestLogFields } });

/** The HTTP application over the served models. */
export function buildApp(models: ServedModels, metrics: ServerMetrics, log: Logger, config: AppConfig): App {
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
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
  metrics.countRequestsInFlight(() => lifecycle.requestsInFlight);
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
  models: ServedModels;
  /** The first model given with --model (an error to read on a server that loads every model on request). */
  readonly model: LoadedModel;
  readonly engine: Engine;
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

/**
 * Reads a catalogue entry's folder (fetching a hub model given with --model), sizes it for the
 * memory budget, and returns how to start its engine and workers.
 */
async function prepareModel(entry: CatalogueEntry, config: ServerConfig, metrics: ServerMetrics, log: Logger): Promise<PreparedModel> {
  const located = await locateModel(
    { model: entry.source, revision: config.revision, dtype: config.dtype, modelFile: config.modelFile, offline: config.offline || entry.cachedOnly },
    log,
    { terminal: process.stderr.isTTY ? process.stderr : undefined },
  );
  const loaded = loadModel(located.dir, { modelFile: config.modelFile, dtype: config.dtype, servedModelNames: [entry.id, ...entry.aliases], reasoningParser: config.reasoningParser, toolCallParser: config.toolCallParser });
  const configured = { ...loaded, files: { ...loaded.files, notes: [...located.notes, ...loaded.files.notes] } };
  /** Weights and KV cache at capacity: the engine admits --max-kv-tokens, else max-batch × the context it serves. */
  const footprintOf = (model: LoadedModel) =>
    modelFootprint(model.files.modelPath, model.config, config.maxKvTokens || config.maxBatch * model.config.contextLength, config.prefixCacheTokens);
  const declared = footprintOf(configured);
  return {
    bytes: declared.weightBytes + declared.kvBytes,
    start: async () => {
      const startedAt = performance.now();
      const [engine, preprocessor] = await startWorkers(config, configured);
      const stopWorkers = async () => void (await Promise.all([engine.close(), preprocessor.close()]));
      let model: LoadedModel;
      try {
        const served = servedModel(configured, engine.served, engine.graphLimits);
        model = served.model;
        for (const note of model.files.notes) log.info({ model: model.id }, note);
        log.info({ model: model.id, rewrites: engine.graphRewrites }, 'graph edits at load');
        if (model.chatTemplate.isFallback) {
          served.warnings.push("no chat template in the folder (chat_template.jinja, chat_template.json, tokenizer_config.json): chat requests use the plain 'role: content' fallback template");
        }
        for (const warning of served.warnings) log.warn({ model: model.id }, warning);
      } catch (err) {
        await stopWorkers();
        throw err;
      }
      const seconds = (performance.now() - startedAt) / 1000;
      const footprint = footprintOf(model);
      metrics.attach(model.id, engine, seconds);
      log.info(
        {
          model: model.id,
          modelPath: model.files.modelPath,
          contextLength: model.config.contextLength,
          device: config.device,
          toolCallFormat: model.toolCallFormat.name,
          reasoningFormat: model.reasoningFormat?.name ?? null,
          weightMiB: Math.round(footprint.weightBytes / 2 ** 20),
          kvMiB: Math.round(footprint.kvBytes / 2 ** 20),
          loadSeconds: Number(seconds.toFixed(2)),
        },
        'model loaded',
      );
      const context: ServingContext = {
        model,
        preprocessor,
        engine,
        systemFingerprint: systemFingerprint(model),
        limits: config.limits,
        requestTimeoutMs: config.requestTimeoutMs,
        ...(config.prefixCachePartitionHeader !== undefined && { prefixCachePartitionHeader: config.prefixCachePartitionHeader }),
        observer: metrics.observerFor(model.id),
      };
      return {
        context,
        bytes: footprint.weightBytes + footprint.kvBytes,
        close: async () => {
          metrics.detach(model.id);
          await stopWorkers();
          log.info({ model: model.id }, 'model unloaded');
        },
      };
    },
  };
}

/** The memory budget in bytes: the setting, else 80% of the machine's memory. */
const memoryBudgetBytes = (config: ServerConfig) => (config.memoryBudgetMb > 0 ? config.memoryBudgetMb * 2 ** 20 : Math.floor(totalmem() * 0.8));

/** Loads the models given with --model, starts their engines and listens; other models load on request. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  await checkListenable(config.host, config.port);
  const log = serverLog(config.logLevel);
  const metrics = new ServerMetrics();
  const catalogue = modelCatalogue({
    models: config.models,
    servedModelNames: config.servedModelNames,
    modelAliases: config.modelAliases,
    ...(config.modelsDir !== undefined && { modelsDir: config.modelsDir }),
    hubCacheModels: config.hubCacheModels,
    revision: config.revision,
    defaultModel: DEFAULT_MODEL_DIR,
  });
  for (const pair of config.modelAliases) {
    const [alias, id] = pair.split('=') as [string, string];
    if (!catalogue().some((entry) => entry.id === id)) log.warn({ alias, model: id }, `--model-alias ${pair}: there is no model ${id} (yet): the alias names nothing until there is`);
  }
  const prepare = async (id: string) => {
    const entry = catalogue().find((listed) => listed.id === id);
    if (!entry) throw new ModelLoadError(`${id} is no longer among the models (its folder is gone)`);
    return prepareModel(entry, config, metrics, log);
  };
  const models = new ServedModels(catalogue, (entry) => prepare(entry.id), {
    keepAliveMs: config.keepAliveMs,
    maxLoaded: config.maxLoadedModels,
    budgetBytes: memoryBudgetBytes(config),
    loadWaitMs: config.requestTimeoutMs,
  });
  const pinned = catalogue().filter((entry) => entry.pinned);
  /** The first model given with --model, once loaded: RunningServer's `model` and `engine`. */
  let first: ServingContext | undefined;
  try {
    for (const entry of pinned) {
      await models.load(entry.id).catch((err: unknown) => {
        throw err instanceof Error && 'code' in err && err.code === 'model_load_failed' ? new ModelLoadError(models.find(entry.id).failure ?? err.message) : err;
      });
      first ??= models.loaded[0];
    }
  } catch (err) {
    await models.closeAll();
    throw err;
  }
  let app: FastifyInstance;
  let lifecycle: Lifecycle;
  try {
    ({ app, lifecycle } = buildApp(models, metrics, log, config));
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await models.closeAll();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  const listed = models.list();
  app.log.info({ url, model: first?.model.id ?? null, models: listed.map(({ id, state }) => ({ id, state })) }, first ? 'model ready' : 'ready to load models on request');
  const close = async () => {
    app.server.closeAllConnections();
    await app.close();
    await models.closeAll();
  };
  const firstContext = () => {
    if (!first) throw new Error('this server was given no --model: its models load on request (see RunningServer.models)');
    return first;
  };
  return {
    app,
    models,
    get model() {
      return firstContext().model;
    },
    get engine() {
      return firstContext().engine;
    },
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
