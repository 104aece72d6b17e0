import type { FastifyReply } from 'fastify';
import type { Engine } from '../engine/engine.js';
import type { TextChunk } from '../engine/text-generation.js';
import type { LoadedModel } from '../model/model.js';
import { OpenAIError } from './errors.js';
import { runGeneration, usage, type ChoiceOutcome, type GenerationPlan } from './serving.js';
import { SseStream } from './sse.js';

/** Aborts when the client goes away before its response is complete. */
export function disconnectSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableEnded) controller.abort();
  });
  return controller.signal;
}

export function toOpenAIError(err: unknown): OpenAIError {
  if (err instanceof OpenAIError) return err;
  return new OpenAIError(500, `The server had an error while processing your request: ${(err as Error).message}`);
}

/** The events of one endpoint's stream. */
export interface ChunkFormat {
  /** Sent for every choice before any text (chat's role delta). */
  start?(index: number): unknown;
  chunk(index: number, chunk: TextChunk): unknown;
  finish(outcome: ChoiceOutcome): unknown;
  /** The last event when the client asked for usage: empty choices and the token counts. */
  usage(counts: ReturnType<typeof usage>): unknown;
}

/** Streams the choices of a plan as server-sent events, ending with `[DONE]` or an error event. */
export async function streamGeneration(
  reply: FastifyReply,
  engine: Engine,
  model: LoadedModel,
  plan: GenerationPlan,
  format: ChunkFormat,
  includeUsage: boolean,
): Promise<void> {
  const signal = disconnectSignal(reply);
  const sse = new SseStream(reply);
  try {
    const choices = plan.prompts.length * plan.n;
    if (format.start) for (let index = 0; index < choices; index++) sse.send(format.start(index));
    const { completionTokens } = await runGeneration(engine, model, plan, signal, {
      chunk: (index, chunk) => sse.send(format.chunk(index, chunk)),
      finish: (outcome) => sse.send(format.finish(outcome)),
    });
    if (includeUsage) sse.send(format.usage(usage(plan, completionTokens)));
    sse.done();
  } catch (err) {
    reply.log.error({ err }, 'stream failed');
    sse.fail(toOpenAIError(err).toBody());
  }
}
