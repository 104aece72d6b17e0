import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { responseId } from './ids.js';
import { chatLogprobs } from './logprobs.js';
import { ChatCompletionRequestSchema } from './schemas.js';
import { createdNow, planSummary, runGeneration, usage, type ServingContext } from './serving.js';
import { validateChat } from './validated-request.js';
import { requestSignal, streamGeneration } from './streaming.js';
import { parseBody } from './validation.js';

export const chatRoutes: FastifyPluginAsync<ServingContext> = async (app, context) => {
  const { model, systemFingerprint } = context;
  const { tokenizer } = model;

  /** `POST /v1/chat/completions`: validate, run, and answer as one JSON body or as a stream of chunks. */
  async function createChatCompletion(request: FastifyRequest, reply: FastifyReply) {
    const body = parseBody(ChatCompletionRequestSchema, request.body);
    const plan = await validateChat(context, body);
    request.log.info(planSummary(plan, plan.stream), 'chat completion');
    request.log.debug({ messages: body.messages }, 'chat messages');
    const { logprobs, includeUsage } = plan;

    const id = responseId('chatcmpl');
    const created = createdNow();
    if (plan.stream) {
      const envelope = { id, object: 'chat.completion.chunk' as const, created, model: model.id, system_fingerprint: systemFingerprint, ...(includeUsage && { usage: null }) };
      const chunk = (index: number, delta: Record<string, string>, logprobsField: unknown, finishReason: string | null) => ({
        ...envelope,
        choices: [{ index, delta, logprobs: logprobsField, finish_reason: finishReason }],
      });
      await streamGeneration(
        context,
        reply,
        plan,
        {
          start: (index) => chunk(index, { role: 'assistant', content: '' }, null, null),
          chunk: (index, piece) => chunk(index, { content: piece.text }, logprobs === undefined ? null : chatLogprobs(tokenizer, piece.tokens), null),
          finish: (outcome) => chunk(outcome.index, {}, null, outcome.finishReason),
          usage: (counts) => ({ ...envelope, choices: [], usage: counts }),
        },
        includeUsage,
      );
      return reply;
    }
    const { choices, completionTokens } = await runGeneration(context, plan, requestSignal(reply, context.requestTimeoutMs));
    return {
      id,
      object: 'chat.completion' as const,
      created,
      model: model.id,
      system_fingerprint: systemFingerprint,
      choices: choices.map((outcome) => ({
        index: outcome.index,
        message: { role: 'assistant' as const, content: outcome.text, refusal: null },
        logprobs: logprobs === undefined ? null : chatLogprobs(tokenizer, outcome.tokens),
        finish_reason: outcome.finishReason,
      })),
      usage: usage(plan, completionTokens),
    };
  }

  app.post('/v1/chat/completions', createChatCompletion);
};
