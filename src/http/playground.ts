import { readFileSync } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';

/** The playground's files, in the repository: one page, its script and its styles, nothing from another origin. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/playground/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/playground/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

/** `GET /`: a chat page over this server's API, in the browser. It needs no key; the API calls it makes do. */
export const playgroundRoutes: FastifyPluginAsync = async (app) => {
  for (const [path, { file, type }] of Object.entries(FILES)) {
    const body = readFileSync(new URL(`../playground/${file}`, import.meta.url));
    app.get(path, async (_, reply) =>
      reply
        .type(type)
        .header('cache-control', 'no-cache')
        .header('content-security-policy', "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:")
        .send(body),
    );
  }
};
