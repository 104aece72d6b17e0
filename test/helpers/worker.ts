import { Worker } from 'node:worker_threads';

/** The result of `run(input)` exported by the TypeScript module at `module` (a file URL), run in a worker thread. */
export function runInWorker<Result>(module: URL, input: unknown): Promise<Result> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL('./ts-worker.mjs', import.meta.url), { workerData: { module: module.href, input } });
    worker.once('message', (result: Result) => {
      resolve(result);
      void worker.terminate();
    });
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`worker exited with code ${code} before it answered`)));
  });
}
