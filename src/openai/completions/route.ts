import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { responseId } from '../ids.js';
import { completionLogprobs, concatLogprobs } from '../logprobs.js';
import { spellPrompt } from '../../generation/text-generation.js';
import type { TokenLogprob } from '../../engine/protocol.js';
import { CompletionRequestSchema } from '../schemas.js';
import { createdNow, planSummary, runGeneration, usage } from '../../generation/run.js';
import type { ServedModels } from '../../generation/served-models.js';
import { validateGeneration } from '../../generation/validate.js';
import { completionRequest } from './request.js';
import { streamGeneration } from '../streaming.js';
import { requestScope, servedContext } from '../../http/request-scope.js';
import { bodyWithEngine, enginePath } from '../engines/route.js';
import { parseBody } from '../parse-body.js';

export const completionRoutes: FastifyPluginAsync<{ models: ServedModels }> = async (app, { models }) => {
  /** `POST /v1/completions`: validate, run, and answer as one JSON body or as a stream of chunks. */
  async function createCompletion(request: FastifyRequest, reply: FastifyReply) {
    const body = parseBody(CompletionRequestSchema, bodyWithEngine(request));
    const context = await servedContext(models, body.model, reply);
    const { model, systemFingerprint } = context;
    const { tokenizer } = model;
    const scope = requestScope(request, reply, context);
    const plan = await validateGeneration(context, completionRequest(body), scope);
    request.log.info(planSummary(plan), 'completion');
    request.log.debug({ prompt: body.prompt }, 'completion prompt');
    const { echo, logprobs, includeUsage } = plan.reporting;
    // With `echo`, each prompt is spelled once, for all its choices (they share its log-probabilities).
    const echoed = new Map<number, ReturnType<typeof spellPrompt>>();
    const echoOf = (promptIndex: number, promptLogprobs: TokenLogprob[] | undefined) => {
      let prompt = echoed.get(promptIndex);
      if (!prompt) echoed.set(promptIndex, (prompt = spellPrompt(tokenizer, plan.prompts[promptIndex]!, promptLogprobs)));
      return prompt;
    };

    const envelope = { id: responseId('cmpl'), object: 'text_completion' as const, created: createdNow(), model: model.id, system_fingerprint: systemFingerprint };
    if (plan.reporting.stream) {
      const usageField = includeUsage ? { usage: null } : {};
      const started = new Set<number>();
      await streamGeneration(
        context,
        reply,
        plan,
        {
          chunk: (index, chunk) => {
            const first = !started.has(index);
            started.add(index);
            const prompt = echo ? echoOf(Math.floor(index / plan.n), chunk.promptLogprobs) : undefined;
            const base = prompt?.text.length ?? 0;
            const generated = () => completionLogprobs(chunk.tokens, base);
            const choice = {
              index,
              text: (prompt && first ? prompt.text : '') + chunk.text,
              logprobs: logprobs === undefined ? null : prompt && first ? concatLogprobs(completionLogprobs(prompt.tokens), generated()) : generated(),
              finish_reason: null,
            };
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
        scope.signal,
      );
      return reply;
    }

    const generation = await runGeneration(context, plan, scope.signal);
    const { choices } = generation;
    return {
      ...envelope,
      choices: choices.map((outcome) => {
        const prompt = echo ? echoOf(outcome.promptIndex, outcome.promptLogprobs) : undefined;
        const generated = completionLogprobs(outcome.tokens, prompt?.text.length ?? 0);
        return {
          index: outcome.index,
          text: (prompt?.text ?? '') + outcome.text,
          logprobs: logprobs === undefined ? null : prompt ? concatLogprobs(completionLogprobs(prompt.tokens), generated) : generated,
          finish_reason: outcome.finishReason,
        };
      }),
      usage: usage(plan, generation),
    };
  }

  app.post('/v1/completions', createCompletion);
  app.post(enginePath('/completions'), createCompletion);
};
