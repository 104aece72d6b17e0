import type { Worker } from 'node:worker_threads';
import type { GrammarSpec } from '../grammar/grammar-spec.js';
import { GrammarError } from '../grammar/xgrammar.js';
import { ChatTemplateError, type ChatMessage, type ChatTools } from '../model/chat-template.js';
import { startWorker } from '../threads.js';
import type { ChatRenderOptions, FromPreprocessWorker, PreprocessData, PreprocessResult, PreprocessTask, PreprocessWorkerData, TooLong } from './protocol.js';

export interface PreprocessorOptions {
  /** How long a chat template may take to render before its worker is stopped. */
  renderLimitMs: number;
  /** The worker's heap; a template that builds more than this fails alone instead of the server. */
  heapLimitMb: number;
  /**
   * How long a grammar (a response_format schema, the tools' parameters) may take to compile before
   * it is refused. The engine compiles it again at the same cost, holding up the running streams:
   * this bounds that stall.
   */
  grammarLimitMs: number;
}

export const DEFAULT_PREPROCESSOR_OPTIONS: PreprocessorOptions = { renderLimitMs: 2000, heapLimitMb: 1024, grammarLimitMs: 2500 };

/** Grammars that compiled, kept so that a schema sent again is not compiled again to check it. */
const CHECKED_GRAMMARS = 256;

const detach = (worker: Worker) => {
  for (const event of ['message', 'error', 'exit']) worker.removeAllListeners(event);
};

/** One prompt of a request, waiting for the worker or in it. */
interface Item {
  task: PreprocessTask;
  done(result: PreprocessResult): void;
}

/** A request's prompts: the worker takes one prompt of each waiting request in turn. */
interface Job {
  items: Item[];
}

/** The prompt of a chat request: its token ids, or how much too long it is. */
export type ChatPrompt = { ids: number[] } | { tooLong: TooLong };

/**
 * One worker and its queue. Requests take turns a task at a time. A task that runs past its limit
 * (a chat template's render, a grammar's compile), or a worker that runs out of heap or dies, fails
 * the task in it; the worker is replaced and the queue carries on.
 */
class WorkerLane {
  private readonly jobs: Job[] = [];
  private worker: Worker | undefined;
  private starting: Promise<void> | undefined;
  private current: { id: number; item: Item; timer?: NodeJS.Timeout } | undefined;
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly name: string,
    private readonly data: PreprocessWorkerData,
    private readonly options: PreprocessorOptions,
  ) {}

  /** Starts the worker now (else with the first task). */
  start(): Promise<void> {
    return (this.starting ??= this.spawn());
  }

  enqueue(job: Job): void {
    if (this.closed) {
      job.items[0]?.done({ error: 'the server is shutting down' });
      return;
    }
    this.jobs.push(job);
    if (!this.starting) {
      this.start().then(
        () => this.dispatch(),
        (err: unknown) => this.failWaiting(err),
      );
    }
    this.dispatch();
  }

  /** Stops the worker; tasks still waiting fail. */
  async close(): Promise<void> {
    this.closed = true;
    const stopped = new Error('the server is shutting down');
    this.current?.item.done({ error: stopped.message });
    this.current = undefined;
    this.failWaiting(stopped);
    const worker = this.worker;
    this.worker = undefined;
    if (worker) detach(worker);
    await worker?.terminate();
  }

  private failWaiting(err: unknown): void {
    for (const job of this.jobs.splice(0)) for (const item of job.items) item.done({ error: (err as Error).message });
  }

  /** Sends the next task to the worker, taking one from each waiting request in turn. */
  private dispatch(): void {
    if (this.current || !this.worker || this.closed) return;
    let item: Item | undefined;
    while (!item && this.jobs.length > 0) {
      const job = this.jobs.shift()!;
      item = job.items.shift();
      if (job.items.length > 0) this.jobs.push(job);
    }
    if (!item) return;
    const id = this.nextId++;
    this.current = { id, item };
    if (item.task.kind === 'chat') {
      const seconds = this.options.renderLimitMs / 1000;
      this.current.timer = setTimeout(() => this.replaceWorker(`it did not finish rendering within ${seconds} s`), this.options.renderLimitMs);
    } else if (item.task.kind === 'grammar') {
      const seconds = this.options.grammarLimitMs / 1000;
      this.current.timer = setTimeout(() => this.replaceWorker(`its grammar did not compile within this server's limit of ${seconds} s`), this.options.grammarLimitMs);
    }
    this.worker.postMessage({ id, task: item.task });
  }

  private onMessage(message: FromPreprocessWorker): void {
    const current = this.current;
    if (!current || !('id' in message) || message.id !== current.id) return;
    clearTimeout(current.timer);
    if (message.type === 'rendered') return;
    this.current = undefined;
    current.item.done(message.result);
    this.dispatch();
  }

  /** The worker died or a task ran too long: the task in it fails, a new worker takes the rest. */
  private replaceWorker(reason: string): void {
    const current = this.current;
    this.current = undefined;
    if (current) {
      clearTimeout(current.timer);
      const { kind } = current.item.task;
      current.item.done(kind === 'chat' ? { templateError: reason } : kind === 'grammar' ? { grammarError: reason } : { error: reason });
    }
    const old = this.worker;
    this.worker = undefined;
    if (old) detach(old);
    void old?.terminate();
    if (this.closed) return;
    this.spawn().then(
      () => this.dispatch(),
      (err: unknown) => this.failWaiting(err),
    );
  }

  private async spawn(): Promise<void> {
    const { worker } = await startWorker(new URL('./worker.ts', import.meta.url), this.data, {
      name: this.name,
      resourceLimits: { maxOldGenerationSizeMb: this.options.heapLimitMb },
    });
    if (this.closed) {
      await worker.terminate();
      return;
    }
    // Only the listeners added here: a Worker has listeners of its own that must stay.
    worker.on('message', (message: FromPreprocessWorker) => this.onMessage(message));
    worker.on('error', (err: Error & { code?: string }) =>
      this.replaceWorker(err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `it used more than this server's ${this.options.heapLimitMb} MiB for preprocessing` : `the ${this.name} stopped: ${err.message}`),
    );
    worker.on('exit', (code) => {
      if (this.worker === worker) this.replaceWorker(`the ${this.name} exited with code ${code}`);
    });
    this.worker = worker;
  }
}

