import OpenAI from 'openai';
import type { RunningServer } from '../../src/server.js';
import { startTestServer } from '../helpers/server.js';

/** The openai SDK retries what is worth retrying (429, 503), and not what would only fail again (400, 504). */

const MODEL = 'tinystories-gpt2';

/** The official client with two retries, counting the requests it sends. */
function countingClient(server: RunningServer) {
  const sent = { count: 0 };
  const client = new OpenAI({
    baseURL: `${server.url}/v1`,
    apiKey: 'unused',
    maxRetries: 2,
    fetch: (input, init) => {
      sent.count++;
      return fetch(input, init);
    },
  });
  return { client, sent };
}

describe('retry signals', () => {
  it('a request past --request-timeout (504) says x-should-retry: false, and is sent once', async () => {
    const server = await startTestServer({ requestTimeoutMs: 300 });
    try {
      const { client, sent } = countingClient(server);
      const error = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 500, temperature: 1, logit_bias: { 0: -100 } }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(error).toBeInstanceOf(OpenAI.APIError);
      const apiError = error as InstanceType<typeof OpenAI.APIError>;
      expect(apiError.status).toBe(504);
      expect(apiError.headers?.get('x-should-retry')).toBe('false');
      expect(sent.count).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('a request that could never fit (400 limit_exceeded) is sent once; a full queue (429) is retried', async () => {
    const server = await startTestServer({ maxBatch: 1, maxQueue: 0 });
    try {
      const { client, sent } = countingClient(server);
      await expect(client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], n: 2 })).rejects.toMatchObject({ status: 400, code: 'limit_exceeded' });
      expect(sent.count).toBe(1);

      // One long stream holds the only slot; the client's request meets a full server and retries.
      const holder = new AbortController();
      const long = await fetch(`${server.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, prompt: 'Once upon a time', max_tokens: 500, stream: true, logit_bias: { 0: -100 } }),
        signal: holder.signal,
      });
      sent.count = 0;
      const retried = client.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 2 });
      setTimeout(() => holder.abort(), 1500);
      const completion = await retried;
      await long.body?.cancel().catch(() => {});
      expect(completion.choices).toHaveLength(1);
      expect(sent.count).toBeGreaterThan(1);
    } finally {
      await server.close();
    }
  });

  it('a draining server (503) is retried', async () => {
    const server = await startTestServer();
    try {
      const { client, sent } = countingClient(server);
      await server.lifecycle.drain(0);
      await expect(client.completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 2 })).rejects.toMatchObject({ status: 503 });
      expect(sent.count).toBe(3);
    } finally {
      await server.close();
    }
  });
});
