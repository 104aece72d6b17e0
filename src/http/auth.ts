import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { apiError } from '../errors.js';

const digest = (key: string) => createHash('sha256').update(key).digest();

const unauthorized = (message: string) =>
  apiError('invalid_api_key', message, null, { 'www-authenticate': 'Bearer' });

/** The key of `Authorization: Bearer <key>`, else of `x-api-key: <key>` (as Anthropic's clients send it). */
function requestKey(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  if (match) return match[1];
  const apiKey = request.headers['x-api-key'];
  return typeof apiKey === 'string' && apiKey.trim() !== '' ? apiKey.trim() : undefined;
}

/**
 * Requires `Authorization: Bearer <key>` (or `x-api-key: <key>`) on the routes of `api` (the scope of the /v1 routes) when
 * keys are configured. The hook belongs to the routes the router matched, so no spelling of a
 * path (percent-escapes, absolute form) reaches a route without it. Keys are
 * compared as SHA-256 digests with a constant-time comparison, against every key, so neither the
 * timing nor an early exit tells how much of a key was right.
 */
export const apiKeyAuth = fp<{ apiKeys: readonly string[] }>(
  async (api, { apiKeys }) => {
    registerApiKeyCheck(api, apiKeys);
  },
  // Draining refuses first: a draining server answers 503 whatever the key.
  { name: 'ortserve-api-keys', dependencies: ['ortserve-drain'] },
);

function registerApiKeyCheck(api: FastifyInstance, apiKeys: readonly string[]): void {
  if (apiKeys.length === 0) return;
  const allowed = apiKeys.map(digest);
  api.addHook('onRequest', async (request) => {
    const token = requestKey(request);
    if (token === undefined) {
      throw unauthorized(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
      );
    }
    const given = digest(token);
    let matched = -1;
    allowed.forEach((key, index) => {
      if (timingSafeEqual(given, key)) matched = index;
    });
    if (matched === -1) throw unauthorized('Incorrect API key provided.');
    keyOfRequest.set(request, matched);
  });
}

const keyOfRequest = new WeakMap<FastifyRequest, number>();

/** Which of the configured keys a request was let in with (its place in the list); undefined on a server without keys. */
export const apiKeyIndex = (request: FastifyRequest): number | undefined => keyOfRequest.get(request);
