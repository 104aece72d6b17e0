import type { Worker } from 'node:worker_threads';
import { FIXED_LIMITS } from '../options.js';
import { LruCache } from '../util/lru.js';
import { ModelLoadError } from '../model/errors.js';
import { startWorker } from '../util/threads.js';
import type { FromPreprocessWorker, PreprocessResult, PreprocessTask, PreprocessWorkerData } from './protocol.js';

/** Who a task is for: queues take turns between clients, and a task whose request is gone is dropped. */
export interface TaskOwner {
  /** The client (an API key, else an address); requests of one client take turns with other clients', not ahead of them. */
  client: string;
  /** Aborted when the request is gone: its tasks still waiting are dropped and its promise rejects with the signal's reason (as fetch does). */
  signal?: AbortSignal;
}

/** Clients whose last turn is remembered after their queue empties. */
const RECENT_CLIENTS = FIXED_LIMITS.rememberedClients.value;

const detach = (worker: Worker) => {
  for (const event of ['message', 'error', 'exit']) worker.removeAllListeners(event);
};

/** One task of a request, waiting for the worker or in it. */
export interface Item {
  task: PreprocessTask;
  done(result: PreprocessResult): void;
}

/** A request's tasks: its client's turn runs one of them. */
export interface Job {
  items: Item[];
  owner: TaskOwner;
}

/** What a task may run for before its worker is stopped, and what the task's result then says. */
export interface Deadline {
  ms: number;
  result(seconds: number): PreprocessResult;
}

/**
 * One worker and its queue. Clients take turns a task at a time, and so do the requests of one
 * client, so that neither a client with many requests nor a request with many prompts holds up
 * another. A task that runs past its limit (a chat template's render, a grammar's compile), or a
 * worker that runs out of heap, dies or cannot be sent a task, fails the task in it; the worker is
 * replaced and the queue carries on.
 */
export class WorkerLane {
  /** Each client's waiting requests, and the turn it last had. */
  private readonly clients = new Map<string, { jobs: Job[]; lastTurn: number }>();
  /** The last turns of clients with nothing waiting now: one that comes back does not count as new. */
  private readonly pastTurns = new LruCache<string, number>(RECENT_CLIENTS);
  private turns = 0;
  private worker: Worker | undefined;
  private starting: Promise<void> | undefined;
  private current: { id: number; item: Item; timer?: NodeJS.Timeout } | undefined;
  private nextId = 1;
  private closed = false;

  constructor(
    private readonly name: string,
    /** What the worker starts with; it may still be coming (the grammar vocabulary comes with the engine). */
    private readonly data: PreprocessWorkerData | Promise<PreprocessWorkerData>,
    private readonly heapLimitMb: number,
    private readonly deadline: (task: PreprocessTask) => Deadline | undefined,
  ) {
    // Data that never comes fails the worker's first start, where it is reported; not before, unhandled.
    if (data instanceof Promise) data.catch(() => {});
  }

  /** Starts the worker now (else with the first task). */
  start(): Promise<void> {
    return (this.starting ??= this.spawn());
  }

  enqueue(job: Job): void {
    if (this.closed) {
      for (const item of job.items) item.done({ error: 'the server is shutting down' });
      return;
    }
    const { signal } = job.owner;
    if (signal?.aborted) return this.abandon(job);
    signal?.addEventListener('abort', () => this.abandon(job), { once: true });
    const queued = this.clients.get(job.owner.client);
    if (queued) queued.jobs.push(job);
    else this.clients.set(job.owner.client, { jobs: [job], lastTurn: this.pastTurns.get(job.owner.client) ?? -1 });
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

  /** A request that is gone: its waiting tasks leave the queue (one in the worker runs out, unheard). */
  private abandon(job: Job): void {
    const queued = this.clients.get(job.owner.client);
    const at = queued?.jobs.indexOf(job) ?? -1;
    if (at !== -1) {
      queued!.jobs.splice(at, 1);
      if (queued!.jobs.length === 0) {
        this.clients.delete(job.owner.client);
        this.pastTurns.set(job.owner.client, queued!.lastTurn);
      }
    }
    const aborted = { aborted: true } as const;
    for (const item of job.items.splice(0)) item.done(aborted);
  }

  private failWaiting(err: unknown): void {
    for (const { jobs } of this.clients.values()) for (const job of jobs) for (const item of job.items.splice(0)) item.done({ error: (err as Error).message });
    this.clients.clear();
  }

  /**
   * The next task: the client whose last turn is the longest ago (one that just arrived first, then
   * in order of arrival) gives one from its first request, and that request goes to the back of the
   * client's line.
   */
  private nextItem(): Item | undefined {
    while (this.clients.size > 0) {
      let next: [string, { jobs: Job[]; lastTurn: number }] | undefined;
      for (const entry of this.clients) if (!next || entry[1].lastTurn < next[1].lastTurn) next = entry;
      const [client, queued] = next!;
      queued.lastTurn = this.turns++;
      const job = queued.jobs.shift()!;
      const item = job.items.shift();
      if (job.items.length > 0) queued.jobs.push(job);
      if (queued.jobs.length === 0) {
        this.clients.delete(client);
        this.pastTurns.set(client, queued.lastTurn);
      }
      if (item) return item;
    }
    return undefined;
  }

  /** Sends the next task to the worker. */
  private dispatch(): void {
    if (this.current || !this.worker || this.closed) return;
    const item = this.nextItem();
    if (!item) return;
    const id = this.nextId++;
    this.current = { id, item };
    const deadline = this.deadline(item.task);
    if (deadline) this.current.timer = setTimeout(() => this.replaceWorker(deadline.result(deadline.ms / 1000)), deadline.ms);
    try {
      this.worker.postMessage({ id, task: item.task });
    } catch (err) {
      // What cannot be copied to the worker (a value nested too deep to clone) fails its own request.
      clearTimeout(this.current.timer);
      this.current = undefined;
      item.done({ inputError: `it could not be handed to the ${this.name} (${(err as Error).message})` });
      this.dispatch();
    }
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

  /** The worker died or a task ran too long: the task in it fails with `result`, a new worker takes the rest. */
  private replaceWorker(result: PreprocessResult): void {
    const current = this.current;
    this.current = undefined;
    if (current) {
      clearTimeout(current.timer);
      current.item.done(result);
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

  /** Why the task in a worker that stopped failed, in the words its kind of task reports. */
  private stopped(reason: string): PreprocessResult {
    const kind = this.current?.item.task.kind;
    if (kind === 'chat') return { templateError: reason };
    if (kind === 'grammar') return { grammarError: reason };
    if (kind === 'schema') return { schemaError: reason };
    return { error: reason };
  }

  private async spawn(): Promise<void> {
    const { worker } = await startWorker(new URL('./worker.ts', import.meta.url), await this.data, {
      name: this.name,
      resourceLimits: { maxOldGenerationSizeMb: this.heapLimitMb },
      failure: (message) => new ModelLoadError(message),
    });
    if (this.closed) {
      await worker.terminate();
      return;
    }
    // Only the listeners added here: a Worker has listeners of its own that must stay.
    worker.on('message', (message: FromPreprocessWorker) => this.onMessage(message));
    worker.on('error', (err: Error & { code?: string }) =>
      this.replaceWorker(
        this.stopped(err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `it used more than this server's ${this.heapLimitMb} MiB for preprocessing` : `the ${this.name} stopped: ${err.message}`),
      ),
    );
    worker.on('exit', (code) => {
      if (this.worker === worker) this.replaceWorker(this.stopped(`the ${this.name} exited with code ${code}`));
    });
    this.worker = worker;
  }
}
