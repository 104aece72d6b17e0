import type { SequenceStream } from '../engine/client/engine.js';
import type { FinishReason, TokenLogprob } from '../engine/protocol.js';
import { StopStringMatcher } from './stop-strings.js';
import { TokenSpeller, type SpellingTokenizer, type TokenSpelling } from './token-speller.js';

/** What turning a sequence's tokens into text needs to know. */
export interface TextOptions {
  promptIds: readonly number[];
  /** Token ids that end the sequence (EOS): counted, but not part of the text. */
  stopTokenIds: readonly number[];
  /** Strings that end the text; the text returned stops right before the first one. */
  stop: readonly string[];
}

/** A token the model could have taken, spelled where it would have stood. */
export interface TokenAlternative extends TokenSpelling {
  id: number;
  logprob: number;
}

/** A token of the text: how it is spelled there, where its text starts, and its log-probability when asked for. */
export interface GeneratedToken extends TokenSpelling {
  id: number;
  /** Where the token's text starts in the text generated so far. */
  offset: number;
  logprob?: number;
  /** The most likely tokens at its position, when log-probabilities are asked for. */
  top?: TokenAlternative[];
}

/** A piece of the completion: its text and the tokens whose text is in it (or, for unfinished characters, about to be). */
export interface TextChunk {
  text: string;
  tokens: GeneratedToken[];
  /** On the first chunk, when asked for: log-probabilities of the prompt's tokens after the first. */
  promptLogprobs?: TokenLogprob[];
}

export interface TextResult {
  finishReason: FinishReason;
  /** The stop string that ended the text, when one did. */
  stopString?: string;
  completionTokens: number;
  /** Prompt tokens whose KV came from the prefix cache. */
  cachedTokens: number;
}

/**
 * Tokens wait here until their text has gone out: text may be held back (an unfinished character,
 * the start of what may be a stop string) and, once a stop string is found, the tokens past it are
 * no part of the text.
 */
class TokenQueue {
  private readonly tokens: GeneratedToken[] = [];

  add(token: GeneratedToken): void {
    this.tokens.push(token);
  }

  /** The last token taken, while it is still here. */
  get last(): GeneratedToken | undefined {
    return this.tokens[this.tokens.length - 1];
  }

  /** The tokens whose text ends by `end`, but the last `heldTail`. */
  release(end: number, heldTail: number): GeneratedToken[] {
    let count = 0;
    const limit = this.tokens.length - heldTail;
    while (count < limit && this.tokens[count]!.offset + this.tokens[count]!.text.length <= end) count++;
    return this.tokens.splice(0, count);
  }

  /** All tokens that begin before `cut`, the text of the last one cut there. */
  cut(cut: number): GeneratedToken[] {
    const kept = this.tokens.splice(0).filter((token) => token.offset < cut);
    const last = kept[kept.length - 1];
    if (last && last.offset + last.text.length > cut) {
      last.text = last.text.slice(0, cut - last.offset);
      last.bytes = [...Buffer.from(last.text, 'utf8')];
    }
    return kept;
  }
}

/**
 * One choice of a completion: generates tokens, turns them into text (never half a UTF-8
 * character) and ends at EOS, at the token limit or before a stop string, which is never emitted.
 * A chunk is yielded whenever text is ready, with the tokens whose text it completes: the tokens'
 * texts join to the text, and each token's offset says where it stands in it. The generator's
 * return value says why it ended and how many tokens it took. End-of-sequence tokens count as
 * generated but carry no text.
 */
