import type { RunningServer } from '../../src/server.js';
import { exited, startCli, type Launcher } from '../helpers/cli.js';
import { rawJsonRequest } from '../helpers/raw-http.js';
import { postJson, request, sseEvents, startTestServer } from '../helpers/server.js';

const MODEL = 'tinystories-gpt2';
const longStream = { model: MODEL, prompt: 'Once upon a time', max_tokens: 300, temperature: 0, stream: true, stream_options: { include_usage: true } };

function openStream(url: string, body: unknown = longStream): Promise<Response> {
  return fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/** Reads a stream to its end; the text it carried and the usage event, if any. */
async function readStream(response: Response) {
  const events = sseEvents(await response.text()) as (Record<string, unknown> | string)[];
  const chunks = events.filter((event): event is { choices: { text: string }[]; usage?: { completion_tokens: number } } => typeof event === 'object');
  return {
    done: events.at(-1) === '[DONE]',
    text: chunks.map((chunk) => chunk.choices[0]?.text ?? '').join(''),
    completionTokens: chunks.find((chunk) => chunk.usage)?.usage?.completion_tokens,
  };
}

/** Sends small requests until the drain refuses one; its status. */
async function refusedOnceDraining(url: string): Promise<number> {
  let status = 0;
  for (let i = 0; i < 100 && status !== 503; i++) {
    const response = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: 1 }) });
    status = response.status;
    await response.text();
    if (status !== 503) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return status;
}

describe('readiness and graceful shutdown', () => {
  it('/ready answers 200 while serving', async () => {
    const server = await startTestServer();
    try {
      const response = await request(server, 'GET', '/ready');
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ status: 'ready' });
    } finally {
      await server.close();
    }
  });

  it('while draining: /ready is 503, /health 200, new requests 503, and the running stream completes', async () => {
    const server: RunningServer = await startTestServer();
    const stream = await openStream(server.url);
    expect(stream.status).toBe(200);
    const shutdown = server.shutdown(30_000);

    const ready = await request(server, 'GET', '/ready');
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual({ status: 'draining' });
    expect((await request(server, 'GET', '/health')).status).toBe(200);
    const refused = await postJson(server, '/v1/completions', { model: MODEL, prompt: 'Hi', max_tokens: 2 });
    expect(refused.status).toBe(503);
    // However the path is spelled, a request for an API route is refused, not let in uncounted.
    for (const target of ['/%761/completions', '/v%31/completions', `http://x/v1/completions`]) {
      expect((await rawJsonRequest(server.url, 'POST', target, { model: MODEL, prompt: 'Hi', max_tokens: 2 })).status).toBe(503);
    }
    expect(refused.body.error).toEqual({ message: expect.any(String), type: 'server_error', param: null, code: 'server_shutting_down' });

    const result = await readStream(stream);
    expect(result.done).toBe(true);
    expect(result.completionTokens).toBeGreaterThan(0);
    expect(await shutdown).toEqual({ drained: true });
  });

  it('with a drain delay: /ready is 503 at once, but requests are served until the delay is over', async () => {
    const server: RunningServer = await startTestServer();
    const started = performance.now();
    const shutdown = server.shutdown(30_000, 2_000);
    expect((await request(server, 'GET', '/ready')).status).toBe(503);
    const during = await postJson(server, '/v1/completions', { model: MODEL, prompt: 'Hi', max_tokens: 2 });
    expect(during.status).toBe(200);
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(await shutdown).toEqual({ drained: true });
    // Then it refused and stopped (refusals while draining: the test above).
    expect(performance.now() - started).toBeGreaterThanOrEqual(2_000);
  });

  it('after the grace period, what is still running is cut off and the server stops', async () => {
    const server = await startTestServer();
    const stream = await openStream(server.url, { ...longStream, max_tokens: 500 });
    const started = performance.now();
    expect(await server.shutdown(50)).toEqual({ drained: false });
    expect(performance.now() - started).toBeLessThan(5000);
    const result = await readStream(stream).catch(() => ({ done: false }));
    expect(result.done).toBe(false);
  });
});

describe('signals', () => {
  it('SIGTERM while a stream runs: new requests get 503, the stream completes, the process exits 0', async () => {
    const { child, url, logs } = await startCli(['--port', '0', '--host', '127.0.0.1'], { ORTSERVE_THREADS: '1' });
    const code = exited(child);
    try {
      const stream = await openStream(url);
      expect(stream.status).toBe(200);
      child.kill('SIGTERM');
      // Wait for the drain to begin, then check that new work is refused.
      let refused: Response | undefined;
      for (let i = 0; i < 50; i++) {
        refused = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: 1 }) });
        if (refused.status === 503) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(refused!.status).toBe(503);
      const result = await readStream(stream);
      expect(result.done).toBe(true);
      expect(result.completionTokens).toBeGreaterThan(0);
      expect(await code).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    expect(logs.join('\n')).toContain('in-flight requests finished');
  });

  describe.each<[Launcher, 'the process group' | 'the first process', NodeJS.Signals]>([
    ['npm start', 'the process group', 'SIGTERM'],
    ['npm start', 'the process group', 'SIGINT'],
    ['npm start', 'the first process', 'SIGTERM'],
    ['bin/ortserve.js', 'the process group', 'SIGTERM'],
    ['bin/ortserve.js', 'the process group', 'SIGINT'],
    ['bin/ortserve.js', 'the first process', 'SIGTERM'],
  ])('started through %s, %s sent to %s', (launcher, target, signal) => {
    it('the running stream gets [DONE], new requests get 503, and every process exits 0', async () => {
      const { child, url, logs } = await startCli(['--port', '0', '--host', '127.0.0.1'], { ORTSERVE_THREADS: '1' }, { launcher, detached: true });
      const code = exited(child);
      try {
        // Four choices of 150 tokens: still streaming when the signal comes.
        const stream = await openStream(url, { ...longStream, max_tokens: 150, n: 4, logit_bias: { 0: -100 } });
        expect(stream.status).toBe(200);
        if (target === 'the process group') process.kill(-child.pid!, signal);
        else child.kill(signal);
        expect(await refusedOnceDraining(url)).toBe(503);
        const result = await readStream(stream);
        expect(result.done).toBe(true);
        expect(result.completionTokens).toBe(600);
        expect(await code).toBe(0);
        // No process of the group is left serving.
        await expect(fetch(`${url}/health`)).rejects.toThrow();
      } finally {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // the group is gone
        }
      }
      const output = logs.join('\n');
      expect(output).toContain('in-flight requests finished');
      expect(output).not.toContain('second signal');
    });
  });

  it('a second signal exits at once', async () => {
    const { child, url, logs } = await startCli(['--port', '0', '--host', '127.0.0.1', '--shutdown-grace', '600', '--max-n', '64'], { ORTSERVE_THREADS: '1' });
    const code = exited(child);
    try {
      // 64 choices of 500 tokens, four batches of 16 one after another: still streaming when the second signal comes.
      const stream = await openStream(url, { ...longStream, max_tokens: 500, n: 64, logit_bias: { 0: -100 } });
      expect(stream.status).toBe(200);
      child.kill('SIGTERM');
      // Past the window in which a second signal is taken as a relayed copy of the first.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      child.kill('SIGINT');
      // The signal and the last log lines, should it end otherwise.
      expect({ code: await code, signal: child.signalCode, logs: logs.slice(-6) }).toMatchObject({ code: 1 });
      // With a grace period of ten minutes, only the second signal can have cut the stream short.
      expect(await stream.text().catch(() => '')).not.toContain('[DONE]');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
