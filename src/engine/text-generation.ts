import { IncrementalDetokenizer, type TokenDecoder } from './detokenizer.js';
import type { Engine, GenerationRequest } from './engine.js';
import type { FinishReason } from './protocol.js';
import { StopStringMatcher } from './stop-strings.js';

export interface TextRequest extends GenerationRequest {
  /** Up to four strings that end the text; the text returned stops right before the first one. */
  stop: readonly string[];
}

export interface TextResult {
  finishReason: FinishReason;
  completionTokens: number;
}

/**
 * One choice of a completion: generates tokens, turns them into text deltas (never half a UTF-8
 * character) and ends at EOS, at the token limit or before a stop string, which is never emitted.
 * The generator's return value says why it ended and how many tokens it took.
 */
export async function* generateText(
  engine: Engine,
  decoder: TokenDecoder,
  request: TextRequest,
  signal?: AbortSignal,
): AsyncGenerator<string, TextResult> {
  const stopTokens = new Set(request.stopTokenIds);
  const detokenizer = new IncrementalDetokenizer(decoder, request.promptIds);
  const stops = new StopStringMatcher(request.stop);
  const controller = new AbortController();
  const abort = () => controller.abort();
  signal?.addEventListener('abort', abort, { once: true });
  let completionTokens = 0;
  let finishReason: FinishReason = 'length';
  try {
    for await (const update of engine.generate(request, controller.signal)) {
      completionTokens++;
      const text = stopTokens.has(update.tokenId) ? '' : detokenizer.push(update.tokenId);
      const last = update.finishReason !== undefined;
      const scan = stops.push(last ? text + detokenizer.flush() : text);
      if (scan.text) yield scan.text;
      if (scan.stopped) {
        finishReason = 'stop';
        controller.abort();
        break;
      }
      if (last) {
        finishReason = update.finishReason!;
        const rest = stops.flush();
        if (rest) yield rest;
      }
    }
  } finally {
    signal?.removeEventListener('abort', abort);
    controller.abort();
  }
  return { finishReason, completionTokens };
}