export async function* generateText(tokens: SequenceStream, tokenizer: SpellingTokenizer, options: TextOptions): AsyncGenerator<TextChunk, TextResult> {
  const stopTokens = new Set(options.stopTokenIds);
  const speller = new TokenSpeller(tokenizer, options.promptIds);
  const stops = new StopStringMatcher(options.stop);
  const queue = new TokenQueue();
  let completionTokens = 0;
  let cachedTokens = 0;
  let finishReason: FinishReason = 'length';
  let stopString: string | undefined;
  /** Length of the text of every token so far, and of the part of it sent. */
  let spelled = 0;
  let sent = 0;
  let promptLogprobs: TokenLogprob[] | undefined;
  /** Tokens whose text is out, for the next chunk. */
  let ready: GeneratedToken[] = [];
  const chunk = (text: string, released: GeneratedToken[]): TextChunk => {
    const result = { text, tokens: [...ready, ...released], ...(promptLogprobs && { promptLogprobs }) };
    promptLogprobs = undefined;
    ready = [];
    return result;
  };
  try {
    // Stop strings are matched here, on the text: only token ids go to the engine.
    for await (const update of tokens) {
      if (update.promptLogprobs) promptLogprobs = update.promptLogprobs;
      if (update.cachedTokens !== undefined) cachedTokens = update.cachedTokens;
      let text = '';
      if (update.tokenId !== undefined) {
        completionTokens++;
        if (!stopTokens.has(update.tokenId)) {
          const token = spell(speller, update.tokenId, update.logprob, spelled);
          queue.add(token);
          spelled += token.text.length;
          text = token.text;
        }
      }
      const last = update.finishReason !== undefined;
      if (last) {
        // An unfinished character at the very end is the last token's text, as U+FFFD.
        const rest = speller.flush();
        const lastToken = queue.last;
        if (rest && lastToken && lastToken.offset === spelled) lastToken.text += rest;
        spelled += rest.length;
        text += rest;
      }
      const scan = stops.push(text);
      sent += scan.text.length;
      if (scan.stopped) {
        finishReason = 'stop';
        stopString = scan.matched;
        tokens.cancel();
        yield chunk(scan.text, queue.cut(sent));
        break;
      }
      if (last) {
        finishReason = update.finishReason!;
        const rest = stops.flush();
        sent += rest.length;
        yield chunk(scan.text + rest, queue.release(sent, 0));
      } else {
        // Tokens that begin an unfinished character wait for the one that finishes it.
        const released = queue.release(sent, speller.heldTokens);
        if (scan.text) yield chunk(scan.text, released);
        else ready.push(...released);
      }
    }
  } finally {
    // Whatever ends the text early (a stop string, a consumer that stops reading) ends the sequence.
    tokens.cancel();
  }
  return { finishReason, completionTokens, cachedTokens, ...(stopString !== undefined && { stopString }) };
}

/** A sampled token spelled in context, with its alternatives spelled where it stands. */
function spell(speller: TokenSpeller, id: number, logprob: TokenLogprob | undefined, offset: number): GeneratedToken {
  const alternatives = logprob?.top.map(([alternative, value]) => ({ id: alternative, logprob: value, spelling: alternative === id ? undefined : speller.peek(alternative) }));
  const spelling = speller.push(id);
  const token: GeneratedToken = { id, offset, ...spelling };
  if (logprob) {
    token.logprob = logprob.logprob;
    token.top = alternatives!.map((alternative) => ({ id: alternative.id, logprob: alternative.logprob, ...(alternative.spelling ?? spelling) }));
  }
  return token;
}

/**
 * The prompt's tokens spelled from its start, special tokens by their text, without a leading BOS
 * (it is no part of the text), with their log-probabilities when given (`logprobs[i]` is that of
 * token i + 1: the first token of a text has none). Their texts join to the prompt as the model
 * read it, which is `text`.
 */
export function spellPrompt(tokenizer: SpellingTokenizer, ids: readonly number[], logprobs?: readonly TokenLogprob[]): { text: string; tokens: GeneratedToken[] } {
  const first = ids.length > 0 && ids[0] === tokenizer.bosTokenId ? 1 : 0;
  const speller = new TokenSpeller(tokenizer, [], true);
  const tokens: GeneratedToken[] = [];
  let offset = 0;
  for (let i = first; i < ids.length; i++) {
    const token = spell(speller, ids[i]!, i === 0 ? undefined : logprobs?.[i - 1], offset);
    tokens.push(token);
    offset += token.text.length;
  }
  const rest = speller.flush();
  if (rest && tokens.length > 0) tokens[tokens.length - 1]!.text += rest;
  return { text: tokens.map((token) => token.text).join(''), tokens };
}
