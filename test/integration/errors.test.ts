import type { RunningServer } from '../../src/server.js';
import { rawJsonRequest, rawRequest, type RawResponse } from '../helpers/raw-http.js';
import { postJson, request, startTestServer } from '../helpers/server.js';

const MODEL = 'tinystories-gpt2';
const completion = (fields: Record<string, unknown>) => ({ model: MODEL, prompt: 'Once upon a time', max_tokens: 4, ...fields });
const chat = (fields: Record<string, unknown>) => ({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, ...fields });

function expectOpenAIError(body: unknown, param: string | null, code?: string) {
  expect(body).toEqual({
    error: {
      message: expect.any(String),
      type: 'invalid_request_error',
      param,
      code: code ?? expect.anything(),
    },
  });
}

describe('client mistakes get OpenAI-style 4xx errors', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('unknown model → 404 model_not_found, on both endpoints and /v1/models/{id}', async () => {
    for (const [path, body] of [
      ['/v1/completions', completion({ model: 'gpt-4' })],
      ['/v1/chat/completions', chat({ model: 'gpt-4' })],
    ] as const) {
      const response = await postJson(server, path, body);
      expect(response.status).toBe(404);
      expectOpenAIError(response.body, 'model', 'model_not_found');
      expect(response.body.error.message).toContain('gpt-4');
    }
    const card = await request(server, 'GET', '/v1/models/gpt-4');
    expect(card.status).toBe(404);
    expectOpenAIError(card.body, 'model', 'model_not_found');
  });

  it('malformed JSON → 400 invalid_json', async () => {
    const response = await postJson(server, '/v1/completions', '{"model": "tinystories-gpt2", "prompt": ');
    expect(response.status).toBe(400);
    expectOpenAIError(response.body, null, 'invalid_json');
  });

  it('a body that is not an object → 400', async () => {
    for (const body of ['[]', '"text"', '42', 'null']) {
      const response = await postJson(server, '/v1/completions', body);
      expect(response.status).toBe(400);
      expect(response.body.error.type).toBe('invalid_request_error');
    }
  });

  it.each([
    ['application/x-www-form-urlencoded', 'prompt=hi'],
    ['text/plain', JSON.stringify({ model: 'tinystories-gpt2', prompt: 'Hi' })],
    ['text/plain; charset=utf-8', 'Hi'],
  ])('a body sent as %s → 415 in the error shape', async (type, body) => {
    const response = await request(server, 'POST', '/v1/completions', body, { 'content-type': type });
    expect(response.status).toBe(415);
    expect(response.body.error).toMatchObject({ type: 'invalid_request_error', code: 'unsupported_media_type' });
  });

  it('a stream asked for with Connection: close says close and closes the connection after [DONE]', async () => {
    const body = JSON.stringify({ model: 'tinystories-gpt2', prompt: 'Hi', max_tokens: 3, stream: true });
    const host = new URL(server.url).host;
    const started = performance.now();
    const answer = await rawRequest(
      server.url,
      `POST /v1/completions HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      5_000,
    );
    expect(answer.status).toBe(200);
    expect(answer.headers.connection).toBe('close');
    expect(answer.body).toContain('data: [DONE]');
    // Closed by the server at the end of the stream, not after the keep-alive timeout.
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it.each([
    ['temperature', completion({ temperature: 2.5 })],
    ['temperature', completion({ temperature: -0.1 })],
    ['temperature', completion({ temperature: 'hot' })],
    ['top_p', completion({ top_p: 1.5 })],
    ['top_p', completion({ top_p: -1 })],
    ['n', completion({ n: 0 })],
    ['n', completion({ n: 1.5 })],
    ['max_tokens', completion({ max_tokens: 0 })],
    ['max_tokens', completion({ max_tokens: 'many' })],
    ['stop', completion({ stop: ['a', 'b', 'c', 'd', 'e'] })],
    ['stop', completion({ stop: 42 })],
    ['seed', completion({ seed: 1.5 })],
    ['stream', completion({ stream: 'yes' })],
    ['prompt', { model: MODEL }],
    ['prompt', completion({ prompt: 42 })],
    ['model', { prompt: 'hi' }],
    ['prompt', completion({ prompt: [] })],
    ['prompt', completion({ prompt: [1, 'a'] })],
    ['prompt', completion({ prompt: [5, 4096] })],
    ['prompt', completion({ prompt: [[5], [99999]] })],
    ['prompt[0]', completion({ prompt: [-1] })],
    ['logprobs', completion({ logprobs: 6 })],
    ['best_of', completion({ best_of: 1, n: 2 })],
    ['best_of', completion({ best_of: 3, stream: true })],
    ['suffix', completion({ suffix: 'the end' })],
    ['echo', completion({ echo: 'yes' })],
    ['stream_options.include_usage', completion({ stream: true, stream_options: { include_usage: 1 } })],
    ['stream_options', completion({ stream_options: { include_usage: true } })],
    ['stream_options', completion({ stream: false, stream_options: { include_usage: true } })],
  ])('completions: bad %s → 400 naming it', async (param, body) => {
    const response = await postJson(server, '/v1/completions', body);
    expect(response.status).toBe(400);
    expectOpenAIError(response.body, param);
    expect(response.body.error.message).toContain(param);
  });

  it.each([
    ['messages', chat({ messages: [] })],
    ['messages', chat({ messages: 'hello' })],
    ['messages[0].role', chat({ messages: [{ role: 'wizard', content: 'Hi' }] })],
    ['messages[0].content', chat({ messages: [{ role: 'user' }] })],
    ['messages[0].content[0].type', chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] })],
    ['messages[0].content[1].text', chat({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text' }] }] })],
    ['tools[0].function.parameters', chat({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: 3 } } }] })],
    ['tools[1].function.name', chat({ tools: [{ type: 'function', function: { name: 'f' } }, { type: 'function', function: { name: 'f' } }] })],
    ['tool_choice', chat({ tool_choice: 'auto' })],
    ['tool_choice', chat({ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } })],
    ['messages[0].content', chat({ messages: [{ role: 'assistant', content: null }] })],
    ['messages[0].tool_call_id', chat({ messages: [{ role: 'tool', content: '42' }] })],
    ['functions', chat({ functions: [{ name: 'f' }] })],
    ['response_format.type', chat({ response_format: { type: 'yaml' } })],
    ['response_format.json_schema.schema', chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', pattern: '((' } } } })],
    ['response_format.json_schema.schema', chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { $ref: '#/$defs/missing' } } } })],
    ['response_format.json_schema.name', chat({ response_format: { type: 'json_schema', json_schema: { name: 'a b', schema: {} } } })],
    ['top_logprobs', chat({ top_logprobs: 2 })],
    ['stream_options', chat({ stream_options: { include_usage: false } })],
    ['top_logprobs', chat({ logprobs: true, top_logprobs: 21 })],
    ['presence_penalty', chat({ presence_penalty: 2.5 })],
    ['frequency_penalty', chat({ frequency_penalty: -3 })],
    ['logit_bias', chat({ logit_bias: { 99999: 5 } })],
    ['logit_bias.5', chat({ logit_bias: { 5: 101 } })],
    ['logit_bias.abc', chat({ logit_bias: { abc: 1 } })],
    ['temperature', chat({ temperature: 3 })],
    ['max_completion_tokens', chat({ max_completion_tokens: 0 })],
    ['stop', chat({ stop: ['1', '2', '3', '4', '5'] })],
  ])('chat: bad %s → 400 naming it', async (param, body) => {
    const response = await postJson(server, '/v1/chat/completions', body);
    expect(response.status).toBe(400);
    expectOpenAIError(response.body, param);
  });

  it('a prompt longer than the context → 400 context_length_exceeded', async () => {
    const response = await postJson(server, '/v1/completions', completion({ prompt: 'Once upon a time '.repeat(200), max_tokens: undefined }));
    expect(response.status).toBe(400);
    expectOpenAIError(response.body, 'prompt', 'context_length_exceeded');
    expect(response.body.error.message).toContain("maximum context length is 512 tokens");
  });

  it('prompt + max_tokens beyond the context → 400 with the token counts', async () => {
    const response = await postJson(server, '/v1/completions', completion({ max_tokens: 600 }));
    expect(response.status).toBe(400);
    expectOpenAIError(response.body, 'max_tokens', 'context_length_exceeded');
    expect(response.body.error.message).toContain('you requested 604 tokens (4 in the prompt, 600 in the completion)');
  });

  it('an empty prompt → 400', async () => {
    const response = await postJson(server, '/v1/completions', completion({ prompt: '' }));
    expect(response.status).toBe(400);
    expectOpenAIError(response.body, 'prompt');
  });

  it('an unknown URL → 404 in the error shape', async () => {
    const response = await request(server, 'GET', '/v1/no-such-route');
    expect(response.status).toBe(404);
    expectOpenAIError(response.body, null, 'unknown_url');
  });

  it('ignores unknown fields, as OpenAI does', async () => {
    const response = await postJson(server, '/v1/completions', completion({ frobnicate: true, temperature: 0 }));
    expect(response.status).toBe(200);
  });

  it('stops at the context length with finish_reason length when no max_tokens is given', async () => {
    const prompt = 'Once upon a time '.repeat(97);
    const rendered = server.model.chatTemplate.render([{ role: 'user', content: prompt }]);
    const promptTokens = server.model.tokenizer.encode(rendered).length;
    expect(promptTokens).toBeGreaterThan(480);
    expect(promptTokens).toBeLessThan(512);
    const response = await postJson(server, '/v1/chat/completions', chat({ messages: [{ role: 'user', content: prompt }], max_tokens: undefined, temperature: 0 }));
    expect(response.status).toBe(200);
    expect(response.body.choices[0].finish_reason).toBe('length');
    expect(response.body.usage.total_tokens).toBe(512);
  });

  it('the server keeps serving after all of these', async () => {
    const health = await request(server, 'GET', '/health');
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok' });
    expect(health.headers.get('x-request-id')).toBeTruthy();
  });
});

describe('requests Node or the router would answer in their own shape', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  const expectRawError = (response: RawResponse, status: number, code: string, param: string | null = null) => {
    expect(response.status).toBe(status);
    expect(JSON.parse(response.body)).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param, code } });
    expect(response.headers['x-request-id']).toMatch(/\S/);
    expect(response.headers['content-type']).toContain('application/json');
  };

  it('a malformed percent-escape in the path → 400 invalid_url', async () => {
    for (const target of ['/v1/models/%ZZ', '/v1/%E0%A4%A', '/%']) expectRawError(await rawJsonRequest(server.url, 'GET', target), 400, 'invalid_url');
  });

  it('an HTTP/1.1 request without a Host header → 400 missing_host', async () => {
    expectRawError(await rawRequest(server.url, 'GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n'), 400, 'missing_host');
    // HTTP/1.0 needs none.
    expect((await rawRequest(server.url, 'GET /v1/models HTTP/1.0\r\n\r\n')).status).toBe(200);
  });

  it('an Expect header other than 100-continue → 417 expectation_failed', async () => {
    const host = new URL(server.url).host;
    expectRawError(await rawRequest(server.url, `GET /v1/models HTTP/1.1\r\nHost: ${host}\r\nExpect: something-else\r\nConnection: close\r\n\r\n`), 417, 'expectation_failed', 'expect');
  });
});

