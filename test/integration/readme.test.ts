import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import type { RunningServer } from '../../src/server.js';
import { responseErrors } from '../helpers/openapi.js';
import { startTestServer } from '../helpers/server.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const DOCUMENTED_URL = 'http://localhost:8000';

/** The README's `sh` code blocks that call curl: each is a command a reader can paste. */
const curlExamples = [...README.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1]!.trim()).filter((block) => block.startsWith('curl '));

describe('the README', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('has a curl example for each endpoint', () => {
    const joined = curlExamples.join('\n');
    for (const path of ['/v1/completions', '/v1/chat/completions', '/v1/models', '/v1/responses', '/tokenize']) expect(joined).toContain(`${DOCUMENTED_URL}${path}`);
    expect(joined).toContain('"stream": true');
  });

  it.each(curlExamples.map((command) => [command.slice(0, 80), command]))('runs %s…', async (_, command) => {
    const live = command.replaceAll(DOCUMENTED_URL, server.url);
    const { stdout } = await promisify(execFile)('sh', ['-c', live], { timeout: 30000 });
    expect(stdout.length).toBeGreaterThan(0);
    const path = new URL(/https?:\/\/\S+/.exec(live)![0]!.replace(/['"]$/, '')).pathname;
    const contentType = live.includes('"stream": true') ? 'text/event-stream' : 'application/json';
    expect(responseErrors(path, 200, contentType, stdout)).toEqual([]);
  });
});
