import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OpenAIError } from './errors.js';

const digest = (key: string) => createHash('sha256').update(key).digest();

const unauthorized = (message: string) =>
  new OpenAIError(401, message, null, 'invalid_api_key', 'authentication_error', { 'www-authenticate': 'Bearer' });

/** The API routes; health, readiness, metrics and the docs stay open for probes and scrapers. */
export const isApiPath = (url: string) => url === '/v1' || url.startsWith('/v1/') || url.startsWith('/v1?');

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return match?.[1];
}

/**
 * Requires `Authorization: Bearer <key>` on the API routes when keys are configured. Keys are
 * compared as SHA-256 digests with a constant-time comparison, against every key, so neither the
 * timing nor an early exit tells how much of a key was right.
 */
export function registerApiKeyAuth(app: FastifyInstance, apiKeys: readonly string[]): void {
  if (apiKeys.length === 0) return;
  const allowed = apiKeys.map(digest);
  app.addHook('onRequest', async (request) => {
    if (!isApiPath(request.url)) return;
    const token = bearerToken(request);
    if (token === undefined) {
      throw unauthorized(
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
      );
    }
    const given = digest(token);
    let valid = false;
    for (const key of allowed) valid = timingSafeEqual(given, key) || valid;
    if (!valid) throw unauthorized('Incorrect API key provided.');
  });
}
