import type { Engine } from '../engine/engine.js';
import type { FinishReason } from '../engine/protocol.js';
import { generateText, type TextRequest } from '../engine/text-generation.js';
import type { LoadedModel } from '../model/model.js';
import { invalidRequest, modelNotFound, serverBusy } from './errors.js';
import { stopStrings } from './schemas.js';

/** What the routes share: turning validated fields into engine requests and running the choices. */

export interface SamplingFields {
  model: string;
  n?: number | null;
  stop?: string | string[] | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
}

export interface ChoicePlan {
  request: Omit<TextRequest, 'seedStream'>;
  n: number;
}

export interface ChoiceOutcome {
  text: string;
  finishReason: FinishReason;
  completionTokens: number;
}

export function checkModel(model: LoadedModel, requested: string): void {
  if (requested !== model.id) throw modelNotFound(requested);
}

/**
 * Plans the choices of a request: sampling settings and a token budget that fits the context.
 * `maxTokens` is what the client asked for; without it, `defaultMaxTokens` is used, cut to the
 * room the context leaves. A request whose choices do not fit in the batch and the queue is
 * turned away at once (429).
 */
export function planChoices(
  model: LoadedModel,
  engine: Engine,
  promptIds: number[],
  fields: SamplingFields,
  maxTokens: { requested: number | null | undefined; default: number; param: string; promptParam: string },
): ChoicePlan {
  const context = model.config.contextLength;
  if (promptIds.length === 0) throw invalidRequest(`'${maxTokens.promptParam}' must not be empty.`, maxTokens.promptParam, 'invalid_value');
  if (promptIds.length >= context) {
    throw invalidRequest(
      `This model's maximum context length is ${context} tokens. However, your ${maxTokens.promptParam} is ${promptIds.length} tokens long, which leaves no room for a completion. Please reduce the length of the ${maxTokens.promptParam}.`,
      maxTokens.promptParam,
      'context_length_exceeded',
    );
  }
  const room = context - promptIds.length;
  const requested = maxTokens.requested ?? undefined;
  if (requested !== undefined && requested > room) {
    throw invalidRequest(
      `This model's maximum context length is ${context} tokens. However, you requested ${promptIds.length + requested} tokens (${promptIds.length} in the ${maxTokens.promptParam}, ${requested} in the completion). Please reduce the length of the ${maxTokens.promptParam} or completion.`,
      maxTokens.param,
      'context_length_exceeded',
    );
  }
  const n = fields.n ?? 1;
  if (!engine.hasRoomFor(n)) throw serverBusy();
  return {
    n,
    request: {
      promptIds,
      maxTokens: requested ?? Math.min(maxTokens.default, room),
      temperature: fields.temperature ?? model.samplingDefaults.temperature,
      topP: fields.top_p ?? model.samplingDefaults.topP,
      ...(fields.seed !== null && fields.seed !== undefined && { seed: fields.seed }),
      stopTokenIds: model.config.eosTokenIds,
      stop: stopStrings(fields.stop),
    },
  };
}

/** What the logs say of a planned request (never the prompt text). */
export const planSummary = (plan: ChoicePlan, stream: boolean | null | undefined) => ({
  promptTokens: plan.request.promptIds.length,
  n: plan.n,
  maxTokens: plan.request.maxTokens,
  stream: !!stream,
});

export interface ChoiceListener {
  text?(index: number, text: string): void;
  finish?(index: number, outcome: ChoiceOutcome): void;
}

/** Runs the `n` choices of a plan side by side (the engine batches them). */
export async function runChoices(
  engine: Engine,
  model: LoadedModel,
  plan: ChoicePlan,
  signal: AbortSignal,
  listener: ChoiceListener = {},
): Promise<ChoiceOutcome[]> {
  const runOne = async (index: number): Promise<ChoiceOutcome> => {
    const generator = generateText(engine, model.tokenizer, { ...plan.request, seedStream: index }, signal);
    let text = '';
    for (;;) {
      const step = await generator.next();
      if (step.done) {
        const outcome = { text, ...step.value };
        listener.finish?.(index, outcome);
        return outcome;
      }
      text += step.value;
      listener.text?.(index, step.value);
    }
  };
  return Promise.all(Array.from({ length: plan.n }, (_, index) => runOne(index)));
}

export function usage(promptTokens: number, outcomes: readonly ChoiceOutcome[]) {
  const completionTokens = outcomes.reduce((sum, outcome) => sum + outcome.completionTokens, 0);
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

export const createdNow = () => Math.floor(Date.now() / 1000);
