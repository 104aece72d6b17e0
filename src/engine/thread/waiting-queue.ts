import type { SequenceRequest, TokenLogprob } from '../protocol.js';
import type { PrefixBlock } from './prefix-cache.js';
import type { Sequence } from './sequence.js';

/**
 * A prompt waiting or being prefilled, with the sequences of its choices. It is prefilled once, in
 * one cache row; when it is done, that row is forked into one row per sequence.
 */
export class PromptEntry {
  /** Log-probabilities of the prompt's tokens, gathered during prefill when asked for. */
  readonly promptLogprobs: TokenLogprob[] | undefined;
  /** The prefix cache's blocks of the prompt's first chunks, found or added: they cover its first `prefix.length` chunks. */
  prefix: PrefixBlock[] = [];
  /** Prompt tokens whose KV came from the prefix cache. */
  cachedTokens = 0;
  /** Prompt tokens in the cache so far: the prefix cache's, then those prefilled. */
  done = 0;

  constructor(readonly sequences: Sequence[]) {
    this.promptLogprobs = this.request.promptLogprobs === undefined ? undefined : [];
  }

  /** The settings its sequences share (the first one's request). */
  get request(): SequenceRequest {
    return this.sequences[0]!.request;
  }

  /** Drops cancelled sequences; false when none is left. */
  prune(): boolean {
    const live = this.sequences.filter((seq) => !seq.cancelled);
    this.sequences.splice(0, this.sequences.length, ...live);
    return live.length > 0;
  }
}

/**
 * The prompts waiting for batch slots. Requests take turns: a free slot goes to the oldest waiting
 * prompt of the request that had its last turn longest ago (a new request counts from its arrival).
 * A request of many sequences (a large `n`, many prompts) thus shares the batch with those that
 * come after it instead of holding them back until all of its own have run.
 */
export class WaitingQueue {
  private readonly entries: PromptEntry[] = [];
  /** The turn each request (by group) had last, or its arrival. */
  private readonly lastTurn = new Map<number, number>();
  private turns = 0;

  /** Prompts waiting. */
  get size(): number {
    return this.entries.length;
  }

  /** Sequences waiting. */
  get sequenceCount(): number {
    return this.entries.reduce((sum, entry) => sum + entry.sequences.length, 0);
  }

  sequences(): Sequence[] {
    return this.entries.flatMap((entry) => entry.sequences);
  }

  add(entry: PromptEntry): void {
    const { group } = entry.request;
    if (!this.lastTurn.has(group)) this.lastTurn.set(group, ++this.turns);
    this.entries.push(entry);
  }

  /** The prompt whose turn it is (among those of `promptLength` tokens, when given). */
  next(promptLength?: number): PromptEntry | undefined {
    let best: PromptEntry | undefined;
    let oldestTurn = Infinity;
    for (const entry of this.entries) {
      if (promptLength !== undefined && entry.request.promptIds.length !== promptLength) continue;
      const turn = this.lastTurn.get(entry.request.group) ?? 0;
      if (turn < oldestTurn) {
        oldestTurn = turn;
        best = entry;
      }
    }
    return best;
  }

  /** Takes `count` sequences of `entry` (all of them: the entry itself leaves the queue); its request has had its turn. */
  take(entry: PromptEntry, count: number): PromptEntry {
    this.lastTurn.set(entry.request.group, ++this.turns);
    if (count < entry.sequences.length) return new PromptEntry(entry.sequences.splice(0, count));
    this.entries.splice(this.entries.indexOf(entry), 1);
    return entry;
  }

  /** Forgets the turns of requests with nothing waiting. */
  forgetIdleGroups(): void {
    const waitingGroups = new Set(this.entries.map((entry) => entry.request.group));
    for (const group of this.lastTurn.keys()) if (!waitingGroups.has(group)) this.lastTurn.delete(group);
  }

  /** Drops cancelled sequences, and prompts with none left. */
  prune(): void {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      if (!this.entries[i]!.prune()) this.entries.splice(i, 1);
    }
  }
}
