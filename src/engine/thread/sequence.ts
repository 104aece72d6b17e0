import type { FinishReason, SequenceRequest, TokenLogprob, TokenUpdate } from '../protocol.js';
import { tokenLogprob } from './logits.js';
import { logitsProcessors, type LogitsProcessor } from './logits-processors.js';
import { Rng } from './rng.js';
import { sampleToken } from './sampling.js';

/**
 * One sequence in the engine: its request, where it stands, and the processors its logits pass
 * through. Takes each next token from the logits and decides when the sequence ends.
 */
export class Sequence {
  /** KV-cache tokens this sequence may grow to. */
  readonly reservedTokens: number;
  /** Tokens in the sequence so far: prompt and generated. */
  length: number;
  generated = 0;
  lastToken: number;
  /** Log-probabilities of the prompt's tokens when asked for: set once its prefill is done, reported with the first token. */
  promptLogprobs: TokenLogprob[] | undefined;
  finished = false;
  cancelled = false;
  private readonly rng: Rng;
  /** Processors with asynchronous work before each token. */
  private readonly preparing: readonly LogitsProcessor[];

  /** `processors` change the logits in order before each token is sampled; by default those `request` asks for. */
  constructor(
    readonly request: SequenceRequest,
    private readonly contextLength: number,
    private readonly processors: readonly LogitsProcessor[] = logitsProcessors(request),
  ) {
    const { promptIds } = request;
    this.reservedTokens = Math.min(promptIds.length + request.maxTokens, contextLength);
    this.length = promptIds.length;
    this.lastToken = promptIds[promptIds.length - 1]!;
    this.rng = request.seed === undefined ? Rng.random() : new Rng(request.seed, request.seedStream);
    this.preparing = processors.filter((processor) => processor.prepare);
  }

  /** Whether `prepare` must be awaited before each `accept`. */
  get needsPreparation(): boolean {
    return this.preparing.length > 0;
  }

  /** Readies the processors for the next token (a grammar's mask of allowed tokens, say). */
  async prepare(): Promise<void> {
    for (const processor of this.preparing) await processor.prepare!();
  }

  /**
   * Samples the next token from `logits` (which the processors change in place; `scratch` is
   * sampling's work space) and reports it, with its log-probability under the model's own
   * distribution when asked for, and a finish reason on the last one.
   */
  accept(logits: Float32Array, scratch: Float64Array): TokenUpdate {
    const { request } = this;
    if (request.maxTokens === 0) return this.scored();
    const processed = this.processors.length > 0;
    const raw = processed && request.logprobs !== undefined ? logits.slice() : logits;
    for (const processor of this.processors) processor.apply(logits);
    const tokenId = sampleToken(logits, request, this.rng, scratch);
    for (const processor of this.processors) processor.accept(tokenId);
    this.generated++;
    this.length++;
    this.lastToken = tokenId;
    let finishReason: FinishReason | undefined;
    if (request.stopTokenIds.includes(tokenId)) finishReason = 'stop';
    else if (this.generated >= request.maxTokens || this.length >= this.contextLength) finishReason = 'length';
    const update: TokenUpdate = { id: request.id, tokenId };
    if (request.logprobs !== undefined) update.logprob = tokenLogprob(raw, tokenId, request.logprobs);
    if (this.promptLogprobs) {
      update.promptLogprobs = this.promptLogprobs;
      this.promptLogprobs = undefined;
    }
    if (finishReason) {
      update.finishReason = finishReason;
      this.finish();
    }
    return update;
  }

  /** The end of a sequence that only scores its prompt: nothing is sampled. */
  private scored(): TokenUpdate {
    const update: TokenUpdate = { id: this.request.id, finishReason: 'length' };
    if (this.promptLogprobs) update.promptLogprobs = this.promptLogprobs;
    this.promptLogprobs = undefined;
    this.finish();
    return update;
  }

  /** Ends the sequence where it is. */
  cancel(): void {
    this.cancelled = true;
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    for (const processor of this.processors) processor.end?.();
  }
}
