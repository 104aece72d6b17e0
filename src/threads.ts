import { Worker, workerData, type ResourceLimits } from 'node:worker_threads';

const BOOTSTRAP = new URL('./worker-bootstrap.mjs', import.meta.url);

/** Starts the TypeScript module `entry` in a worker thread; it reads `data` with `workerInput()`. */
export function startWorker(entry: URL, data: unknown, resourceLimits?: ResourceLimits): Worker {
  return new Worker(BOOTSTRAP, { workerData: { entry: entry.href, data }, ...(resourceLimits && { resourceLimits }) });
}

/** Inside a worker started by `startWorker`: the data it was given. */
export function workerInput<T>(): T {
  return (workerData as { data: T }).data;
}
