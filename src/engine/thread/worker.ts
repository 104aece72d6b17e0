import { parentPort } from 'node:worker_threads';
import { workerInput } from '../../util/threads.js';
import { createDecoderSession, readDecoderSignature } from './graph/session.js';
import { ContinuousBatcher } from './batcher.js';
import { DecoderRunner } from './decoder.js';
import { pieceBytes, tokenBytes, type TokenBytes } from '../../grammar/token-bytes.js';
import { GrammarService } from './grammar-service.js';
import type { GrammarVocabulary } from '../../grammar/vocabulary.js';
import { servedLimits } from './served-limits.js';
import { AfterReasoning, GrammarProcessor, Utf8Processor, type LogitsProcessor } from './logits-processors.js';
import type { Choice, FromWorker, PromptRequest, ToWorker, WorkerConfig } from '../protocol.js';

/** The engine thread: owns the ONNX session, so that forward passes never block the HTTP server. */

const port = parentPort!;
const config = workerInput<WorkerConfig>();
const send = (message: FromWorker) => port.postMessage(message);

try {
  const { settings } = config;
  const { session, limits: graph, rewrites } = await createDecoderSession(config.modelPath, { ...settings, headDim: config.declared.headDim });
  const signature = readDecoderSignature(session, config.declared);
  const runner = new DecoderRunner(session, signature);
  const served = servedLimits(config.declared, graph);
  const batcher = new ContinuousBatcher(
    runner,
    { ...settings, contextLength: served.contextLength, maxKvTokens: settings.maxKvTokens || settings.maxBatch * served.contextLength, unpaddedRows: graph.unpaddedRows ?? false },
    {
      tokens: (updates) => send({ type: 'tokens', updates }),
      failed: (ids, message) => send({ type: 'error', ids, message }),
      step: (batchSize, stats) => send({ type: 'step', batchSize, stats }),
    },
  );
  // Sized to the served vocabulary (the `vocabulary` message after `ready`): a grammar's masks cover every logit the sampler sees.
  let vocabulary: GrammarVocabulary | undefined;
  const grammarVocabulary = () => {
    if (!vocabulary) throw new Error('the grammar vocabulary has not arrived');
    return vocabulary;
  };
  // Started with the first constrained request: a server that never gets one never pays for them.
  let grammarService: Promise<GrammarService> | undefined;
  let grammarBytes: { bytes: TokenBytes; nonAscii: number[] } | undefined;
  const grammars = () =>
    (grammarService ??= GrammarService.start(grammarVocabulary(), settings.maxBatch, settings.grammarCacheBytes).catch((err: unknown) => {
      grammarService = undefined;
      throw err;
    }));
  const utf8Check = () => {
    if (!grammarBytes) {
      const bytes = tokenBytes(grammarVocabulary());
      grammarBytes = { bytes, nonAscii: bytes.flatMap((tokenBytes, token) => (tokenBytes ? [token] : [])) };
    }
    return new Utf8Processor(grammarBytes.bytes, grammarBytes.nonAscii);
  };
  const thinkingBytes = (tokenId: number) => {
    const vocabulary = grammarVocabulary();
    const piece = vocabulary.tokens[tokenId];
    return piece ? pieceBytes(piece, vocabulary.kind) : undefined;
  };
  /** Choices whose grammar is being compiled, and those of them cancelled meanwhile. */
  const compiling = new Set<number>();
  const cancelledWhileCompiling = new Set<number>();
  /**
   * A constrained request waits for its grammar (compiled in a grammar thread, or taken from the
   * cache) and gets a matcher per choice; the running streams go on meanwhile.
   */
  const submit = async (request: PromptRequest, choices: Choice[]) => {
    const { grammar } = request;
    if (!grammar) return batcher.submit(request, choices);
    const ids = choices.map((choice) => choice.id);
    for (const id of ids) compiling.add(id);
    let service;
    let key;
    try {
      service = await grammars();
      key = await service.prepare(grammar);
    } catch (err) {
      for (const id of ids) cancelledWhileCompiling.delete(id);
      return send({ type: 'error', ids, message: `the grammar did not compile: ${(err as Error).message}` });
    } finally {
      for (const id of ids) compiling.delete(id);
    }
    const matchers = service.matchers(key, request.stopTokenIds, choices.length);
    const processors = matchers.map((matcher): LogitsProcessor[] => {
      const constrained = [new GrammarProcessor(matcher, request.stopTokenIds), utf8Check()];
      return request.reasoning ? [new AfterReasoning(constrained, request.reasoning, thinkingBytes)] : constrained;
    });
    batcher.submit(request, choices, processors);
    for (const id of ids) if (cancelledWhileCompiling.delete(id)) batcher.cancel(id);
  };
  port.on('message', (message: ToWorker) => {
    if (message.type === 'submit') for (const { request, choices } of message.prompts) void submit(request, choices);
    else if (message.type === 'vocabulary') vocabulary = message.vocabulary;
    else if (message.type === 'cancel') {
      if (compiling.has(message.id)) cancelledWhileCompiling.add(message.id);
      else batcher.cancel(message.id);
    } else {
      // Terminating the thread inside a forward pass aborts the process, so the engine stops here:
      // after the step under way, with the session released, the thread ends on its own.
      void batcher
        .stop()
        .then(() => Promise.all([session.release(), grammarService?.then((service) => service.close(), () => {})]))
        .finally(() => port.close());
    }
  });
  send({ type: 'ready', served, graph, rewrites });
} catch (err) {
  send({ type: 'failed', message: (err as Error).message });
}
