import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ServedModels } from '../../generation/served-models.js';

/**
 * The legacy engine routes of openai-python 0.x: `Completion.create(engine=…)` posts to
 * `/v1/engines/{engine}/completions` (and `ChatCompletion.create(engine=…)` to
 * `/v1/engines/{engine}/chat/completions`) without a `model` in the body, and `Engine.list()` reads
 * `/v1/engines`.
 */

/** The paths under which a route is also served with the model named by the path. */
export const enginePath = (path: '/completions' | '/chat/completions') => `/v1/engines/:engine${path}`;

/** The body of a request, with the path's engine as its model when it came by an engine route. */
export function bodyWithEngine(request: FastifyRequest): unknown {
  const { engine } = request.params as { engine?: string };
  const { body } = request;
  if (engine === undefined || typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  return { ...body, model: engine };
}

export const engineRoutes: FastifyPluginAsync<{ models: ServedModels }> = async (app, { models }) => {
  const engine = (id: string) => ({ id, object: 'engine' as const, owner: 'ortserve', ready: true, created: null });
  app.get('/v1/engines', async () => ({ object: 'list' as const, data: models.list().map(({ id }) => engine(id)) }));
  app.get<{ Params: { '*': string } }>('/v1/engines/*', async (request) => {
    const id = request.params['*'];
    models.find(id);
    return engine(id);
  });
};
