import { BatchKvCache, type KvLayout } from './kv-cache.js';
import type { DecoderRunner } from './decoder.js';
import type { FinishReason, SequenceRequest, TokenUpdate } from './protocol.js';
import { Rng } from './rng.js';
import { sampleToken } from './sampling.js';

export interface BatcherOptions {
  /** Most sequences decoded together in one step. */
  maxBatch: number;
  contextLength: number;
}

export interface BatcherEvents {
  tokens(updates: TokenUpdate[]): void;
  failed(ids: number[], message: string): void;
}

interface Sequence {
  request: SequenceRequest;
  rng: Rng;
  /** Tokens in the sequence so far: prompt and generated. */
  length: number;
  generated: number;
  lastToken: number;
  finished: boolean;
  cancelled: boolean;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Continuous batching: all running sequences advance together, one token per step, in one
 * decoder call. Waiting sequences join at the next step boundary after a prefill of their prompts;
 * finished and cancelled ones leave at once.
 */
export class ContinuousBatcher {
  private readonly waiting: Sequence[] = [];
  /** Running sequences, in the order of the cache's rows. */
  private active: Sequence[] = [];
  private cache: BatchKvCache | undefined;
  private running = false;
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
    if (promptIds.length === 0 || promptIds.length >= this.options.contextLength) {
      this.events.failed([request.id], `prompt of ${promptIds.length} tokens does not fit a context of ${this.options.contextLength}`);
      return;
    }
    this.waiting.push({
      request,
      rng: request.seed === undefined ? Rng.random() : new Rng(request.seed, request.seedStream),
      length: promptIds.length,
      generated: 0,
      lastToken: promptIds[promptIds.length - 1]!,
      finished: false,
      cancelled: false,
    });
    this.wake();
  }

  cancel(id: number): void {
    for (const seq of [...this.waiting, ...this.active]) {
      if (seq.request.id === id) seq.cancelled = true;
    }
  }

  private wake(): void {
    if (this.running) return;
    this.running = true;
    void this.loop().finally(() => {
      this.running = false;
      if (this.waiting.length > 0) this.wake();
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.removeDone();
      if (this.waiting.length === 0 && this.active.length === 0) return;
      if (this.waiting.length > 0 && this.active.length < this.options.maxBatch) {
        await this.guard(this.takeWaiting(), (joining) => this.prefill(joining));
        this.removeDone();
      }
      if (this.active.length > 0) await this.guard(this.active, () => this.decode());
      await yieldToEventLoop();
    }
  }

  /** Runs a step; if the runtime fails, the sequences in it fail and the rest carry on. */
  private async guard(sequences: Sequence[], step: (sequences: Sequence[]) => Promise<void>): Promise<void> {
    try {
      await step(sequences);
    } catch (err) {
      const failed = new Set(sequences);
      this.events.failed(
        sequences.map((seq) => seq.request.id),
        `inference failed: ${(err as Error).message}`,
      );
      for (const seq of failed) seq.cancelled = true;
      if (sequences === this.active) {
        this.active = [];
        this.cache = undefined;
      }
    }
  }

  private takeWaiting(): Sequence[] {
    const room = this.options.maxBatch - this.active.length;
    return this.waiting.splice(0, room);
  }

  /** Runs the prompts of joining sequences as one left-padded batch and adds them to the cache. */
  private async prefill(joining: Sequence[]): Promise<void> {
    const live = joining.filter((seq) => !seq.cancelled);
    if (live.length === 0) return;
    const width = Math.max(...live.map((seq) => seq.request.promptIds.length));
    const inputIds = new BigInt64Array(live.length * width);
    const stepPads = live.map((seq, row) => {
      const prompt = seq.request.promptIds;
      const pad = width - prompt.length;
      prompt.forEach((id, i) => {
        inputIds[row * width + pad + i] = BigInt(id);
      });
      return pad;
    });
    const cache = BatchKvCache.empty(this.layout, live.length);
    const output = await this.runner.run({ inputIds, stepLength: width, stepPads, cache });
    cache.advance(output.present, width, stepPads);
    const updates = live.map((seq, row) => this.accept(seq, output.logits[row]!));
    this.events.tokens(updates);
    const keep = live.map((seq, row) => (seq.finished || seq.cancelled ? -1 : row)).filter((row) => row >= 0);
    if (keep.length === 0) return;
    const kept = cache.select(keep);
    this.cache = this.cache ? this.cache.concat(kept) : kept;
    this.active.push(...keep.map((row) => live[row]!));
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
  }

  private accept(seq: Sequence, logits: Float32Array): TokenUpdate {
    if (this.scratch.length < logits.length) this.scratch = new Float64Array(logits.length);
    const tokenId = sampleToken(logits, seq.request, seq.rng, this.scratch);
    seq.generated++;
    seq.length++;
    seq.lastToken = tokenId;
    let finishReason: FinishReason | undefined;
    if (seq.request.stopTokenIds.includes(tokenId)) finishReason = 'stop';
    else if (seq.generated >= seq.request.maxTokens || seq.length >= this.options.contextLength) finishReason = 'length';
    if (finishReason) seq.finished = true;
    return { id: seq.request.id, tokenId, ...(finishReason && { finishReason }) };
  }

  /** Drops finished and cancelled sequences from the queue and the running batch. */
  private removeDone(): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (this.waiting[i]!.cancelled) this.waiting.splice(i, 1);
    }
    const keep: number[] = [];
    this.active.forEach((seq, row) => {
      if (!seq.finished && !seq.cancelled) keep.push(row);
    });
    if (keep.length === this.active.length) return;
    this.active = keep.map((row) => this.active[row]!);
    this.cache = keep.length > 0 ? this.cache!.select(keep) : undefined;
  }
}
