import { Worker, workerData, type ResourceLimits } from 'node:worker_threads';

const BOOTSTRAP = new URL('./worker-bootstrap.mjs', import.meta.url);

/** What a worker started by `startWorker` sends first: that it is ready (with what it found), or why it is not. */
export type StartMessage = { type: 'ready' } | { type: 'failed'; message: string };

export interface StartOptions {
  /** Names the worker in errors. */
  name: string;
  resourceLimits?: ResourceLimits;
  /** The error a `failed` message becomes (what the worker could not load). */
  failure: (message: string) => Error;
}

/**
 * Starts the TypeScript module `entry` in a worker thread (it reads `data` with `workerInput()`)
 * and resolves with its `ready` message. A `failed` message is `options.failure`'s error; a worker that
 * fails or exits first is an Error. Either way the worker is stopped, and the start-up listeners
 * are removed, so its owner adds its own.
 */
export async function startWorker<Ready extends { type: 'ready' }>(
  entry: URL,
  data: unknown,
  options: StartOptions,
): Promise<{ worker: Worker; ready: Ready }> {
  const { resourceLimits } = options;
  const worker = new Worker(BOOTSTRAP, { workerData: { entry: entry.href, data }, ...(resourceLimits && { resourceLimits }) });
  let onMessage: (message: Ready | StartMessage) => void = () => {};
  let onError: (err: Error) => void = () => {};
  let onExit: (code: number) => void = () => {};
  const ready = await new Promise<Ready>((resolve, reject) => {
    onMessage = (message) => {
      if (message.type === 'ready') resolve(message as Ready);
      else if (message.type === 'failed') reject(options.failure(message.message));
    };
    onError = reject;
    onExit = (code) => reject(new Error(`the ${options.name} exited during start-up with code ${code}`));
    worker.on('message', onMessage).on('error', onError).on('exit', onExit);
  })
    .catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    })
    .finally(() => {
      worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    });
  return { worker, ready };
}

/** Inside a worker started by `startWorker`: the data it was given. */
export function workerInput<T>(): T {
  return (workerData as { data: T }).data;
}
