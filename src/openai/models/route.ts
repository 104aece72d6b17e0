import type { FastifyPluginAsync } from 'fastify';
import { z } from 'zod';
import type { ModelStatus, ServedModels } from '../../generation/served-models.js';
import { parseBody } from '../parse-body.js';

/** `POST /models/load` and `/models/unload` (llama.cpp's router names): the model by its id or an alias. */
const ModelActionSchema = z.object({ model: z.string().min(1) }).strict();

export const modelRoutes: FastifyPluginAsync<{ models: ServedModels; startedAt: number }> = async (app, { models, startedAt }) => {
  /** OpenAI's model object, with whether the model is loaded (as llama.cpp's router says it). */
  const card = ({ id, state, failure }: ModelStatus) => ({
    id,
    object: 'model' as const,
    created: startedAt,
    owned_by: 'ortserve',
    status: { value: state, ...(failure !== undefined && { failure }) },
  });
  app.get('/v1/models', async () => ({ object: 'list' as const, data: models.list().map(card) }));
  // A wildcard, since model ids may contain slashes (`org/name`).
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (request) => ({ ...card(models.find(request.params['*'])), id: request.params['*'] }));
  app.post('/models/load', async (request) => {
    const { model } = parseBody(ModelActionSchema, request.body);
    const status = await models.load(model);
    request.log.info({ model: status.id }, 'model loaded on request');
    return { success: true, ...card(status) };
  });
  app.post('/models/unload', async (request) => {
    const { model } = parseBody(ModelActionSchema, request.body);
    const status = await models.unload(model);
    request.log.info({ model: status.id }, 'model unloaded on request');
    return { success: true, ...card(status) };
  });
};

export const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/health', async () => ({ status: 'ok' }));
};
