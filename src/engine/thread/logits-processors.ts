import { advanceUtf8, UTF8_START, type TokenBytes, type Utf8State } from '../../grammar/token-bytes.js';
import type { TokenMatcher } from '../../grammar/xgrammar.js';
import type { SequenceRequest } from '../protocol.js';

/**
 * A step of logit processing before sampling. Each sequence has processors of its own, so a
 * processor may keep state about its sequence (the tokens seen, a grammar's position, …).
 */
export interface LogitsProcessor {
  /** Work `apply` needs that cannot be done synchronously; awaited before each `apply` when present. */
  prepare?(): Promise<void>;
  /** Changes the logits of the sequence's next token in place. */
  apply(logits: Float32Array): void;
  /** The token the sequence took. */
  accept(tokenId: number): void;
  /** The sequence finished or was cancelled. */
  end?(): void;
}

/**
 * OpenAI's presence and frequency penalties: logit[j] −= count[j] × frequency_penalty +
 * (count[j] > 0) × presence_penalty, where count[j] is how often token j has been generated.
 */
export class PenaltyProcessor implements LogitsProcessor {
  private readonly counts = new Map<number, number>();

  constructor(
    private readonly presencePenalty: number,
    private readonly frequencyPenalty: number,
  ) {}

  apply(logits: Float32Array): void {
    for (const [token, count] of this.counts) logits[token]! -= count * this.frequencyPenalty + this.presencePenalty;
  }

  accept(tokenId: number): void {
    this.counts.set(tokenId, (this.counts.get(tokenId) ?? 0) + 1);
  }
}

/** Adds a bias to the logits of given token ids; −100 bans a token, 100 all but forces it. */
export class LogitBiasProcessor implements LogitsProcessor {
  constructor(private readonly bias: readonly (readonly [number, number])[]) {}

  apply(logits: Float32Array): void {
    for (const [token, bias] of this.bias) {
      if (token >= 0 && token < logits.length) logits[token]! += bias;
    }
  }

  accept(): void {}
}

/**
 * Constrained decoding: every token the grammar does not allow next gets −∞, so that whatever the
 * sampler picks keeps the output inside the grammar. Applies last, after penalties and biases.
 */
export class GrammarProcessor implements LogitsProcessor {
  private mask: Int32Array | undefined;

  constructor(
    private readonly matcher: TokenMatcher,
    /** Allowed when the grammar allows nothing (it never should): the sequence then ends instead of sampling noise. */
    private readonly stopTokenIds: readonly number[],
  ) {}

  async prepare(): Promise<void> {
    this.mask = await this.matcher.nextTokenMask();
  }

  apply(logits: Float32Array): void {
    const mask = this.mask;
    if (!mask) throw new Error('GrammarProcessor.apply before prepare');
    let anyAllowed = false;
    // A word at a time: most words of a mask allow all of their 32 tokens or none.
    for (let word = 0, start = 0; start < logits.length; word++, start += 32) {
      const bits = mask[word] ?? 0;
      if (bits === -1) {
        anyAllowed = true;
        continue;
      }
      const end = Math.min(start + 32, logits.length);
      if (bits === 0) {
        logits.fill(Number.NEGATIVE_INFINITY, start, end);
        continue;
      }
      anyAllowed = true;
      for (let token = start; token < end; token++) if (!((bits >>> (token - start)) & 1)) logits[token] = Number.NEGATIVE_INFINITY;
    }
    if (!anyAllowed) for (const token of this.stopTokenIds) logits[token] = 0;
  }

  accept(tokenId: number): void {
    this.mask = undefined;
    this.matcher.accept(tokenId);
  }

  end(): void {
    this.matcher.dispose();
  }
}

/**
 * Keeps constrained output well-formed UTF-8. The grammar engine lets through byte tokens that no
 * UTF-8 text has (0xC0, 0xF5, an overlong or surrogate sequence), which the detokenizer turns into
 * U+FFFD, one per byte: a string could then break its own maxLength. Applies after the grammar, to
 * the tokens it allowed that carry bytes past ASCII.
 */
export class Utf8Processor implements LogitsProcessor {
  private state: Utf8State = UTF8_START;

  /** `nonAscii`: the ids of the tokens that have bytes in `bytes`. */
  constructor(
    private readonly bytes: TokenBytes,
    private readonly nonAscii: readonly number[],
  ) {}

  apply(logits: Float32Array): void {
    const { bytes, state } = this;
    const check = (token: number) => {
      if (logits[token] !== Number.NEGATIVE_INFINITY && !advanceUtf8(state, bytes[token])) logits[token] = Number.NEGATIVE_INFINITY;
    };
    // After a whole character only tokens with bytes past ASCII can go wrong; inside one, any token can.
    if (state.needed === 0) for (const token of this.nonAscii) check(token);
    else for (let token = 0; token < logits.length; token++) check(token);
  }

  accept(tokenId: number): void {
    this.state = advanceUtf8(this.state, this.bytes[tokenId]) ?? UTF8_START;
  }
}

/** The processors a request asks for, in the order they apply: penalties, then the bias. */
export function logitsProcessors(request: Pick<SequenceRequest, 'presencePenalty' | 'frequencyPenalty' | 'logitBias'>): LogitsProcessor[] {
  const chain: LogitsProcessor[] = [];
  if (request.presencePenalty !== 0 || request.frequencyPenalty !== 0) chain.push(new PenaltyProcessor(request.presencePenalty, request.frequencyPenalty));
  if (request.logitBias.length > 0) chain.push(new LogitBiasProcessor(request.logitBias));
  return chain;
}
