import { parse } from 'yaml';
import type { RunningServer } from '../../src/server.js';
import { openapiDocument, responseErrors, schemaErrors } from '../helpers/openapi.js';
import { openaiClient, request, startTestServer } from '../helpers/server.js';

describe('openapi.yaml', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('is served at /openapi.yaml as OpenAPI 3.1 and documents every route of the server', async () => {
    const response = await fetch(`${server.url}/openapi.yaml`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('yaml');
    const served = parse(await response.text()) as { openapi: string; paths: Record<string, unknown> };
    expect(served.openapi).toBe('3.1.0');
    expect(served).toEqual(openapiDocument);
    const routes: [string, string][] = [
      ['POST', '/v1/completions'],
      ['POST', '/v1/chat/completions'],
      ['GET', '/v1/models'],
      ['GET', '/health'],
      ['GET', '/openapi.yaml'],
      ['GET', '/docs'],
      ['GET', '/'],
    ];
    for (const [method, url] of routes) {
      expect([method, url, server.app.hasRoute({ method: method as 'GET', url })]).toEqual([method, url, true]);
      expect(Object.keys(served.paths)).toContain(url);
    }
    expect(Object.keys(served.paths)).toContain('/v1/models/{model}');
  });

  it('is rendered as a page at /docs, with its assets served locally', async () => {
    const page = await fetch(`${server.url}/docs`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain("url: '/openapi.yaml'");
    for (const asset of ['swagger-ui.css', 'swagger-ui-bundle.js']) {
      expect(html).toContain(`/docs/${asset}`);
      const response = await fetch(`${server.url}/docs/${asset}`);
      expect(response.status).toBe(200);
      expect((await response.arrayBuffer()).byteLength).toBeGreaterThan(1000);
    }
    expect((await request(server, 'GET', '/docs/secrets.txt')).status).toBe(404);
  });

  it('catches a response that drifts from it', () => {
    const good = { id: 'cmpl-1', object: 'text_completion', created: 1, model: 'm', system_fingerprint: 'fp', choices: [{ index: 0, text: 'x', logprobs: null, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };
    expect(schemaErrors('Completion', good)).toEqual([]);
    expect(schemaErrors('Completion', { ...good, extra: 1 })).not.toEqual([]);
    expect(schemaErrors('Completion', { ...good, choices: [{ ...good.choices[0], finish_reason: 'tool_calls' }] })).not.toEqual([]);
    expect(schemaErrors('Error', { error: { message: 'x', type: 'invalid_request_error', param: null } })).not.toEqual([]);
    const stream = 'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"f","choices":[{"index":0,"delta":{"content":1},"logprobs":null,"finish_reason":null}]}\n\ndata: [DONE]\n\n';
    expect(responseErrors('/v1/chat/completions', 200, 'text/event-stream', stream)).not.toEqual([]);
  });

  it('matches what the official client receives, streamed and not', async () => {
    const { client, validation } = openaiClient(server);
    await client.completions.create({ model: 'tinystories-gpt2', prompt: 'Hi', max_tokens: 3, logprobs: 2, echo: true });
    const stream = await client.chat.completions.create({ model: 'tinystories-gpt2', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, stream: true, logprobs: true, top_logprobs: 1, stream_options: { include_usage: true } });
    for await (const chunk of stream) expect(chunk).toBeDefined();
    await expect(client.completions.create({ model: 'nope', prompt: 'Hi' })).rejects.toThrow();
    await validation.settled();
    expect(validation.checked()).toBe(3);
    expect(validation.violations).toEqual([]);
  });
});
