import type { Worker } from 'node:worker_threads';
import { ModelLoadError } from '../../model/errors.js';
import { startWorker } from '../../util/threads.js';
import { AsyncQueue } from './async-queue.js';
import type { GrammarVocabulary } from '../../grammar/vocabulary.js';
import type { EngineStats, FromWorker, GraphLimits, PromptRequest, ServedLimits, TokenUpdate, ToWorker, WorkerConfig } from '../protocol.js';

/** The tokens of one sequence, as they come; `cancel` ends it in the engine. */
export interface SequenceStream extends AsyncIterable<TokenUpdate> {
  cancel(): void;
}

/** The engine failed a sequence (the runtime raised an error). */
export class EngineError extends Error {
  override readonly name = 'EngineError';
}

/**
 * The server's handle on the engine worker. Sequences go in as token ids; their tokens come back
 * as an async iterable that ends after the token that carries a finish reason.
 */
export class Engine {
  private nextId = 1;
  private nextGroup = 1;
  private readonly streams = new Map<number, AsyncQueue<TokenUpdate>>();
  /** Set by the first close: resolves once the engine thread has exited. */
  private closing: Promise<void> | undefined;
  /** Resolves when the engine thread has exited, for whatever reason. */
  private readonly exited: Promise<void>;
  private latestStats: EngineStats = { waiting: 0, running: 0, kvTokens: 0, prefixCacheTokens: 0, kvCapacity: 0 };
  private readonly stepListeners = new Set<(batchSize: number) => void>();

  private constructor(
    private readonly worker: Worker,
    /** Most sequences running and waiting at once (--max-batch + --max-queue). */
    readonly capacity: number,
    /** The context and vocabulary served: the graph's where it fixes them, else config.json's. */
    readonly served: ServedLimits,
    /** The tokenizer's vocabulary for the grammars, as long as the served vocabulary (the engine has it too). */
    readonly grammarVocabulary: GrammarVocabulary,
    /** What the graph fixes, whatever config.json says. */
    readonly graphLimits: GraphLimits,
    /** Each edit of the graph at load, made or why not. */
    readonly graphRewrites: readonly string[] = [],
  ) {
    worker.on('message', (message: FromWorker) => this.dispatch(message));
    worker.on('error', (err) => this.failAll(new EngineError(`engine stopped: ${err.message}`)));
    this.exited = new Promise((resolve) =>
      worker.once('exit', (code) => {
        if (!this.closing) this.failAll(new EngineError(`engine stopped with exit code ${code}`));
        resolve();
      }),
    );
  }

  /**
   * Starts the engine thread; `maxQueue` sequences may wait for a batch slot, and `hasRoomFor` turns
   * away what does not fit. `vocabularyOf` builds the grammars' vocabulary, once, for the vocabulary
   * size the engine serves; the engine thread gets it before any request.
   */
  static async start(config: WorkerConfig, maxQueue: number, vocabularyOf: (vocabSize: number) => GrammarVocabulary): Promise<Engine> {
    const { worker, ready } = await startWorker<Extract<FromWorker, { type: 'ready' }>>(new URL('../thread/worker.ts', import.meta.url), config, { name: 'engine', failure: (message) => new ModelLoadError(message) });
    const vocabulary = vocabularyOf(ready.served.vocabSize);
    const engine = new Engine(worker, config.settings.maxBatch + maxQueue, ready.served, vocabulary, ready.graph, ready.rewrites);
    engine.post({ type: 'vocabulary', vocabulary });
    return engine;
  }

  /** Sequences running or waiting. */
  get load(): number {
    return this.streams.size;
  }

  /** How full the engine was after its latest step. */
  get stats(): EngineStats {
    return this.latestStats;
  }

  /** Hears of each decode step's batch size. */
  onStep(listener: (batchSize: number) => void): void {
    this.stepListeners.add(listener);
  }

  /** A group for the sequences of one request, which share batch slots fairly with other requests' (see SequenceRequest). */
  newGroup(): number {
    return this.nextGroup++;
  }

  /** Whether `sequences` more fit in the running batch and the queue. */
  hasRoomFor(sequences: number): boolean {
    return this.streams.size + sequences <= this.capacity;
  }

  /**
   * Generates, for each prompt, one sequence for each of its `seedStreams`; the engine prefills a
   * prompt once, and gets a request's prompts in one message, so they start together. Each stream
   * can be cancelled on its own; aborting `signal` cancels them all. The streams come back per prompt.
   */
  generate(prompts: readonly { request: PromptRequest; seedStreams: readonly number[] }[], signal?: AbortSignal): SequenceStream[][] {
    const submissions = prompts.map(({ request, seedStreams }) => ({ request, choices: seedStreams.map((seedStream) => ({ id: this.nextId++, seedStream })) }));
    const perPrompt = submissions.map(({ choices }) => choices.map(({ id }) => this.sequenceStream(id)));
    const streams = perPrompt.flat();
    if (this.closing) {
      for (const stream of streams) stream.fail(new EngineError('engine is closed'));
      return perPrompt;
    }
    if (signal?.aborted) {
      for (const stream of streams) stream.end();
      return perPrompt;
    }
    try {
      this.post({ type: 'submit', prompts: submissions });
    } catch (err) {
      // A request that cannot be copied to the engine fails alone.
      for (const stream of streams) stream.fail(new EngineError(`the request could not be handed to the engine (${(err as Error).message})`));
      return perPrompt;
    }
    for (const stream of streams) this.streams.set(stream.id, stream);
    signal?.addEventListener('abort', () => streams.forEach((stream) => stream.cancel()), { once: true });
    return perPrompt;
  }

  /** The tokens of sequence `id` as they come; cancelling it ends it in the engine. */
  private sequenceStream(id: number): AsyncQueue<TokenUpdate> & SequenceStream & { id: number } {
    const queue = new AsyncQueue<TokenUpdate>();
    const cancel = () => {
      if (this.streams.delete(id)) {
        this.post({ type: 'cancel', id });
        queue.end();
      }
    };
    return Object.assign(queue, { id, cancel });
  }

  /**
   * Stops the engine after its step under way (sequences still running fail); resolves once its
   * thread has exited. Every call waits for that: a process that exits while the thread is inside a
   * forward pass aborts.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closing = this.exited;
    this.failAll(new EngineError('engine is closed'));
    this.post({ type: 'close' });
    return this.closing;
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message);
  }

  private dispatch(message: FromWorker): void {
    if (message.type === 'tokens') {
      for (const update of message.updates) {
        const stream = this.streams.get(update.id);
        if (!stream) continue;
        stream.push(update);
        if (update.finishReason) {
          this.streams.delete(update.id);
          stream.end();
        }
      }
    } else if (message.type === 'step') {
      this.latestStats = message.stats;
      if (message.batchSize > 0) for (const listener of this.stepListeners) listener(message.batchSize);
    } else if (message.type === 'error') {
      for (const id of message.ids) {
        this.streams.get(id)?.fail(new EngineError(message.message));
        this.streams.delete(id);
      }
    }
  }

  private failAll(err: Error): void {
    for (const stream of this.streams.values()) stream.fail(err);
    this.streams.clear();
  }
}
