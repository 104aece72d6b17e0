import type { Worker } from 'node:worker_threads';
import type { FromGrammarThread, GrammarThreadData, ToGrammarThread } from '../../grammar/grammar-protocol.js';
import type { GrammarSpec } from '../../grammar/grammar-spec.js';
import type { GrammarVocabulary } from '../../grammar/vocabulary.js';
import type { TokenMatcher } from '../../grammar/xgrammar.js';
import { FIXED_LIMITS } from '../../options.js';
import { LruCache } from '../../util/lru.js';
import { ModelLoadError } from '../../model/errors.js';
import { startWorker } from '../../util/threads.js';

/** How long the decode loop waits for a grammar thread's masks before it gives up on them. */
const MASK_TIMEOUT_MS = FIXED_LIMITS.grammarMaskTimeoutMs.value;

class GrammarThread {
  private requests = 0;
  private readonly words: Int32Array;
  private readonly waiting = new Map<string, { resolve(bytes: number): void; reject(err: Error): void }>();

  constructor(
    private readonly worker: Worker,
    masks: SharedArrayBuffer,
    private readonly maskWords: number,
    readonly rows: number,
  ) {
    this.words = new Int32Array(masks);
    worker.on('message', (message: FromGrammarThread) => {
      if (message.type !== 'compiled' && message.type !== 'refused') return;
      const waiter = this.waiting.get(message.key);
      this.waiting.delete(message.key);
      if (message.type === 'compiled') waiter?.resolve(message.bytes);
      else waiter?.reject(new Error(message.message));
    });
  }

  /** A compile was sent and has not been answered: the thread cannot answer for masks until it is. */
  get compiling(): boolean {
    return this.waiting.size > 0;
  }

  send(message: ToGrammarThread): void {
    this.worker.postMessage(message);
  }

  /** Resolves with the memory the grammar is estimated to hold. */
  compile(key: string, spec: GrammarSpec): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting.set(key, { resolve, reject });
      this.send({ type: 'compile', key, spec });
    });
  }

  /** Asks for the next-token masks of `matchers` (at most `rows`); `collect` waits for them. */
  requestMasks(matchers: number[]): number {
    const request = ++this.requests;
    this.send({ type: 'masks', matchers, request });
    return request;
  }

  /** The masks of request `request`, in the order they were asked for. */
  collect(request: number, count: number): Int32Array[] {
    const deadline = Date.now() + MASK_TIMEOUT_MS;
    while (Atomics.load(this.words, 0) !== request) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('the grammar thread did not answer');
      Atomics.wait(this.words, 0, request - 1, left);
    }
    return Array.from({ length: count }, (_, row) => this.words.slice(1 + row * this.maskWords, 1 + (row + 1) * this.maskWords));
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/** A matcher kept in the grammar threads, for one sequence. */
class RemoteMatcher implements TokenMatcher {
  constructor(
    private readonly service: GrammarService,
    readonly id: number,
  ) {
    service.requestMask(id);
  }
  nextTokenMask(): Promise<Int32Array> {
    return Promise.resolve(this.service.mask(this.id));
  }
  accept(tokenId: number): boolean {
    this.service.accept(this.id, tokenId);
    this.service.requestMask(this.id);
    return true;
  }
  dispose(): void {
    this.service.release(this.id);
  }
}

/**
 * Grammars for the engine thread, kept in two grammar threads so that compiling never holds up
 * the decode loop. Every grammar is compiled in both, one after the other, and every matcher lives
 * in both, taking the same tokens: while one thread compiles, the other answers for the masks.
 * Compiles run one at a time, first in thread 0 (then the new grammar's sequences can start, since
 * thread 1 has every other grammar) and then in thread 1 (while thread 0, which now has all,
 * answers).
 *
 * A sequence's next mask is asked for as soon as it takes a token, all of a step's together, so
 * that the grammar thread works out the masks while the engine runs the next forward pass; the
 * step then only collects them.
 */
export class GrammarService {
  /** Compiled grammars by their estimated memory, least recently used first; each one pushed out is forgotten by both threads. */
  private readonly compiled: LruCache<string, true>;
  private compiles: Promise<unknown> = Promise.resolve();
  private nextMatcher = 1;
  private accepted: [number, number][] = [];
  private released: number[] = [];
  /** Masks to ask for at the next flush. */
  private requested = new Set<number>();
  /** The request a grammar thread is answering. */
  private outstanding: { thread: GrammarThread; request: number; matchers: number[] } | undefined;
  private readonly ready = new Map<number, Int32Array>();
  /** Matchers not yet released. */
  private readonly live = new Set<number>();
  private flushScheduled = false;

