import fc from 'fast-check';
import type { RunningServer } from '../../src/server.js';
import { rawJsonRequest } from '../helpers/raw-http.js';
import { startTestServer } from '../helpers/server.js';

/**
 * However a client spells the path of an API route, the router and the key check agree on it:
 * without a key, every spelling is refused (401) or names no route (404), and none is served.
 */

const MODEL = 'tinystories-gpt2';
const KEY = 'sk-paths-key';
const ROUTES: { method: string; path: string; body?: unknown }[] = [
  { method: 'POST', path: '/v1/completions', body: { model: MODEL, prompt: 'Once', max_tokens: 1 } },
  { method: 'POST', path: '/v1/chat/completions', body: { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 } },
  { method: 'GET', path: '/v1/models' },
  { method: 'GET', path: `/v1/models/${MODEL}` },
];

const seed = (fixed: number) => (process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : fixed);
const hex = (char: string, upper: boolean) => {
  const code = char.charCodeAt(0).toString(16).padStart(2, '0');
  return `%${upper ? code.toUpperCase() : code}`;
};

/** One way of writing a character of a path: as it is, percent-encoded (either case of hex digits), or in upper case. */
const spelledChar = (char: string) =>
  char === '/'
    ? fc.oneof({ weight: 8, arbitrary: fc.constant('/') }, { weight: 1, arbitrary: fc.constant('//') })
    : fc.oneof(
        { weight: 16, arbitrary: fc.constant(char) },
        { weight: 6, arbitrary: fc.boolean().map((upper) => hex(char, upper)) },
        { weight: 1, arbitrary: fc.constant(char.toUpperCase()) },
      );

/** `usual` half of the time, else one of `others`. */
const mostly = (usual: string, others: string[]) => fc.oneof(fc.constant(usual), fc.constantFrom(...others));

/** A path spelled character by character, with dot segments and absolute forms mixed in. */
const spelledPath = (path: string) =>
  fc
    .tuple(
      fc.tuple(...[...path].map(spelledChar)).map((chars) => chars.join('')),
      mostly('', ['http://127.0.0.1', 'http://x', 'HTTP://example.com:80', 'https://[::1]']),
      mostly('', ['/.', '/./', '/x/..', '/%2e', '/.%2E/v1/..']),
      mostly('', ['?', '?api_key=none', '/']),
    )
    .map(([spelled, origin, dots, tail]) => {
      // Dot segments go after the first segment: /v1/./completions, /v1/x/../completions.
      const firstEnd = spelled.indexOf('/', spelled.search(/[^/]/));
      return `${origin}${spelled.slice(0, firstEnd)}${dots}${spelled.slice(firstEnd)}${tail}`;
    });

describe('API keys: every spelling of every /v1 route', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer({ apiKeys: [KEY] });
  });
  afterAll(() => server.close());

  it.each([
    ['/%761/completions', 0],
    ['/%76%31/completions', 0],
    ['/v%31/chat/completions', 1],
    ['/%76%31/models', 2],
    ['http://x/v1/completions', 0],
  ])('%s without a key → 401', async (target, route) => {
    const { method, body } = ROUTES[route]!;
    const response = await rawJsonRequest(server.url, method, target, body);
    expect(response.status).toBe(401);
    expect(JSON.parse(response.body).error.code).toBe('invalid_api_key');
  });

  it('the same spelling with the key is served', async () => {
    const { method, body } = ROUTES[0]!;
    const response = await rawJsonRequest(server.url, method, '/%76%31/completions', body, { host: new URL(server.url).host, authorization: `Bearer ${KEY}` });
    expect(response.status).toBe(200);
  });

  it('percent-encoded letters, absolute form, dot segments, double slashes and case: 401 or 404, never served', async () => {
    const host = new URL(server.url).host;
    let routable = 0;
    const runs = 300;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: ROUTES.length - 1 }).chain((route) => fc.tuple(fc.constant(route), spelledPath(ROUTES[route]!.path))),
        async ([route, target]) => {
          const { method, body } = ROUTES[route]!;
          const without = await rawJsonRequest(server.url, method, target, body);
          const withKey = await rawJsonRequest(server.url, method, target, body, { host, authorization: `Bearer ${KEY}` });
          if (withKey.status === 200) routable++;
          const expected = withKey.status === 200 ? [401] : [401, 404];
          if (!expected.includes(without.status)) {
            throw new Error(`${method} ${target} without a key → ${without.status} (with the key: ${withKey.status}) ${without.body.slice(0, 200)}`);
          }
        },
      ),
      { numRuns: runs, seed: seed(1501) },
    );
    // Many spellings reach a route, so the property is not passing by matching nothing.
    expect(routable).toBeGreaterThan(runs / 5);
  });
});
