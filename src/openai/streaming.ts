import type { FastifyReply } from 'fastify';
import type { TextChunk } from '../generation/text-generation.js';
import { toOpenAIError } from '../errors.js';
import { logFailure } from '../http/error-handling.js';
import { runGeneration, usage, type ChoiceOutcome } from '../generation/run.js';
import { type ServingContext } from '../generation/context.js';
import type { ValidatedRequest } from '../generation/validate.js';
import { SseStream } from '../http/sse.js';

/** The events of one endpoint's stream. */
export interface ChunkFormat {
  /** Sent for every choice before any text (chat's role delta). */
  start?(index: number): unknown;
  /** The events for a piece of a choice's text: none when it is held back. */
  chunk(index: number, chunk: TextChunk): readonly unknown[];
  finish(outcome: ChoiceOutcome): readonly unknown[];
  /** The last event when the client asked for usage: empty choices and the token counts. */
  usage(counts: ReturnType<typeof usage>): unknown;
}

/** Streams the choices of a plan as server-sent events, ending with `[DONE]` or an error event. */
export async function streamGeneration(
  context: ServingContext,
  reply: FastifyReply,
  plan: ValidatedRequest,
  format: ChunkFormat,
  includeUsage: boolean,
  signal: AbortSignal,
): Promise<void> {
  const sse = new SseStream(reply);
  try {
    const choices = plan.prompts.length * plan.n;
    if (format.start) for (let index = 0; index < choices; index++) sse.send(format.start(index));
    const generation = await runGeneration(context, plan, signal, {
      chunk: (index, chunk) => {
        for (const event of format.chunk(index, chunk)) sse.send(event);
      },
      finish: (outcome) => {
        for (const event of format.finish(outcome)) sse.send(event);
      },
    });
    if (includeUsage) sse.send(format.usage(usage(plan, generation)));
    sse.done();
  } catch (err) {
    const apiError = toOpenAIError(err);
    logFailure(reply.log, err, apiError, 'stream failed');
    sse.fail(apiError.toBody());
  }
}
