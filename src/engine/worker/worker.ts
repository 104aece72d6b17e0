import { parentPort } from 'node:worker_threads';
import { workerInput } from '../../threads.js';
import { createDecoderSession, readDecoderSignature } from '../../model/session.js';
import { GrammarEngine } from '../../grammar/xgrammar.js';
import { ContinuousBatcher } from './batcher.js';
import { DecoderRunner } from './decoder.js';
import { tokenBytes } from '../../grammar/token-bytes.js';
import { GrammarProcessor, Utf8Processor } from './logits-processors.js';
import type { Choice, FromWorker, PromptRequest, ToWorker, WorkerConfig } from '../protocol.js';

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
  const grammars = await GrammarEngine.start(config.grammarVocabulary);
  const bytes = tokenBytes(config.grammarVocabulary);
  /**
   * A constrained request gets its grammar compiled (or taken from the cache) and a matcher per
   * choice. Compiling blocks this thread, and so the running streams, for as long as it takes: the
   * probe that checked the grammar bounded that time.
   */
  const submit = async (request: PromptRequest, choices: Choice[]) => {
    const { grammar } = request;
    if (!grammar) return batcher.submit(request, choices);
    let matchers;
    try {
      matchers = await grammars.matchers(grammar, request.stopTokenIds, choices.length);
    } catch (err) {
      return send({ type: 'error', ids: choices.map((choice) => choice.id), message: `the grammar did not compile: ${(err as Error).message}` });
    }
    batcher.submit(request, choices, matchers.map((matcher) => [new GrammarProcessor(matcher, request.stopTokenIds), new Utf8Processor(bytes)]));
  };
  // Messages are handled in order, so that a cancel never overtakes the submit it cancels.
  let handled: Promise<unknown> = Promise.resolve();
  port.on('message', (message: ToWorker) => {
    if (message.type === 'submit') handled = handled.then(() => submit(message.request, message.choices));
    else if (message.type === 'cancel') handled = handled.then(() => batcher.cancel(message.id));
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
