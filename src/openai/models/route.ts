import type { FastifyPluginAsync } from 'fastify';
import type { LoadedModel } from '../../model/model.js';
import { checkModel } from '../../generation/validate.js';

export const modelRoutes: FastifyPluginAsync<{ model: LoadedModel; startedAt: number }> = async (app, { model, startedAt }) => {
  const card = { id: model.id, object: 'model' as const, created: startedAt, owned_by: 'ortserve' };
  app.get('/v1/models', async () => ({ object: 'list' as const, data: [card] }));
  // A wildcard, since model ids may contain slashes (`org/name`).
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (request) => {
    const id = request.params['*'];
    checkModel(model, id);
    return { ...card, id };
  });
};

export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/health', async () => ({ status: 'ok' }));
};