/**
 * The main thread's handle on the preprocessing workers, which tokenize prompts, render chat
 * templates and check grammars off the HTTP thread. Requests take turns a prompt at a time, so a
 * request of many long prompts does not hold up a short one for all of its length. A template that
 * renders for longer than `renderLimitMs`, or that runs out of the worker's heap, fails its own
 * request with a ChatTemplateError; the worker is replaced and the other requests carry on.
 * Grammars are checked in a worker of their own (started with the first), so that a slow compile
 * never holds up tokenizing.
 */
export class Preprocessor {
  private readonly checkedGrammars = new Set<string>();

  private constructor(
    private readonly text: WorkerLane,
    private readonly grammars: WorkerLane,
  ) {}

  static async start(data: PreprocessData, options: PreprocessorOptions = DEFAULT_PREPROCESSOR_OPTIONS): Promise<Preprocessor> {
    const preprocessor = new Preprocessor(
      new WorkerLane('preprocessing worker', { role: 'text', tokenizerJson: data.tokenizerJson, tokenizerConfig: data.tokenizerConfig }, options),
      new WorkerLane('grammar-checking worker', { role: 'grammar', grammarVocabulary: data.grammarVocabulary }, options),
    );
    await preprocessor.text.start();
    return preprocessor;
  }

  /**
   * Token ids of each text, in order. `check` sees each text's ids as soon as they are ready and may
   * throw: then the request's other texts are not tokenized and the promise rejects with its error.
   */
  encode(texts: readonly string[], addSpecialTokens: boolean, check: (ids: number[], index: number) => void = () => {}): Promise<number[][]> {
    if (texts.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const results: number[][] = new Array(texts.length);
      let remaining = texts.length;
      const job: Job = { items: [] };
      const fail = (err: unknown) => {
        job.items.length = 0;
        reject(err);
      };
      job.items = texts.map((text, index) => ({
        task: { kind: 'encode', text, addSpecialTokens },
        done: (result) => {
          if (!('ids' in result)) return fail(new Error(`tokenizing failed: ${'error' in result ? result.error : 'no ids'}`));
          try {
            check(result.ids, index);
          } catch (err) {
            return fail(err);
          }
          results[index] = result.ids;
          if (--remaining === 0) resolve(results);
        },
      }));
      this.text.enqueue(job);
    });
  }

  /**
   * Resolves when `spec` can be used by the engine; rejects with a GrammarError saying why not (its
   * text is the grammar engine's, or that compiling took longer than `grammarLimitMs`).
   */
  async checkGrammar(spec: GrammarSpec): Promise<void> {
    const key = JSON.stringify(spec);
    if (this.checkedGrammars.has(key)) {
      this.checkedGrammars.delete(key);
      this.checkedGrammars.add(key);
      return;
    }
    const result = await new Promise<PreprocessResult>((done) => this.grammars.enqueue({ items: [{ task: { kind: 'grammar', spec }, done }] }));
    if ('grammarError' in result) throw new GrammarError(result.grammarError);
    if ('error' in result) throw new Error(`checking the grammar failed: ${result.error}`);
    this.checkedGrammars.add(key);
    if (this.checkedGrammars.size > CHECKED_GRAMMARS) this.checkedGrammars.delete(this.checkedGrammars.values().next().value!);
  }

  /** Renders the conversation (and the tools it may call) with the model's chat template and tokenizes it. */
  chat(messages: readonly ChatMessage[], contextLength: number, tools?: ChatTools, options?: ChatRenderOptions): Promise<ChatPrompt> {
    return new Promise((resolve, reject) => {
      const done = (result: PreprocessResult) => {
        if ('templateError' in result) reject(new ChatTemplateError(result.templateError));
        else if ('ids' in result || 'tooLong' in result) resolve(result);
        else reject(new Error(`tokenizing failed: ${'error' in result ? result.error : 'no ids'}`));
      };
      this.text.enqueue({ items: [{ task: { kind: 'chat', messages: [...messages], ...(tools && { tools }), contextLength, ...(options && { options }) }, done }] });
    });
  }

  /** The text of token ids, decoded off the HTTP thread. */
  decode(ids: readonly number[], skipSpecialTokens: boolean): Promise<string> {
    return new Promise((resolve, reject) => {
      const done = (result: PreprocessResult) => {
        if ('text' in result) resolve(result.text);
        else reject(new Error(`decoding failed: ${'error' in result ? result.error : 'no text'}`));
      };
      this.text.enqueue({ items: [{ task: { kind: 'decode', ids: [...ids], skipSpecialTokens }, done }] });
    });
  }

  /** Stops the workers; requests still waiting fail. */
  async close(): Promise<void> {
    await Promise.all([this.text.close(), this.grammars.close()]);
  }
}
