import type { RunningServer } from '../../src/server.js';
import { startTestServer } from '../helpers/server.js';

/** Browser pages on other origins: allowed only where --cors-origin says, preflight included. */

const preflight = (server: RunningServer, origin: string) =>
  fetch(`${server.url}/v1/chat/completions`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
  });

const post = (server: RunningServer, origin: string, key?: string) =>
  fetch(`${server.url}/v1/completions`, {
    method: 'POST',
    headers: { origin, 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) },
    body: JSON.stringify({ model: 'tinystories-gpt2', prompt: 'Hi', max_tokens: 1 }),
  });

describe('CORS with --cors-origin https://app.example.com and an API key', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ corsOrigins: ['https://app.example.com'], apiKeys: ['key'] });
  });
  afterAll(() => server.close());

  it('answers the preflight without a key, allowing the headers the API needs', async () => {
    const response = await preflight(server, 'https://app.example.com');
    expect(response.status).toBe(204);
    expect(response.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    expect(response.headers.get('access-control-allow-methods')).toContain('POST');
    expect(response.headers.get('access-control-allow-headers')).toMatch(/authorization/);
    expect(response.headers.get('access-control-allow-headers')).toMatch(/content-type/);
  });

  it('marks the real answers, errors included, for the allowed origin only', async () => {
    const served = await post(server, 'https://app.example.com', 'key');
    expect(served.status).toBe(200);
    expect(served.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    const refused = await post(server, 'https://app.example.com');
    expect(refused.status).toBe(401);
    expect(refused.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
    const other = await post(server, 'https://evil.example.org', 'key');
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    expect((await preflight(server, 'https://evil.example.org')).headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('CORS', () => {
  it('--cors-origin * allows any origin', async () => {
    const server = await startTestServer({ corsOrigins: ['*'] });
    try {
      expect((await preflight(server, 'https://anywhere.example')).headers.get('access-control-allow-origin')).toBe('*');
      expect((await post(server, 'https://anywhere.example')).headers.get('access-control-allow-origin')).toBe('*');
    } finally {
      await server.close();
    }
  });

  it('is off by default: no CORS headers', async () => {
    const server = await startTestServer();
    try {
      const response = await post(server, 'https://app.example.com');
      expect(response.status).toBe(200);
      expect(response.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await server.close();
    }
  });
});
