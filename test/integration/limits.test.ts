import type { RunningServer } from '../../src/server.js';
import { defaultConfig } from '../../src/config.js';
import { postJson, request, sseEvents, startTestServer } from '../helpers/server.js';

const MODEL = 'tinystories-gpt2';
const completion = (fields: Record<string, unknown>) => ({ model: MODEL, prompt: 'Once upon a time', max_tokens: 2, ...fields });
const chat = (fields: Record<string, unknown>) => ({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, ...fields });

describe('request limits', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({
      limits: { maxBodyBytes: 4096, maxN: 2, maxTokens: 8, maxPrompts: 2, maxStop: 2, maxStopLength: 5, maxMessages: 3, maxJsonDepth: 64 },
    });
  });
  afterAll(() => server.close());

  it.each([
    ['n', '--max-n', '/v1/completions', completion({ n: 3 })],
    ['best_of', '--max-n', '/v1/completions', completion({ best_of: 3 })],
    ['n', '--max-n', '/v1/chat/completions', chat({ n: 3 })],
    ['max_tokens', '--max-tokens-limit', '/v1/completions', completion({ max_tokens: 9 })],
    ['max_tokens', '--max-tokens-limit', '/v1/chat/completions', chat({ max_tokens: 9 })],
    ['max_completion_tokens', '--max-tokens-limit', '/v1/chat/completions', chat({ max_tokens: undefined, max_completion_tokens: 9 })],
    ['prompt', '--max-prompts', '/v1/completions', completion({ prompt: ['a', 'b', 'c'] })],
    ['prompt', '--max-prompts', '/v1/completions', completion({ prompt: [[1], [2], [3]] })],
    ['stop', '--max-stop', '/v1/completions', completion({ stop: ['a', 'b', 'c'] })],
    ['stop', '--max-stop', '/v1/chat/completions', chat({ stop: ['a', 'b', 'c'] })],
    ['stop', '--max-stop-length', '/v1/completions', completion({ stop: 'longer' })],
    ['stop', '--max-stop-length', '/v1/chat/completions', chat({ stop: ['ok', 'longer'] })],
    ['messages', '--max-messages', '/v1/chat/completions', chat({ messages: Array.from({ length: 4 }, () => ({ role: 'user', content: 'Hi' })) })],
  ])('%s beyond %s → 400 naming the field and the limit (%s)', async (param, flag, path, body) => {
    const response = await postJson(server, path, body);
    expect(response.status).toBe(400);
    expect(response.body.error).toEqual({ message: expect.stringContaining(flag), type: 'invalid_request_error', param, code: 'limit_exceeded' });
  });

  it('requests at the limits are served', async () => {
    const atLimits = { n: 2, max_tokens: 8, stop: ['ab', 'cdefg'] };
    expect((await postJson(server, '/v1/completions', completion({ ...atLimits, prompt: ['a', 'b'] }))).status).toBe(200);
    const messages = Array.from({ length: 3 }, () => ({ role: 'user', content: 'Hi' }));
    expect((await postJson(server, '/v1/chat/completions', chat({ ...atLimits, messages }))).status).toBe(200);
  });

  it('--max-tokens-limit also bounds a request that gives no max_tokens', async () => {
    const response = await postJson(server, '/v1/chat/completions', chat({ max_tokens: undefined, logit_bias: { 0: -100 } }));
    expect(response.status).toBe(200);
    expect(response.body.usage.completion_tokens).toBe(8);
    expect(response.body.choices[0].finish_reason).toBe('length');
  });

  it('a body over --max-body-bytes → 413 in the error shape, naming the limit', async () => {
    const response = await postJson(server, '/v1/completions', completion({ prompt: 'x'.repeat(5000) }));
    expect(response.status).toBe(413);
    expect(response.body.error).toEqual({ message: expect.stringContaining('4096 bytes'), type: 'invalid_request_error', param: null, code: 'request_too_large' });
    expect(response.body.error.message).toContain('--max-body-bytes');
  });

  it('defaults: 1 MiB bodies, n up to 16, 4 stop strings', () => {
    const { limits } = defaultConfig();
    expect(limits.maxBodyBytes).toBe(1024 * 1024);
    expect(limits.maxN).toBe(16);
    expect(limits.maxStop).toBe(4);
  });
});

describe('the request deadline (--request-timeout)', () => {
  let server: RunningServer;
  // Far more tokens than can be generated within the deadline on any machine.
  const long = { max_tokens: 400, temperature: 0, logit_bias: { 0: -100 } };

  beforeAll(async () => {
    server = await startTestServer({ requestTimeoutMs: 150 });
  });
  afterAll(() => server.close());

  it('a plain request past it → 504 timeout in the error shape, and its sequence is cancelled', async () => {
    const started = performance.now();
    const response = await postJson(server, '/v1/completions', completion(long));
    expect(response.status).toBe(504);
    expect(response.body.error).toEqual({ message: expect.stringContaining('0.15 seconds'), type: 'server_error', param: null, code: 'timeout' });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(server.engine.load).toBe(0);
  });

  it('a stream past it ends with an error event instead of [DONE]', async () => {
    const response = await fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat({ ...long, stream: true })),
    });
    expect(response.status).toBe(200);
    const events = sseEvents(await response.text());
    expect(events).not.toContain('[DONE]');
    expect(events.at(-1)).toEqual({ error: { message: expect.any(String), type: 'server_error', param: null, code: 'timeout' } });
    expect(server.engine.load).toBe(0);
  });

  it('a request within it is served', async () => {
    expect((await postJson(server, '/v1/completions', completion({ max_tokens: 1 }))).status).toBe(200);
  });
});
