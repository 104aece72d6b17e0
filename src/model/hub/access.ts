import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ModelLoadError } from '../errors.js';

/** Where the hub is and who asks it: `HF_ENDPOINT`, and a token from `HF_TOKEN` or the file huggingface_hub's login writes. */
export interface HubAccess {
  endpoint: string;
  token?: string;
  /** Where the token came from, to name it in an error (never the token itself). */
  tokenSource?: string;
}

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

const USER_AGENT = 'ortserve; hf_hub/js';

/** The endpoint and token as huggingface_hub reads them from the environment. */
export function hubAccess(env: NodeJS.ProcessEnv = process.env): HubAccess {
  const set = (name: string) => (env[name]?.trim() ? env[name]!.trim() : undefined);
  const endpoint = (set('HF_ENDPOINT') ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
  if (!URL.canParse(endpoint) || !/^https?:$/.test(new URL(endpoint).protocol)) throw new ModelLoadError(`HF_ENDPOINT is not an http(s) URL: ${endpoint}`);
  for (const name of ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN']) {
    const token = set(name);
    if (token) return { endpoint, token, tokenSource: name };
  }
  const tokenPath = set('HF_TOKEN_PATH') ?? join(set('HF_HOME') ?? join(homedir(), '.cache', 'huggingface'), 'token');
  if (existsSync(tokenPath)) {
    const token = readFileSync(tokenPath, 'utf8').trim();
    if (token) return { endpoint, token, tokenSource: tokenPath };
  }
  return { endpoint };
}

/**
 * `fetch` for the hub client: the token goes only to the endpoint's own origin (a redirect to a
 * file store elsewhere does not carry it), with a user agent that names the server.
 */
export function hubFetch(access: HubAccess): typeof fetch {
  const origin = new URL(access.endpoint).origin;
  return (input, init = {}) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = new Headers(init.headers);
    headers.set('user-agent', USER_AGENT);
    if (access.token && url.origin === origin && !headers.has('authorization')) headers.set('authorization', `Bearer ${access.token}`);
    return fetch(input, { ...init, headers });
  };
}
