import { BatchKvCache, type KvLayout } from './kv-cache.js';
import type { DecoderRunner } from './decoder.js';
import { adjustLogits, hasAdjustments, tokenLogprob } from './logits.js';
import type { EngineStats, FinishReason, SequenceRequest, TokenLogprob, TokenUpdate } from './protocol.js';
import { Rng } from './rng.js';
import { sampleToken } from './sampling.js';

export interface BatcherOptions {
  /** Most sequences decoded together in one step. */
  maxBatch: number;
  /** Most tokens (prompt plus completion budget) the running sequences may hold in the KV cache together. */
  maxKvTokens: number;
  /**
   * Prompt tokens prefilled per step. Prompts are always cut into chunks of this size, so a
   * sequence's numbers do not depend on what else runs, and a long prompt delays the running
   * streams by one chunk per step instead of its whole length.
   */
  prefillChunk: number;
  contextLength: number;
}

export interface BatcherEvents {
  tokens(updates: TokenUpdate[]): void;
  failed(ids: number[], message: string): void;
  /** After each decode step of `batchSize` rows; `batchSize` 0: the engine went idle. */
  step(batchSize: number, stats: EngineStats): void;
}

interface Sequence {
  request: SequenceRequest;
  /** KV-cache tokens this sequence may grow to. */
  reservedTokens: number;
  rng: Rng;
  /** Tokens in the sequence so far: prompt and generated. */
  length: number;
  generated: number;
  lastToken: number;
  /** How often each token has been generated, for the presence and frequency penalties. */
  counts: Map<number, number>;
  /** Log-probabilities of the prompt's tokens, gathered during prefill when asked for. */
  promptLogprobs: TokenLogprob[] | undefined;
  finished: boolean;
  cancelled: boolean;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A sequence whose prompt is being run, chunk by chunk, before it joins the batch. */
interface Prefill {
  seq: Sequence;
  cache: BatchKvCache;
  done: number;
}

/**
 * Continuous batching: all running sequences advance together, one token per step, in one
 * decoder call. Between steps, one chunk of a waiting sequence's prompt is prefilled; when its
 * prompt is done, it joins the batch. Finished and cancelled sequences leave at once.
 */
export class ContinuousBatcher {
  private readonly waiting: Sequence[] = [];
  /** Running sequences, in the order of the cache's rows. */
  private active: Sequence[] = [];
  private cache: BatchKvCache | undefined;
  private prefilling: Prefill | undefined;
  private running = false;
  private stopped = false;
  /** The loop under way, if any. */
  private idle: Promise<void> | undefined;
  private readonly layout: KvLayout;
  private scratch = new Float64Array(0);

  constructor(
    private readonly runner: DecoderRunner,
    private readonly options: BatcherOptions,
    private readonly events: BatcherEvents,
  ) {
    const { signature } = runner;
    this.layout = {
      tensorCount: signature.pastNames.length,
      numKvHeads: signature.numKvHeads,
      headDim: signature.headDim,
      kvType: signature.kvType,
    };
  }

  get activeCount(): number {
    return this.active.length;
  }

  submit(request: SequenceRequest): void {
    const { promptIds } = request;
    if (this.stopped) {
      this.events.failed([request.id], 'the engine is stopping');
      return;
    }
    if (promptIds.length === 0 || promptIds.length >= this.options.contextLength) {
      this.events.failed([request.id], `prompt of ${promptIds.length} tokens does not fit a context of ${this.options.contextLength}`);
      return;
    }
    this.waiting.push({
      request,
      reservedTokens: Math.min(promptIds.length + request.maxTokens, this.options.contextLength),
      rng: request.seed === undefined ? Rng.random() : new Rng(request.seed, request.seedStream),
      length: promptIds.length,
      generated: 0,
      lastToken: promptIds[promptIds.length - 1]!,
      counts: new Map(),
      promptLogprobs: request.promptLogprobs === undefined ? undefined : [],
      finished: false,
      cancelled: false,
    });
    this.wake();
  }

  cancel(id: number): void {
    for (const seq of [...this.waiting, ...this.active, ...(this.prefilling ? [this.prefilling.seq] : [])]) {
      if (seq.request.id === id) seq.cancelled = true;
    }
  }

  /** Cancels every sequence; resolves once the step under way, if any, has ended. */
  stop(): Promise<void> {
    this.stopped = true;
    for (const seq of [...this.waiting, ...this.active, ...(this.prefilling ? [this.prefilling.seq] : [])]) seq.cancelled = true;
    return this.idle ?? Promise.resolve();
  }

  private wake(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    this.idle = this.loop().finally(() => {
      this.running = false;
      this.idle = undefined;
      if (this.waiting.length > 0) this.wake();
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.removeDone();
      const prefill = this.prefilling ?? this.admit();
      if (!prefill && this.active.length === 0) {
        this.events.step(0, this.stats());
        return;
      }
      if (prefill) await this.guard([prefill.seq], () => this.prefillChunk(prefill));
      if (this.active.length > 0) await this.guard(this.active, () => this.decode());
      await yieldToEventLoop();
    }
  }

  /** Runs a step; if the runtime fails, the sequences in it fail and the rest carry on. */
  private async guard(sequences: Sequence[], step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      this.events.failed(
        sequences.map((seq) => seq.request.id),
        `inference failed: ${(err as Error).message}`,
      );
      for (const seq of sequences) seq.cancelled = true;
      if (sequences === this.active) {
        this.active = [];
        this.cache = undefined;
      }
      if (this.prefilling && sequences.includes(this.prefilling.seq)) this.prefilling = undefined;
    }
  }

