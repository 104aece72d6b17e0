import OpenAI from 'openai';
import type { RunningServer } from '../../src/server.js';
import { exited, startCli } from '../helpers/cli.js';
import { request, startTestServer } from '../helpers/server.js';

const MODEL = 'tinystories-gpt2';
const completion = { model: MODEL, prompt: 'Once upon a time', max_tokens: 2 };
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

function expectUnauthorized(response: { status: number; body: unknown; headers: Headers }) {
  expect(response.status).toBe(401);
  expect(response.body).toEqual({ error: { message: expect.any(String), type: 'authentication_error', param: null, code: 'invalid_api_key' } });
  expect(response.headers.get('www-authenticate')).toBe('Bearer');
}

describe('API keys', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({ apiKeys: ['sk-first-key', 'sk-second-key'] });
  });
  afterAll(() => server.close());

  it('a request without a key → 401 invalid_api_key, on every /v1 route', async () => {
    expectUnauthorized(await request(server, 'POST', '/v1/completions', completion));
    expectUnauthorized(await request(server, 'POST', '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }));
    expectUnauthorized(await request(server, 'GET', '/v1/models'));
    expectUnauthorized(await request(server, 'GET', `/v1/models/${MODEL}`));
  });

  it('a wrong key, a key of another scheme or a key with a correct prefix → 401', async () => {
    for (const authorization of ['Bearer sk-wrong-key', 'Bearer sk-first-ke', 'Bearer sk-first-key-and-more', 'Basic sk-first-key', 'sk-first-key', 'Bearer ']) {
      expectUnauthorized(await request(server, 'POST', '/v1/completions', completion, { authorization }));
    }
  });

  it('each configured key is accepted', async () => {
    for (const key of ['sk-first-key', 'sk-second-key']) {
      const response = await request(server, 'POST', '/v1/completions', completion, bearer(key));
      expect(response.status).toBe(200);
      expect(response.body.object).toBe('text_completion');
    }
  });

  it('the openai client works with the right key and gets an AuthenticationError with a wrong one', async () => {
    const good = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-second-key', maxRetries: 0 });
    const chat = await good.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 });
    expect(chat.choices[0]!.message.role).toBe('assistant');
    const bad = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-nope', maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('health, readiness, metrics and the docs stay open', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/openapi.yaml']) {
      expect((await request(server, 'GET', path)).status).toBe(200);
    }
  });
});

describe('without API keys', () => {
  it('the API is open', async () => {
    const server = await startTestServer();
    try {
      expect((await request(server, 'POST', '/v1/completions', completion)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe('keys from the environment', () => {
  it('ORTSERVE_API_KEYS takes a comma-separated list, and no key reaches the logs', async () => {
    const { child, url, logs } = await startCli(['--port', '0', '--host', '127.0.0.1', '--log-level', 'trace'], {
      ORTSERVE_API_KEYS: 'sk-env-one, sk-env-two',
      ORTSERVE_THREADS: '1',
    });
    try {
      const post = (key: string) =>
        fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...bearer(key) }, body: JSON.stringify(completion) });
      expect((await post('sk-env-one')).status).toBe(200);
      expect((await post('sk-env-two')).status).toBe(200);
      expect((await post('sk-env-wrong')).status).toBe(401);
    } finally {
      const code = exited(child);
      child.kill('SIGTERM');
      expect(await code).toBe(0);
    }
    const output = logs.join('\n');
    expect(output).toContain('"statusCode":401');
    for (const key of ['sk-env-one', 'sk-env-two', 'sk-env-wrong']) expect(output).not.toContain(key);
  });
});
