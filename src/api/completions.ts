import type { FastifyPluginAsync } from 'fastify';
import { invalidRequest } from './errors.js';
import { responseId } from './ids.js';
import { completionLogprobs, scoredPrompt, scoredTokens } from './logprobs.js';
import { CompletionRequestSchema, type CompletionRequest } from './schemas.js';
import { checkLimits, checkPromptCount } from './limits.js';
import { checkModel, checkTokenIds, encodePrompts, createdNow, planGeneration, planSummary, runGeneration, usage, type ServingContext } from './serving.js';
import { requestSignal, streamGeneration } from './streaming.js';
import { parseBody } from './validation.js';

/** OpenAI's default for the legacy completions endpoint. */
const DEFAULT_MAX_TOKENS = 16;

interface PromptInput {
  ids: number[];
  /** The prompt as text, for `echo`. */
  text: string;
}

/** The four forms of `prompt`: text, texts, token ids, lists of token ids. */
async function promptInputs(context: ServingContext, prompt: CompletionRequest['prompt']): Promise<PromptInput[]> {
  const { model } = context;
  const fromIds = (ids: number[]) => {
    checkTokenIds(model, ids, 'prompt');
    return { ids, text: model.tokenizer.decode(ids) };
  };
  const fromTexts = async (texts: string[]) => {
    const ids = await encodePrompts(context, texts, 'prompt');
    return texts.map((text, index) => ({ ids: ids[index]!, text }));
  };
  if (typeof prompt === 'string') return fromTexts([prompt]);
  if (prompt.every((item): item is string => typeof item === 'string')) return fromTexts(prompt);
  if (prompt.every((item): item is number => typeof item === 'number')) return [fromIds(prompt)];
  return (prompt as number[][]).map(fromIds);
}

export const completionRoutes: FastifyPluginAsync<ServingContext> = async (app, context) => {
  const { model, systemFingerprint, limits } = context;
  const { tokenizer } = model;

  app.post('/v1/completions', async (request, reply) => {
    const body = parseBody(CompletionRequestSchema, request.body);
    checkModel(model, body.model);
    if (body.suffix) throw invalidRequest("'suffix' is not supported by this server.", 'suffix', 'unsupported_parameter');
    checkLimits(body, limits, { value: body.max_tokens, param: 'max_tokens' });
    checkPromptCount(Array.isArray(body.prompt) && typeof body.prompt[0] !== 'number' ? body.prompt.length : 1, limits);
    const n = body.n ?? 1;
    if (body.stream && body.best_of && body.best_of > n) {
      throw invalidRequest("'best_of' greater than 'n' cannot be used with 'stream'.", 'best_of', 'unsupported_value');
    }
    const prompts = await promptInputs(context, body.prompt);
    const logprobs = body.logprobs ?? undefined;
    const echo = !!body.echo;
    const plan = planGeneration(context, prompts.map((p) => p.ids), body, {
      budget: { requested: body.max_tokens, default: DEFAULT_MAX_TOKENS, param: 'max_tokens', promptParam: 'prompt' },
      ...(logprobs !== undefined && { logprobs }),
      ...(echo && logprobs !== undefined && { promptLogprobs: logprobs }),
      ...(body.best_of !== null && body.best_of !== undefined && { bestOf: body.best_of }),
    });
    request.log.info(planSummary(plan, body.stream), 'completion');
    request.log.debug({ prompt: body.prompt }, 'completion prompt');

    const envelope = { id: responseId('cmpl'), object: 'text_completion' as const, created: createdNow(), model: model.id, system_fingerprint: systemFingerprint };
    const promptOf = (index: number) => prompts[Math.floor(index / plan.n)]!;

    if (body.stream) {
      const includeUsage = !!body.stream_options?.include_usage;
      const usageField = includeUsage ? { usage: null } : {};
      const offsets = new Map<number, number>();
      await streamGeneration(
        context,
        reply,
        plan,
        {
          chunk: (index, chunk) => {
            const first = !offsets.has(index);
            const prompt = promptOf(index);
            const text = (echo && first ? prompt.text : '') + chunk.text;
            const tokens = [...(echo && first ? scoredPrompt(prompt.ids, chunk.promptLogprobs) : []), ...scoredTokens(chunk.tokens)];
            const offset = offsets.get(index) ?? 0;
            offsets.set(index, offset + text.length);
            const choice = { index, text, logprobs: logprobs === undefined ? null : completionLogprobs(tokenizer, tokens, offset), finish_reason: null };
            return { ...envelope, choices: [choice], ...usageField };
          },
          finish: (outcome) => ({
            ...envelope,
            choices: [{ index: outcome.index, text: '', logprobs: null, finish_reason: outcome.finishReason }],
            ...usageField,
          }),
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
        const prompt = prompts[outcome.promptIndex]!;
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
  });
};
