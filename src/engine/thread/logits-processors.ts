import { advanceUtf8, UTF8_START, type TokenBytes, type Utf8State } from '../../grammar/token-bytes.js';
import type { TokenMatcher } from '../../grammar/xgrammar.js';
import type { ReasoningGate, SequenceRequest } from '../protocol.js';

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
 * Processors (a grammar's) that apply only once the reply's thinking has ended, as vLLM applies
 * structured output to reasoning models: the thinking is free text, the answer follows the grammar.
 * Where the prompt does not open the thinking, the reply may still open it with its first token.
 */
export class AfterReasoning implements LogitsProcessor {
  private state: 'undecided' | 'thinking' | 'answering';
  /** The last bytes of the thinking, as long as the end marker. */
  private tail: number[] = [];
  private readonly endBytes: Uint8Array;
  private readonly endTokenId: number | undefined;
  private readonly startTokenId: number | undefined;

  constructor(
    private readonly inner: readonly LogitsProcessor[],
    gate: ReasoningGate,
    /** The bytes a token stands for. */
    private readonly bytesOf: (tokenId: number) => Uint8Array | undefined,
  ) {
    this.endBytes = new TextEncoder().encode(gate.end);
    this.endTokenId = gate.endTokenId;
    this.startTokenId = gate.startTokenId;
    this.state = gate.startsInside ? 'thinking' : gate.startTokenId !== undefined ? 'undecided' : 'answering';
  }

  async prepare(): Promise<void> {
    if (this.state === 'thinking') return;
    for (const processor of this.inner) await processor.prepare?.();
  }

  apply(logits: Float32Array): void {
    if (this.state === 'thinking') return;
    const start = this.startTokenId;
    const kept = this.state === 'undecided' && start !== undefined ? logits[start] : undefined;
    for (const processor of this.inner) processor.apply(logits);
    if (kept !== undefined) logits[start!] = kept;
  }

  accept(tokenId: number): void {
    if (this.state === 'undecided') {
      if (tokenId === this.startTokenId) {
        this.state = 'thinking';
        return;
      }
      this.state = 'answering';
    }
    if (this.state === 'answering') {
      for (const processor of this.inner) processor.accept(tokenId);
      return;
    }
    if (tokenId === this.endTokenId) {
      this.state = 'answering';
      return;
    }
    const bytes = this.bytesOf(tokenId);
    if (!bytes) return;
    this.tail.push(...bytes);
    const marker = this.endBytes;
    if (this.tail.length > marker.length) this.tail.splice(0, this.tail.length - marker.length);
    if (this.tail.length === marker.length && this.tail.every((byte, index) => byte === marker[index])) this.state = 'answering';
  }

  end(): void {
    for (const processor of this.inner) processor.end?.();
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