  /** Starts the prefill of the first waiting sequence if the batch and the KV budget have room. */
  private admit(): Prefill | undefined {
    const next = this.waiting[0];
    if (!next || this.active.length >= this.options.maxBatch) return undefined;
    const reserved = this.active.reduce((sum, seq) => sum + seq.reservedTokens, 0);
    if (this.active.length > 0 && reserved + next.reservedTokens > this.options.maxKvTokens) return undefined;
    this.waiting.shift();
    this.prefilling = { seq: next, cache: BatchKvCache.empty(this.layout, 1), done: 0 };
    return this.prefilling;
  }

  /** Runs the next chunk of a prompt; after the last one, samples the first token and joins the batch. */
  private async prefillChunk(prefill: Prefill): Promise<void> {
    const prompt = prefill.seq.request.promptIds;
    const end = Math.min(prompt.length, prefill.done + this.options.prefillChunk);
    const inputIds = BigInt64Array.from(prompt.slice(prefill.done, end), (id) => BigInt(id));
    const { promptLogprobs } = prefill.seq;
    const output = await this.runner.run({ inputIds, stepLength: inputIds.length, cache: prefill.cache }, !!promptLogprobs);
    prefill.cache.advance(output.present, inputIds.length);
    if (promptLogprobs) {
      const alternatives = prefill.seq.request.promptLogprobs!;
      output.positionLogits!.forEach((logits, i) => {
        const next = prompt[prefill.done + i + 1];
        if (next !== undefined) promptLogprobs.push(tokenLogprob(logits, next, alternatives));
      });
    }
    prefill.done = end;
    if (end < prompt.length) return;
    this.prefilling = undefined;
    const { seq } = prefill;
    if (seq.cancelled) return;
    this.events.tokens([this.accept(seq, output.logits[0]!)]);
    if (seq.finished) return;
    this.cache = this.cache ? this.cache.concat(prefill.cache) : prefill.cache;
    this.active.push(seq);
  }

  /** One token for every running sequence. */
  private async decode(): Promise<void> {
    const cache = this.cache!;
    const inputIds = BigInt64Array.from(this.active, (seq) => BigInt(seq.lastToken));
    const output = await this.runner.run({ inputIds, stepLength: 1, cache });
    cache.advance(output.present, 1);
    const updates: TokenUpdate[] = [];
    this.active.forEach((seq, row) => {
      if (!seq.cancelled) updates.push(this.accept(seq, output.logits[row]!));
    });
    this.events.tokens(updates);
    this.events.step(this.active.length, this.stats());
  }

  private stats(): EngineStats {
    const prefilling = this.prefilling ? 1 : 0;
    const kvTokens = this.active.reduce((sum, seq) => sum + seq.length, this.prefilling?.done ?? 0);
    return { waiting: this.waiting.length, running: this.active.length + prefilling, kvTokens };
  }

  private accept(seq: Sequence, logits: Float32Array): TokenUpdate {
    const { request } = seq;
    const adjusted = hasAdjustments(request);
    const raw = adjusted && request.logprobs !== undefined ? logits.slice() : logits;
    if (adjusted) adjustLogits(logits, request, seq.counts);
    if (this.scratch.length < logits.length) this.scratch = new Float64Array(logits.length);
    const tokenId = sampleToken(logits, request, seq.rng, this.scratch);
    seq.generated++;
    seq.length++;
    seq.lastToken = tokenId;
    seq.counts.set(tokenId, (seq.counts.get(tokenId) ?? 0) + 1);
    let finishReason: FinishReason | undefined;
    if (request.stopTokenIds.includes(tokenId)) finishReason = 'stop';
    else if (seq.generated >= request.maxTokens || seq.length >= this.options.contextLength) finishReason = 'length';
    if (finishReason) seq.finished = true;
    const update: TokenUpdate = { id: request.id, tokenId };
    if (request.logprobs !== undefined) update.logprob = tokenLogprob(raw, tokenId, request.logprobs);
    if (seq.promptLogprobs) {
      update.promptLogprobs = seq.promptLogprobs;
      seq.promptLogprobs = undefined;
    }
    if (finishReason) update.finishReason = finishReason;
    return update;
  }

  /** Drops finished and cancelled sequences from the queue and the running batch. */
  private removeDone(): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (this.waiting[i]!.cancelled) this.waiting.splice(i, 1);
    }
    if (this.prefilling?.seq.cancelled) this.prefilling = undefined;
    const keep: number[] = [];
    this.active.forEach((seq, row) => {
      if (!seq.finished && !seq.cancelled) keep.push(row);
    });
    if (keep.length === this.active.length) return;
    this.active = keep.map((row) => this.active[row]!);
    this.cache = keep.length > 0 ? this.cache!.select(keep) : undefined;
  }
}
