import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyInstance } from 'fastify';
import { chatRoutes } from './api/chat.js';
import { docsRoutes } from './api/docs.js';
import { completionRoutes } from './api/completions.js';
import { registerErrorHandlers } from './api/errors.js';
import { healthRoutes, modelRoutes } from './api/models.js';
import type { ServerConfig } from './config.js';
import { Engine } from './engine/engine.js';
import { loadModel, type LoadedModel } from './model/model.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

/** `system_fingerprint`: changes when the model file or the server version changes. */
function systemFingerprint(model: LoadedModel): string {
  const digest = createHash('sha256').update(`${version}\0${model.id}\0${model.files.modelPath}`).digest('hex');
  return `fp_${digest.slice(0, 10)}`;
}

/** The HTTP application over a loaded model and a running engine. */
export function buildApp(model: LoadedModel, engine: Engine, options: { logLevel: ServerConfig['logLevel'] }): FastifyInstance {
  const app = Fastify({
    logger: { level: options.logLevel, redact: ['req.headers.authorization'] },
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  });
  app.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  registerErrorHandlers(app);
  void app.register(healthRoutes);
  void app.register(docsRoutes);
  void app.register(modelRoutes, { model, startedAt: Math.floor(Date.now() / 1000) });
  const routeOptions = { model, engine, systemFingerprint: systemFingerprint(model) };
  void app.register(completionRoutes, routeOptions);
  void app.register(chatRoutes, routeOptions);
  return app;
}

export interface RunningServer {
  app: FastifyInstance;
  model: LoadedModel;
  engine: Engine;
  /** The address the server listens on, e.g. http://127.0.0.1:8000. */
  url: string;
  close(): Promise<void>;
}

/** Loads the model, starts the engine and listens. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const model = loadModel(config.model, { modelFile: config.modelFile, servedModelName: config.servedModelName });
  const engine = await Engine.start({
    modelPath: model.files.modelPath,
    device: config.device,
    threads: config.threads,
    maxBatch: config.maxBatch,
    maxQueue: config.maxQueue,
    maxKvTokens: config.maxKvTokens || config.maxBatch * model.config.contextLength,
    prefillChunk: config.prefillChunk,
    contextLength: model.config.contextLength,
    numKvHeads: model.config.numKvHeads,
    headDim: model.config.headDim,
  });
  const app = buildApp(model, engine, { logLevel: config.logLevel });
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    await engine.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  app.log.info({ url, model: model.id, modelPath: model.files.modelPath, contextLength: model.config.contextLength, device: config.device }, 'model ready');
  return {
    app,
    model,
    engine,
    url,
    close: async () => {
      await app.close();
      await engine.close();
    },
  };
}
