import type { FastifyPluginAsync } from 'fastify';
import { invalidRequest } from '../../errors.js';
import { checkMessageCount } from '../../generation/limits.js';
import { DetokenizeRequestSchema, TokenizeRequestSchema } from '../schemas.js';
import type { ServedModels } from '../../generation/served-models.js';
import { toTemplateTools } from '../../generation/output-plan.js';
import { checkTokenIds, encodeChat, encodePrompts } from '../../generation/prompts.js';
import { templateKwargs, templateMessage } from '../chat/messages.js';
import { requestScope, servedContext } from '../../http/request-scope.js';
import { parseBody } from '../parse-body.js';

/**
 * `POST /tokenize` and `POST /detokenize`, in vLLM's shape: the model's own tokenizer (and chat
 * template) as the completion routes use them, so that a client can count and check tokens.
 */
export const tokenizeRoutes: FastifyPluginAsync<{ models: ServedModels }> = async (app, { models }) => {

  app.post('/tokenize', async (request, reply) => {
    const body = parseBody(TokenizeRequestSchema, request.body);
    const context = await servedContext(models, body.model, reply);
    const { model, limits } = context;
    const scope = requestScope(request, reply, context);
    if ((body.prompt === undefined) === (body.messages === undefined)) {
      throw invalidRequest("Give either 'prompt' (a text) or 'messages' (a conversation), not both or neither.", body.prompt === undefined ? 'prompt' : 'messages', 'invalid_value');
    }
    let tokens: number[];
    if (body.messages) {
      checkMessageCount(body.messages.length, limits);
      const messages = body.messages.map((message, index) => templateMessage(message, index, limits.maxJsonDepth));
      const tools = body.tools?.length ? toTemplateTools(body.tools.map((tool) => tool.function)) : undefined;
      const render = {
        ...(body.add_generation_prompt !== null && body.add_generation_prompt !== undefined && { addGenerationPrompt: body.add_generation_prompt }),
        ...(body.add_special_tokens !== null && body.add_special_tokens !== undefined && { addSpecialTokens: body.add_special_tokens }),
        ...(body.chat_template_kwargs && { kwargs: templateKwargs(body.chat_template_kwargs) }),
      };
      tokens = await encodeChat(context, messages, tools, scope, render);
    } else {
      [tokens] = (await encodePrompts(context, [body.prompt!], 'prompt', scope, body.add_special_tokens ?? true)) as [number[]];
    }
    return {
      count: tokens.length,
      max_model_len: model.config.contextLength,
      tokens,
      token_strs: body.return_token_strs ? tokens.map((id) => model.tokenizer.idToToken(id) ?? '') : null,
    };
  });

  app.post('/detokenize', async (request, reply) => {
    const body = parseBody(DetokenizeRequestSchema, request.body);
    const context = await servedContext(models, body.model, reply);
    const { model, preprocessor } = context;
    checkTokenIds(model, body.tokens, 'tokens');
    return { prompt: await preprocessor.decode(body.tokens, false, requestScope(request, reply, context)) };
  });
};
