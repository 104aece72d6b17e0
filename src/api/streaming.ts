import type { FastifyReply } from 'fastify';
import type { Engine } from '../engine/engine.js';
import type { LoadedModel } from '../model/model.js';
import { OpenAIError } from './errors.js';
import { runChoices, type ChoiceOutcome, type ChoicePlan } from './serving.js';
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

/** The chunks of one endpoint's stream; each returns the event to send, or nothing. */
export interface ChunkFormat {
  start?(index: number): unknown;
  text(index: number, text: string): unknown;
  finish(index: number, outcome: ChoiceOutcome): unknown;
}

/** Streams the choices of a plan as server-sent events, ending with `[DONE]` or an error event. */
export async function streamChoices(
  reply: FastifyReply,
  engine: Engine,
  model: LoadedModel,
  plan: ChoicePlan,
  format: ChunkFormat,
): Promise<void> {
  const signal = disconnectSignal(reply);
  const sse = new SseStream(reply);
  try {
    if (format.start) for (let index = 0; index < plan.n; index++) sse.send(format.start(index));
    await runChoices(engine, model, plan, signal, {
      text: (index, text) => sse.send(format.text(index, text)),
      finish: (index, outcome) => sse.send(format.finish(index, outcome)),
    });
    sse.done();
  } catch (err) {
    const apiError = toOpenAIError(err);
    reply.log.error({ err }, 'stream failed');
    sse.fail(apiError.toBody());
  }
}