  private constructor(
    private readonly threads: [GrammarThread, GrammarThread],
    budgetBytes: number,
  ) {
    this.compiled = new LruCache(budgetBytes, (key) => {
      for (const thread of this.threads) thread.send({ type: 'forget', key });
    });
  }

  static async start(vocabulary: GrammarVocabulary, rows: number, budgetBytes: number): Promise<GrammarService> {
    const maskWords = Math.ceil(vocabulary.tokens.length / 32);
    const start = async (index: number) => {
      const masks = new SharedArrayBuffer(4 * (1 + rows * maskWords));
      const data: GrammarThreadData = { vocabulary, masks, maskWords };
      const { worker } = await startWorker(new URL('../../grammar/grammar-thread.ts', import.meta.url), data, { name: `grammar thread ${index}`, failure: (message) => new ModelLoadError(message) });
      return new GrammarThread(worker, masks, maskWords, rows);
    };
    const threads = await Promise.all([start(0), start(1)]);
    return new GrammarService(threads as [GrammarThread, GrammarThread], budgetBytes);
  }

  /**
   * Resolves with the key of `spec` once a grammar thread can answer for it (at once when it is
   * compiled already); rejects when the grammar does not compile.
   */
  prepare(spec: GrammarSpec): Promise<string> {
    const key = JSON.stringify(spec);
    if (this.compiled.get(key)) return Promise.resolve(key);
    const [first, second] = this.threads;
    const usable = this.compiles.then(() => (this.compiled.has(key) ? undefined : first.compile(key, spec)));
    // Registered before the caller's own callback on `usable`: the second compile is sent before any matcher is opened.
    this.compiles = usable.then(
      async () => {
        if (this.compiled.has(key)) return;
        const bytes = await second.compile(key, spec);
        // One larger than the whole budget is used by its own request and forgotten (the preprocessor refuses such grammars first).
        if (!this.compiled.set(key, true, bytes)) for (const thread of this.threads) thread.send({ type: 'forget', key });
      },
      () => {},
    );
    return usable.then(() => key);
  }

  /** A matcher per sequence under the grammar prepared as `key`. */
  matchers(key: string, stopTokenIds: readonly number[], count: number): TokenMatcher[] {
    return Array.from({ length: count }, () => {
      const matcher = this.nextMatcher++;
      this.live.add(matcher);
      for (const thread of this.threads) thread.send({ type: 'open', matcher, key, stopTokenIds: [...stopTokenIds] });
      return new RemoteMatcher(this, matcher);
    });
  }

  accept(matcher: number, tokenId: number): void {
    this.accepted.push([matcher, tokenId]);
    this.scheduleFlush();
  }

  requestMask(matcher: number): void {
    this.requested.add(matcher);
    this.scheduleFlush();
  }

  release(matcher: number): void {
    this.live.delete(matcher);
    this.requested.delete(matcher);
    this.ready.delete(matcher);
    this.released.push(matcher);
    this.scheduleFlush();
  }

  /** The mask asked for last for `matcher`, waited for if the grammar thread is still at it. */
  mask(matcher: number): Int32Array {
    if (!this.ready.has(matcher)) {
      if (!this.outstanding?.matchers.includes(matcher)) this.requested.add(matcher);
      this.flush();
      this.collect();
    }
    const mask = this.ready.get(matcher);
    if (!mask) throw new Error(`no grammar mask for matcher ${matcher}`);
    this.ready.delete(matcher);
    return mask;
  }

  close(): Promise<unknown> {
    return Promise.all(this.threads.map((thread) => thread.terminate()));
  }

  /** Everything asked for in one turn of the event loop goes out together, after it. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.accepted.length > 0) {
      const tokens = this.accepted;
      this.accepted = [];
      for (const thread of this.threads) thread.send({ type: 'accept', tokens });
    }
    if (this.released.length > 0) {
      const matchers = this.released;
      this.released = [];
      for (const thread of this.threads) thread.send({ type: 'close', matchers });
    }
    if (this.requested.size === 0) return;
    const wanted = [...this.requested];
    this.requested.clear();
    // A thread answers one request at a time, in its shared buffer.
    this.collect();
    const serving = this.threads.find((thread) => !thread.compiling) ?? this.threads[0];
    for (let start = 0; start < wanted.length; start += serving.rows) {
      if (start > 0) this.collect();
      const matchers = wanted.slice(start, start + serving.rows);
      this.outstanding = { thread: serving, request: serving.requestMasks(matchers), matchers };
    }
  }

  private collect(): void {
    const outstanding = this.outstanding;
    if (!outstanding) return;
    this.outstanding = undefined;
    const masks = outstanding.thread.collect(outstanding.request, outstanding.matchers.length);
    outstanding.matchers.forEach((matcher, row) => {
      if (this.live.has(matcher)) this.ready.set(matcher, masks[row]!);
    });
  }
}
