import type { FastifyPluginAsync } from 'fastify';
import type { Engine } from '../engine/engine.js';
import type { LoadedModel } from '../model/model.js';
import { responseId } from './ids.js';
import { CompletionRequestSchema } from './schemas.js';
import { checkModel, createdNow, planChoices, planSummary, runChoices, usage } from './serving.js';
import { disconnectSignal, streamChoices } from './streaming.js';
import { parseBody } from './validation.js';

export interface RouteOptions {
  model: LoadedModel;
  engine: Engine;
}

/** OpenAI's default for the legacy completions endpoint. */
const DEFAULT_MAX_TOKENS = 16;

export const completionRoutes: FastifyPluginAsync<RouteOptions> = async (app, { model, engine }) => {
  app.post('/v1/completions', async (request, reply) => {
    const body = parseBody(CompletionRequestSchema, request.body);
    checkModel(model, body.model);
    const promptIds = model.tokenizer.encode(body.prompt);
    const plan = planChoices(model, engine, promptIds, body, {
      requested: body.max_tokens,
      default: DEFAULT_MAX_TOKENS,
      param: 'max_tokens',
      promptParam: 'prompt',
    });
    request.log.info(planSummary(plan, body.stream), 'completion');
    request.log.debug({ prompt: body.prompt }, 'completion prompt');

    const id = responseId('cmpl');
    const created = createdNow();
    const envelope = { id, object: 'text_completion' as const, created, model: model.id };
    if (body.stream) {
      await streamChoices(reply, engine, model, plan, {
        text: (index, text) => ({ ...envelope, choices: [{ index, text, logprobs: null, finish_reason: null }] }),
        finish: (index, outcome) => ({
          ...envelope,
          choices: [{ index, text: '', logprobs: null, finish_reason: outcome.finishReason }],
        }),
      });
      return reply;
    }
    const outcomes = await runChoices(engine, model, plan, disconnectSignal(reply));
    return {
      ...envelope,
      choices: outcomes.map((outcome, index) => ({
        index,
        text: outcome.text,
        logprobs: null,
        finish_reason: outcome.finishReason,
      })),
      usage: usage(promptIds.length, outcomes),
    };
  });
};
