import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { responseId } from './ids.js';
import { completionLogprobs, scoredPrompt, scoredTokens } from './logprobs.js';
import { CompletionRequestSchema } from './schemas.js';
import { createdNow, planSummary, runGeneration, usage, type ServingContext } from './serving.js';
import { validateCompletion } from './validated-request.js';
import { requestSignal, streamGeneration } from './streaming.js';
import { bodyWithEngine, enginePath } from './engines.js';
import { parseBody } from './validation.js';

export const completionRoutes: FastifyPluginAsync<ServingContext> = async (app, context) => {
  const { model, systemFingerprint } = context;
  const { tokenizer } = model;

  /** `POST /v1/completions`: validate, run, and answer as one JSON body or as a stream of chunks. */
  async function createCompletion(request: FastifyRequest, reply: FastifyReply) {
    const body = parseBody(CompletionRequestSchema, bodyWithEngine(request));
    const plan = await validateCompletion(context, body);
    request.log.info(planSummary(plan, plan.stream), 'completion');
    request.log.debug({ prompt: body.prompt }, 'completion prompt');
    const { echo, logprobs, includeUsage } = plan;
    const promptOf = (index: number) => ({ ids: plan.prompts[index]!, text: plan.promptTexts[index]! });

    const envelope = { id: responseId('cmpl'), object: 'text_completion' as const, created: createdNow(), model: model.id, system_fingerprint: systemFingerprint };
    if (plan.stream) {
      const usageField = includeUsage ? { usage: null } : {};
      const offsets = new Map<number, number>();
      await streamGeneration(
        context,
        reply,
        plan,
        {
          chunk: (index, chunk) => {
            const first = !offsets.has(index);
            const prompt = promptOf(Math.floor(index / plan.n));
            const text = (echo && first ? prompt.text : '') + chunk.text;
            const tokens = [...(echo && first ? scoredPrompt(prompt.ids, chunk.promptLogprobs) : []), ...scoredTokens(chunk.tokens)];
            const offset = offsets.get(index) ?? 0;
            offsets.set(index, offset + text.length);
            const choice = { index, text, logprobs: logprobs === undefined ? null : completionLogprobs(tokenizer, tokens, offset), finish_reason: null };
            return [{ ...envelope, choices: [choice], ...usageField }];
          },
          finish: (outcome) => [
            {
              ...envelope,
              choices: [{ index: outcome.index, text: '', logprobs: null, finish_reason: outcome.finishReason }],
              ...usageField,
            },
          ],
          usage: (counts) => ({ ...envelope, choices: [], usage: counts }),
        },
        includeUsage,
      );
      return reply;
    }

    const { choices, completionTokens } = await runGeneration(context, plan, requestSignal(reply, context.requestTimeoutMs));
    return {
      ...envelope,
      choices: choices.map((outcome) => {
        const prompt = promptOf(outcome.promptIndex);
        const tokens = [...(echo ? scoredPrompt(prompt.ids, outcome.promptLogprobs) : []), ...scoredTokens(outcome.tokens)];
        return {
          index: outcome.index,
          text: (echo ? prompt.text : '') + outcome.text,
          logprobs: logprobs === undefined ? null : completionLogprobs(tokenizer, tokens, 0),
          finish_reason: outcome.finishReason,
        };
      }),
      usage: usage(plan, completionTokens),
    };
  }

  app.post('/v1/completions', createCompletion);
  app.post(enginePath('/completions'), createCompletion);
};
