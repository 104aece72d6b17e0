import { parentPort } from 'node:worker_threads';
import { workerInput } from '../util/threads.js';
import type { FromGrammarThread, GrammarThreadData, ToGrammarThread } from './grammar-protocol.js';
import { GrammarEngine, type TokenMatcher } from './xgrammar.js';

/**
 * A grammar thread: compiles the grammars the engine thread asks for and keeps a matcher per
 * constrained sequence, so that a compile, however long, never holds up the engine's decode loop.
 */

const port = parentPort!;
const send = (message: FromGrammarThread) => port.postMessage(message);

try {
  const { vocabulary, masks, maskWords } = workerInput<GrammarThreadData>();
  const words = new Int32Array(masks);
  const engine = await GrammarEngine.start(vocabulary);
  const matchers = new Map<number, TokenMatcher>();

  const handle = async (message: ToGrammarThread): Promise<void> => {
    switch (message.type) {
      case 'compile':
        try {
          const bytes = await engine.compile(message.key, message.spec);
          send({ type: 'compiled', key: message.key, bytes });
        } catch (err) {
          send({ type: 'refused', key: message.key, message: (err as Error).message });
        }
        return;
      case 'forget':
        engine.forget(message.key);
        return;
      case 'open': {
        const matcher = await engine.matcher(message.key, message.stopTokenIds);
        if (matcher) matchers.set(message.matcher, matcher);
        return;
      }
      case 'accept':
        for (const [id, token] of message.tokens) matchers.get(id)?.accept(token);
        return;
      case 'close':
        for (const id of message.matchers) {
          matchers.get(id)?.dispose();
          matchers.delete(id);
        }
        return;
      case 'masks':
        for (const [row, id] of message.matchers.entries()) {
          const matcher = matchers.get(id);
          // A closed or finished matcher has no next token: its row allows nothing.
          let mask: Int32Array = new Int32Array(maskWords);
          if (matcher) mask = await matcher.nextTokenMask().catch(() => mask);
          words.set(mask.subarray(0, maskWords), 1 + row * maskWords);
        }
        Atomics.store(words, 0, message.request);
        Atomics.notify(words, 0);
        return;
    }
  };
  // One message at a time, in order: a mask request sees every accept sent before it.
  let queue: Promise<void> = Promise.resolve();
  port.on('message', (message: ToGrammarThread) => {
    queue = queue.then(() => handle(message));
  });
  send({ type: 'ready' });
} catch (err) {
  send({ type: 'failed', message: (err as Error).message });
}
