import { KvBufferPool, type KvCache, type KvLayout } from './kv-cache.js';
import { kvCaches } from './slot-kv-cache.js';
import type { DecoderRunner } from './decoder.js';
import { tokenLogprob } from './logits.js';
import type { Choice, EngineStats, PromptRequest, TokenUpdate } from '../protocol.js';
import { logitsProcessors, type LogitsProcessor } from './logits-processors.js';
import { PrefixCache } from './prefix-cache.js';
import { Sequence } from './sequence.js';
import { PromptEntry, WaitingQueue } from './waiting-queue.js';
import { keepRows, partitionRows, type Cohort } from './cohort.js';

export interface BatcherOptions {
  /** Most sequences decoded together in one step. */
  maxBatch: number;
  /** Most tokens (prompt plus completion budget) the running sequences may hold in the KV cache together. */
  maxKvTokens: number;
  /**
   * Tokens of each prompt prefilled per step. Prompts are always cut into chunks of this size, so
   * a sequence's numbers do not depend on what else runs, and a long prompt delays the running
   * streams by one chunk per step instead of its whole length.
   */
  prefillChunk: number;
  contextLength: number;
  /**
   * The graph takes every row as unpadded (GroupQueryAttention: a row's length is its mask's
   * sum): only rows of one length run together, so prompts join only an idle engine, those of the
   * first one's length together, and each is prefilled in one pass.
   */
  unpaddedRows?: boolean;
  /** Most prompt positions whose KV the prefix cache keeps (see prefix-cache.ts); 0: none. */
  prefixCacheTokens?: number;
}

export interface BatcherEvents {
  tokens(updates: TokenUpdate[]): void;
  failed(ids: number[], message: string): void;
  /** After each decode step of `batchSize` rows; `batchSize` 0: the engine went idle. */
  step(batchSize: number, stats: EngineStats): void;
}


const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Readies the processors of the sequences that have asynchronous work before their next token. */
async function prepare(sequences: readonly Sequence[]): Promise<void> {
  const pending = sequences.filter((seq) => seq.needsPreparation && !seq.cancelled);
  if (pending.length > 0) await Promise.all(pending.map((seq) => seq.prepare()));
}

/**
 * Continuous batching: all running sequences advance together, one token per step, in one
 * decoder call. Between steps, one chunk of the waiting prompts is prefilled; a sequence whose
 * prompt is done joins the batch. Finished and cancelled sequences leave at once.
 */
