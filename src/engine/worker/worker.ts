import { parentPort } from 'node:worker_threads';
import { workerInput } from '../../threads.js';
import { createDecoderSession, readDecoderSignature } from '../../model/session.js';
import { ContinuousBatcher } from './batcher.js';
import { DecoderRunner } from './decoder.js';
import type { FromWorker, ToWorker, WorkerConfig } from '../protocol.js';

/** The engine thread: owns the ONNX session, so that forward passes never block the HTTP server. */

const port = parentPort!;
const config = workerInput<WorkerConfig>();
const send = (message: FromWorker) => port.postMessage(message);

try {
  const { session, limits } = await createDecoderSession(config.modelPath, { device: config.device, threads: config.threads });
  const signature = readDecoderSignature(session, config);
  const runner = new DecoderRunner(session, signature);
  // Positions past the graph's position table cannot run, whatever config.json says.
  const contextLength = Math.min(config.contextLength, limits.positions ?? Infinity);
  const batcher = new ContinuousBatcher(
    runner,
    { ...config, contextLength, maxKvTokens: config.maxKvTokens || config.maxBatch * contextLength },
    {
      tokens: (updates) => send({ type: 'tokens', updates }),
      failed: (ids, message) => send({ type: 'error', ids, message }),
      step: (batchSize, stats) => send({ type: 'step', batchSize, stats }),
    },
  );
  port.on('message', (message: ToWorker) => {
    if (message.type === 'submit') batcher.submit(message.request, message.choices);
    else if (message.type === 'cancel') batcher.cancel(message.id);
    else {
      // Terminating the thread inside a forward pass aborts the process, so the engine stops here:
      // after the step under way, with the session released, the thread ends on its own.
      void batcher
        .stop()
        .then(() => session.release())
        .finally(() => port.close());
    }
  });
  send({ type: 'ready', limits });
} catch (err) {
  send({ type: 'failed', message: (err as Error).message });
}
