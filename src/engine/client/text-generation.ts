import { IncrementalDetokenizer, type TokenDecoder } from './detokenizer.js';
import type { SequenceStream } from './engine.js';
import type { FinishReason, TokenLogprob } from '../protocol.js';
import { StopStringMatcher } from './stop-strings.js';

/** What turning a sequence's tokens into text needs to know. */
export interface TextOptions {
  promptIds: readonly number[];
  /** Token ids that end the sequence (EOS): counted, but not part of the text. */
  stopTokenIds: readonly number[];
  /** Strings that end the text; the text returned stops right before the first one. */
  stop: readonly string[];
}

export interface GeneratedToken {
  id: number;
  logprob?: TokenLogprob;
}

/** A piece of the completion: its text and the tokens that produced it. */
export interface TextChunk {
  text: string;
  tokens: GeneratedToken[];
  /** On the first chunk, when asked for: log-probabilities of the prompt's tokens after the first. */
  promptLogprobs?: TokenLogprob[];
}

export interface TextResult {
  finishReason: FinishReason;
  completionTokens: number;
}

/**
 * One choice of a completion: generates tokens, turns them into text (never half a UTF-8
 * character) and ends at EOS, at the token limit or before a stop string, which is never emitted.
 * A chunk is yielded whenever text is ready; the generator's return value says why it ended and
 * how many tokens it took. End-of-sequence tokens count as generated but carry no text.
 */
export async function* generateText(tokens: SequenceStream, decoder: TokenDecoder, options: TextOptions): AsyncGenerator<TextChunk, TextResult> {
  const stopTokens = new Set(options.stopTokenIds);
  const detokenizer = new IncrementalDetokenizer(decoder, options.promptIds);
  const stops = new StopStringMatcher(options.stop);
  let completionTokens = 0;
  let finishReason: FinishReason = 'length';
  let pending: TextChunk = { text: '', tokens: [] };
  const take = (text: string): TextChunk => {
    const chunk = { ...pending, text };
    pending = { text: '', tokens: [] };
    return chunk;
  };
  try {
    // Stop strings are matched here, on the text: only token ids go to the engine.
    for await (const update of tokens) {
      completionTokens++;
      if (update.promptLogprobs) pending.promptLogprobs = update.promptLogprobs;
      const isStopToken = stopTokens.has(update.tokenId);
      if (!isStopToken) pending.tokens.push({ id: update.tokenId, ...(update.logprob && { logprob: update.logprob }) });
      const text = isStopToken ? '' : detokenizer.push(update.tokenId);
      const last = update.finishReason !== undefined;
      const scan = stops.push(last ? text + detokenizer.flush() : text);
      if (scan.stopped) {
        finishReason = 'stop';
        tokens.cancel();
        yield take(scan.text);
        break;
      }
      if (last) {
        finishReason = update.finishReason!;
        yield take(scan.text + stops.flush());
      } else if (scan.text) {
        yield take(scan.text);
      }
    }
  } finally {
    // Whatever ends the text early (a stop string, a consumer that stops reading) ends the sequence.
    tokens.cancel();
  }
  return { finishReason, completionTokens };
}
