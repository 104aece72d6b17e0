import type { FastifyPluginAsync } from 'fastify';
import type { ServedModels } from '../../generation/served-models.js';

export const modelRoutes: FastifyPluginAsync<{ models: ServedModels; startedAt: number }> = async (app, { models, startedAt }) => {
  const card = (id: string) => ({ id, object: 'model' as const, created: startedAt, owned_by: 'ortserve' });
  app.get('/v1/models', async () => ({ object: 'list' as const, data: models.all.map(({ model }) => card(model.id)) }));
  // A wildcard, since model ids may contain slashes (`org/name`).
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (request) => {
    const id = request.params['*'];
    models.resolve(id);
    return card(id);
  });
};

export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/health', async () => ({ status: 'ok' }));
};