export class ContinuousBatcher {
  private readonly waiting = new WaitingQueue();
  /** Running sequences, in the order of the cache's rows. */
  private active: Sequence[] = [];
  private cache: KvCache | undefined;
  /**
   * Prompts being prefilled, oldest first; each step runs a chunk of the first cohort. A cache in
   * slots holds rows of any lengths, so there every prompt joins the one cohort.
   */
  private cohorts: Cohort[] = [];
  private running = false;
  private stopped = false;
  /** The loop under way, if any. */
  private idle: Promise<void> | undefined;
  private readonly layout: KvLayout;
  private readonly pool: KvBufferPool;
  private readonly caches: ReturnType<typeof kvCaches>;
  private readonly prefixCache: PrefixCache;
  /** Prompts at different offsets prefill in one pass (a cache in slots, rows of their own lengths). */
  private readonly mergedPrefill: boolean;
  private scratch = new Float64Array(0);
  /** For each request with sequences waiting: when it last had a turn at a batch slot (see nextWaiting). */

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
      slots: signature.pastSlots ?? false,
    };
    // Free buffers are kept up to the size of the whole cache budget once.
    const elementsPerToken = this.layout.tensorCount * this.layout.numKvHeads * this.layout.headDim;
    this.pool = new KvBufferPool(signature.kvType, options.maxKvTokens * elementsPerToken);
    this.caches = kvCaches(this.layout, this.pool);
    // A graph that prefills whole prompts in one pass does not compute chunks alone.
    this.prefixCache = new PrefixCache(options.prefillChunk, options.unpaddedRows ? 0 : (options.prefixCacheTokens ?? 0));
    this.mergedPrefill = this.layout.slots === true && !options.unpaddedRows;
  }

  /**
   * Generates one sequence for each of `choices` from the prompt of `request`, which is prefilled
   * once. `constraints[i]`, when given, are processors of choice i's own that apply after those
   * the request asks for (a grammar, say).
   */
  submit(request: PromptRequest, choices: readonly Choice[], constraints: readonly (readonly LogitsProcessor[])[] = []): void {
    const { promptIds } = request;
    const ids = choices.map((choice) => choice.id);
    if (choices.length === 0) return;
    if (this.stopped) {
      this.events.failed(ids, 'the engine is stopping');
      return;
    }
    if (promptIds.length === 0 || promptIds.length >= this.options.contextLength) {
      this.events.failed(ids, `prompt of ${promptIds.length} tokens does not fit a context of ${this.options.contextLength}`);
      return;
    }
    const sequence = (choice: Choice, index: number) => {
      const sequenceRequest = { ...request, ...choice };
      return new Sequence(sequenceRequest, this.options.contextLength, [...logitsProcessors(sequenceRequest), ...(constraints[index] ?? [])]);
    };
    this.waiting.add(new PromptEntry(choices.map(sequence)));
    this.wake();
  }

  cancel(id: number): void {
    for (const seq of this.sequences()) {
      if (seq.request.id === id) seq.cancel();
    }
  }

  /** Cancels every sequence; resolves once the step under way, if any, has ended. */
  stop(): Promise<void> {
    this.stopped = true;
    for (const seq of this.sequences()) seq.cancel();
    return this.idle ?? Promise.resolve();
  }

  private sequences(): Sequence[] {
    return [...this.waiting.sequences(), ...this.active, ...this.prefilling()];
  }

  private prefillingEntries(): PromptEntry[] {
    return this.cohorts.flatMap((cohort) => cohort.rows);
  }

  /** The sequences whose prompts are being prefilled. */
  private prefilling(): Sequence[] {
    return this.prefillingEntries().flatMap((entry) => entry.sequences);
  }

  /** Starts the loop on the next turn of the event loop, so that sequences submitted together start together. */
  private wake(): void {
    if (this.running || this.stopped) return;
    this.running = true;
    this.idle = yieldToEventLoop()
      .then(() => this.loop())
      .finally(() => {
        this.running = false;
        this.idle = undefined;
        if (this.waiting.size > 0) this.wake();
      });
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.removeDone();
      this.admit();
      const cohort = this.cohorts[0];
      if (!cohort && this.active.length === 0) {
        this.events.step(0, this.stats());
        return;
      }
      if (cohort) await this.guard(() => cohort.rows.flatMap((entry) => entry.sequences), () => this.prefillChunk(cohort));
      if (this.active.length > 0) await this.guard(() => this.active, () => this.decode());
      await yieldToEventLoop();
    }
  }

  /**
   * Runs a step; if the runtime fails, the sequences in it (as they are when it fails: a prefill
   * may split its cohort first) fail and the rest carry on. The failed sequences are cancelled, so
   * the next `removeDone` drops them and their cache rows.
   */
  private async guard(sequences: () => Sequence[], step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (err) {
      const failed = sequences();
      this.events.failed(
        failed.map((seq) => seq.request.id),
        `inference failed: ${(err as Error).message}`,
      );
      for (const seq of failed) seq.cancel();
    }
  }

  /**
   * Starts prefilling waiting sequences, as batch slots and the KV budget allow. With a cache in
   * slots, every prompt that fits joins the prompts being prefilled, whatever their offsets: one
   * pass per step prefills a chunk of each. With a padded cache, a cohort's rows share their
   * offsets, and a cohort stalls the running streams for a step, so while sequences decode,
   * prompts are taken one at a time, unless at least as many wait as run: then all that fit are
   * prefilled together, as when nothing runs.
   */
  private admit(): void {
    const { unpaddedRows } = this.options;
    if (unpaddedRows && (this.active.length > 0 || this.cohorts.length > 0)) return;
    const prefilling = this.prefilling();
    const together = unpaddedRows || this.mergedPrefill || this.waiting.sequenceCount >= this.active.length;
    if (!together && prefilling.length > 0) return;
    /** With unpadded rows: the prompt length all the rows taken have. */
    let length: number | undefined;
    const running = [...this.active, ...prefilling];
    let reserved = running.reduce((sum, seq) => sum + seq.reservedTokens, 0);
    let slots = running.length;
    const rows: PromptEntry[] = [];
    while (together || rows.length === 0) {
      const next = this.waiting.next(length);
      if (!next || slots >= this.options.maxBatch) break;
      if (unpaddedRows) length = next.request.promptIds.length;
      // As many of the prompt's sequences as there are free slots and KV budget for; the rest wait.
      let taken = 0;
      let budget = reserved;
      for (const seq of next.sequences) {
        if (slots + taken >= this.options.maxBatch) break;
        if (slots + taken > 0 && budget + seq.reservedTokens > this.options.maxKvTokens) break;
        budget += seq.reservedTokens;
        taken++;
      }
      if (taken === 0) break;
      reserved = budget;
      slots += taken;
      rows.push(this.waiting.take(next, taken));
    }
    this.waiting.forgetIdleGroups();
    if (rows.length > 0) this.startPrefill(rows);
  }

  /**
   * Cohorts for prompts taken from the queue: each prompt starts after the chunks the prefix cache
   * holds of it (none when its prompt's log-probabilities are asked for: they need every position's
   * logits), so the prompts are grouped by how many that is.
   */
  private startPrefill(rows: PromptEntry[]): void {
    const groups = new Map<number, PromptEntry[]>();
    for (const entry of rows) {
      entry.prefix = this.prefixCache.enabled && !entry.promptLogprobs ? this.prefixCache.lookup(entry.request.cachePartition, entry.request.promptIds) : [];
      entry.cachedTokens = entry.prefix.length * this.prefixCache.chunk;
      entry.done = entry.cachedTokens;
      groups.set(entry.prefix.length, [...(groups.get(entry.prefix.length) ?? []), entry]);
    }
    for (const [blocks, entries] of groups) {
      const cache =
        blocks === 0
          ? this.caches.empty(entries.length)
          : this.caches.fromBlocks(entries.map((entry) => entry.prefix.map((block) => block.data)), this.prefixCache.chunk);
      const merged = this.mergedPrefill ? this.cohorts[0] : undefined;
      if (!merged) {
        this.cohorts.push({ rows: entries, cache });
        continue;
      }
      merged.cache = merged.cache.join(cache, entries.map((_, row) => row));
      merged.rows.push(...entries);
      cache.release();
    }
  }

  /**
   * Keeps each whole chunk just prefilled (`lengths[row]` tokens of each row, after its `done`) in
   * the prefix cache, for the rows whose earlier chunks it holds.
   */
  private cachePrefixes(cohort: Cohort, lengths: readonly number[]): void {
    const { chunk } = this.prefixCache;
    if (!this.prefixCache.enabled) return;
    cohort.rows.forEach((entry, row) => {
      if (lengths[row] !== chunk || entry.prefix.length * chunk !== entry.done) return;
      const tokens = entry.request.promptIds.slice(entry.done, entry.done + chunk);
      const block = this.prefixCache.insert(entry.request.cachePartition, entry.prefix.at(-1), tokens, () => cohort.cache.copyPositions(row, entry.done, chunk));
      if (block) entry.prefix.push(block);
    });
  }

  /**
   * Runs the next chunk of the first cohort's prompts. Prompts are cut into chunks at fixed
   * offsets, so a sequence's numbers do not depend on what else runs. In slots, a row whose chunk
   * is shorter than the others' is padded after its tokens; in a padded cache, rows whose next
   * chunk is shorter than the first row's go on in a cohort of their own. A row whose prompt is
   * done samples its first token and joins the batch.
   */
  private async prefillChunk(cohort: Cohort): Promise<void> {
    const chunk = this.options.unpaddedRows ? Infinity : this.options.prefillChunk;
    const chunkLength = (entry: PromptEntry) => Math.min(chunk, entry.request.promptIds.length - entry.done);
    if (!this.mergedPrefill) {
      const first = chunkLength(cohort.rows[0]!);
      const [same, other] = partitionRows(cohort.rows, (entry) => chunkLength(entry) === first);
      if (other.length > 0) {
        this.insertCohort({ rows: other.map((row) => cohort.rows[row]!), cache: cohort.cache.select(other) });
        keepRows(cohort, same);
      }
    }
    const lengths = cohort.rows.map(chunkLength);
    const length = Math.max(...lengths);
    const padded = lengths.some((rowLength) => rowLength !== length);
    const inputIds = new BigInt64Array(cohort.rows.length * length);
    cohort.rows.forEach((entry, row) => {
      const { promptIds } = entry.request;
      // Padding repeats the row's last token of the chunk.
      for (let i = 0; i < length; i++) inputIds[row * length + i] = BigInt(promptIds[entry.done + Math.min(i, lengths[row]! - 1)]!);
    });
    const allPositions = cohort.rows.some((entry) => entry.promptLogprobs);
    const rowLengths = padded ? lengths : undefined;
    const output = await this.runner.run({ inputIds, stepLength: length, rowLengths, cache: cohort.cache, allPositions });
    cohort.cache.advance(output.kv, length, rowLengths);
    this.cachePrefixes(cohort, lengths);
    cohort.rows.forEach((entry, row) => {
      if (!entry.promptLogprobs) return;
      const prompt = entry.request.promptIds;
      for (let i = 0; i < lengths[row]!; i++) {
        const next = prompt[entry.done + i + 1];
        if (next !== undefined) entry.promptLogprobs.push(tokenLogprob(output.logitsAt(row, i), next, entry.request.promptLogprobs!));
      }
    });
    cohort.rows.forEach((entry, row) => (entry.done += lengths[row]!));

    const [complete, incomplete] = partitionRows(cohort.rows, (entry) => entry.request.promptIds.length === entry.done);
    if (complete.length === 0) return;
    // Each finished prompt's row is forked: every sequence of the prompt samples its first token
    // from the prompt's logits and gets a copy of the row.
    const updates: TokenUpdate[] = [];
    const joiningRows: number[] = [];
    const joining: Sequence[] = [];
    await prepare(complete.flatMap((row) => cohort.rows[row]!.sequences));
    for (const row of complete) {
      const entry = cohort.rows[row]!;
      const live = entry.sequences.filter((seq) => !seq.cancelled);
      live.forEach((seq, k) => {
        seq.promptLogprobs = entry.promptLogprobs;
        // Processors change the logits in place: every sequence but the last gets a copy.
        const logits = k === live.length - 1 ? output.logits[row]! : output.logits[row]!.slice();
        const update = this.accept(seq, logits);
        if (entry.cachedTokens > 0) update.cachedTokens = entry.cachedTokens;
        updates.push(update);
        if (!seq.finished) {
          joiningRows.push(row);
          joining.push(seq);
        }
      });
    }
    if (updates.length > 0) this.events.tokens(updates);
    if (joining.length > 0) {
      const previous = this.cache;
      const wholeCache = joiningRows.length === cohort.rows.length && joiningRows.every((row, index) => row === index);
      this.cache = previous ? previous.join(cohort.cache, joiningRows) : wholeCache ? cohort.cache : cohort.cache.select(joiningRows);
      this.active.push(...joining);
    }
    if (incomplete.length > 0) keepRows(cohort, incomplete);
    else {
      this.cohorts.splice(this.cohorts.indexOf(cohort), 1);
      if (cohort.cache !== this.cache) cohort.cache.release();
    }
  }

  /** Keeps the cohorts in the order their first sequences arrived in. */
  private insertCohort(cohort: Cohort): void {
    const first = cohort.rows[0]!.request.id;
    const later = this.cohorts.findIndex((other) => other.rows[0]!.request.id > first);
    this.cohorts.splice(later === -1 ? this.cohorts.length : later, 0, cohort);
  }

  /** One token for every running sequence. */
  private async decode(): Promise<void> {
    const cache = this.cache!;
    const inputIds = BigInt64Array.from(this.active, (seq) => BigInt(seq.lastToken));
    const output = await this.runner.run({ inputIds, stepLength: 1, cache });
    cache.advance(output.kv, 1);
    await prepare(this.active);
    const updates: TokenUpdate[] = [];
    this.active.forEach((seq, row) => {
      if (!seq.cancelled) updates.push(this.accept(seq, output.logits[row]!));
    });
    this.events.tokens(updates);
    this.events.step(this.active.length, this.stats());
  }

  private stats(): EngineStats {
    const prefilled = this.prefillingEntries().reduce((sum, entry) => sum + entry.done, 0);
    const kvTokens = this.active.reduce((sum, seq) => sum + seq.length, prefilled);
    return {
      waiting: this.waiting.sequenceCount,
      running: this.active.length + this.prefilling().length,
      kvTokens,
      prefixCacheTokens: this.prefixCache.tokens,
      kvCapacity: this.options.maxKvTokens,
    };
  }

  private accept(seq: Sequence, logits: Float32Array): TokenUpdate {
    if (this.scratch.length < logits.length) this.scratch = new Float64Array(logits.length);
    return seq.accept(logits, this.scratch);
  }

  /** Drops finished and cancelled sequences from the queue and the running batch. */
  private removeDone(): void {
    this.waiting.prune();
    for (const cohort of this.cohorts) {
      const [keep] = partitionRows(cohort.rows, (entry) => entry.prune());
      if (keep.length < cohort.rows.length) keepRows(cohort, keep);
    }
    this.cohorts = this.cohorts.filter((cohort) => cohort.rows.length > 0);
    const [keep] = partitionRows(this.active, (seq) => !seq.finished && !seq.cancelled);
    if (keep.length === this.active.length) return;
    this.active = keep.map((row) => this.active[row]!);
    if (keep.length > 0) this.cache = this.cache!.retain(keep);
    else {
      this.cache!.release();
      this.cache = undefined;
    }
  }
}
