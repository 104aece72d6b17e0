import { connect, type Socket } from 'node:net';
import type { RunningServer } from '../../src/server.js';
import { fixture, postJson, request, sseEvents, startTestServer, type JsonResponse } from '../helpers/server.js';

/**
 * What a hostile client can send costs only that client: values nested too deep, schemas whose
 * checks backtrack or whose grammars are huge, requests abandoned while they are prepared, floods of
 * slow work, and probes of what other clients' prompts were. Every answer is a 4xx in the API's
 * shape (never a 5xx or a crash), and the server stays responsive for everyone else.
 */

const MODEL = 'tinystories-gpt2';
const chat = (fields: Record<string, unknown>) => ({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, ...fields });
const jsonSchema = (schema: unknown) => ({ type: 'json_schema', json_schema: { name: 'out', schema } });

/** `[[[…]]]` nested `depth` deep, as JSON text (building it as a value would overflow JSON.stringify's stack). */
const deepArrayText = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

/** Posts a body given as JSON text, optionally as a client with an API key. */
const postText = (server: RunningServer, path: string, body: string, key?: string) =>
  request(server, 'POST', path, body, { 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The longest `/health` latency seen while `work` runs (polled back to back). */
async function healthWhile(server: RunningServer, work: Promise<unknown>): Promise<number> {
  let done = false;
  const finished = work.finally(() => (done = true));
  let longest = 0;
  while (!done) {
    const started = performance.now();
    const health = await request(server, 'GET', '/health');
    expect(health.status).toBe(200);
    longest = Math.max(longest, performance.now() - started);
    await sleep(10);
  }
  await finished;
  return longest;
}

function expectClientError(response: JsonResponse, code: string, param?: string | RegExp): void {
  expect([response.status, response.body.error?.code]).toEqual([400, code]);
  if (param !== undefined) expect(response.body.error.param).toMatch(param);
}

describe('values nested too deep', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('100,000-deep chat_template_kwargs, twice: a 400 naming the field each time, and the server stays up', async () => {
    const body = `{"model":"${MODEL}","max_tokens":2,"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"x":${deepArrayText(100_000)}}}`;
    for (let i = 0; i < 2; i++) {
      const response = await postText(server, '/v1/chat/completions', body);
      expectClientError(response, 'limit_exceeded', /^chat_template_kwargs\.x/);
      expect(response.body.error.message).toContain('--max-json-depth');
    }
    expect((await request(server, 'GET', '/health')).status).toBe(200);
    expect((await postJson(server, '/v1/chat/completions', chat({}))).status).toBe(200);
  });

  it("a history call's arguments nested 100,000 deep (a string in the body, parsed for the template): a 400 naming them", async () => {
    const args = JSON.stringify(deepArrayText(100_000));
    const body = `{"model":"${MODEL}","max_tokens":2,"messages":[{"role":"user","content":"Hi"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":${args}}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}`;
    for (let i = 0; i < 2; i++) {
      const response = await postText(server, '/v1/chat/completions', body);
      expectClientError(response, 'limit_exceeded', 'messages[1].tool_calls[0].function.arguments');
    }
    expect((await request(server, 'GET', '/health')).status).toBe(200);
  });

  it('a schema nested 5,000 deep, and one 100 deep (the grammar engine fails near there): 400s, never a 500 or a raw engine message', async () => {
    for (const depth of [5_000, 100]) {
      const schema = '{"type":"array","items":'.repeat(depth) + '{"type":"string"}' + '}'.repeat(depth);
      const body = `{"model":"${MODEL}","max_tokens":2,"messages":[{"role":"user","content":"Hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"deep","schema":${schema}}}}`;
      const response = await postText(server, '/v1/chat/completions', body);
      expectClientError(response, 'limit_exceeded', /^response_format\.json_schema\.schema/);
    }
  });

  it('nesting up to the limit is served: kwargs 60 deep within a body of 64', async () => {
    const body = `{"model":"${MODEL}","max_tokens":2,"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"x":${deepArrayText(62)}}}`;
    expect((await postText(server, '/v1/chat/completions', body)).status).toBe(200);
    const tooDeep = `{"model":"${MODEL}","max_tokens":2,"messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"x":${deepArrayText(63)}}}`;
    expectClientError(await postText(server, '/v1/chat/completions', tooDeep), 'limit_exceeded');
  });

  it('deep values on every endpoint: completions, responses (metadata, function_call arguments, text.format), tokenize', async () => {
    const deep = deepArrayText(1_000);
    const cases: [string, string][] = [
      ['/v1/completions', `{"model":"${MODEL}","prompt":"Hi","max_tokens":2,"logit_bias":{"1":${deep}}}`],
      ['/v1/responses', `{"model":"${MODEL}","input":"Hi","metadata":{"a":${deep}}}`],
      ['/v1/responses', `{"model":"${MODEL}","input":[{"type":"function_call","call_id":"c","name":"f","arguments":${JSON.stringify(deep)}}]}`],
      ['/v1/responses', `{"model":"${MODEL}","input":"Hi","text":{"format":{"type":"json_schema","name":"x","schema":{"type":"array","items":${deep}}}}}`],
      ['/tokenize', `{"model":"${MODEL}","messages":[{"role":"user","content":"Hi"}],"chat_template_kwargs":{"a":${deep}}}`],
    ];
    for (const [path, body] of cases) {
      const response = await postText(server, path, body);
      expect([path, response.status, response.body.error?.code]).toEqual([path, 400, 'limit_exceeded']);
    }
  });
});

describe('schemas that are slow, large or tricky', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ grammarCacheBytes: 16 * 1024 * 1024 });
  });
  afterAll(() => server.close());

  it("a schema whose after-the-fact check backtracks ('not' with a nested quantifier) never holds up the HTTP thread", async () => {
    const schema = { type: 'string', minLength: 34, maxLength: 34, not: { pattern: '^(a+)+b$' } };
    // The reply is "a" 34 times, on which the pattern backtracks for minutes.
    const a = server.model.tokenizer.encode('a', false);
    expect(a).toHaveLength(1);
    const reply = postJson(server, '/v1/chat/completions', chat({ max_tokens: 40, response_format: jsonSchema(schema), logit_bias: { [a[0]!]: 100 } }));
    // The check runs once the reply is sent: /health is watched for a while after it.
    const longest = await healthWhile(server, reply.then(() => sleep(1500)));
    const { status, body } = await reply;
    expect(status).toBe(200);
    expect(JSON.parse(body.choices[0].message.content)).toBe('a'.repeat(34));
    // Checking it alone took 28 s on the HTTP thread at 30 characters, doubling with each one more.
    expect(longest).toBeLessThan(1000);
    // The check was given up in its worker, which was replaced: the next schema is checked as usual.
    const next = await postJson(server, '/v1/chat/completions', chat({ max_tokens: 20, response_format: jsonSchema({ type: 'object', properties: { a: { type: 'boolean' } }, required: ['a'] }) }));
    expect(next.status).toBe(200);
  });

  it('a schema whose grammar would hold more than --grammar-cache-mb is a 400 that says so', async () => {
    const values = Array.from({ length: 12_000 }, (_, i) => `value_${i}`);
    const response = await postJson(server, '/v1/chat/completions', chat({ response_format: jsonSchema({ type: 'string', enum: values }) }));
    expectClientError(response, 'invalid_schema', 'response_format.json_schema.schema');
    expect(response.body.error.message).toContain('--grammar-cache-mb');
    // One within the budget is served.
    const small = await postJson(server, '/v1/chat/completions', chat({ max_tokens: 8, response_format: jsonSchema({ type: 'string', enum: values.slice(0, 200) }) }));
    expect(small.status).toBe(200);
  });

  it('four large anyOf schemas at once are compiled off the HTTP thread', async () => {
    const schema = (variant: number) => ({
      anyOf: Array.from({ length: 1_200 }, (_, i) => ({ type: 'object', properties: { [`k${variant}_${i}`]: { type: 'string', maxLength: 4 } }, required: [`k${variant}_${i}`] })),
    });
    // Each conversation is too long for the context, which is found after its schema is checked: what
    // is measured is the check, not the engine compiling the grammar again to generate.
    const tooLong = [{ role: 'user', content: 'Once upon a time there was a dog. '.repeat(200) }];
    const replies = Promise.all([1, 2, 3, 4].map((variant) => postJson(server, '/v1/chat/completions', chat({ messages: tooLong, response_format: jsonSchema(schema(variant)) }))));
    const longest = await healthWhile(server, replies);
    for (const reply of await replies) expect([reply.status, reply.body.error?.code]).toEqual([400, 'context_length_exceeded']);
    expect(longest).toBeLessThan(1000);
  });

  it('48 tools with tool_choice "auto" on a fresh grammar engine', async () => {
    const fresh = await startTestServer();
    try {
      const tools = Array.from({ length: 48 }, (_, i) => ({
        type: 'function',
        function: { name: `tool_${i}`, parameters: { type: 'object', properties: { a: { type: 'string' } }, required: ['a'] } },
      }));
      const response = await postJson(fresh, '/v1/chat/completions', chat({ tools, tool_choice: 'auto' }));
      // The tools' grammar is checked before the prompt: 48 tools do not fit this model's 512 tokens,
      // and that is the only complaint (it was a grammar engine error, blamed on the schema).
      expect([response.status, response.body.error?.code]).toEqual([400, 'context_length_exceeded']);
    } finally {
      await fresh.close();
    }
  });
});

describe('requests a client gives up on while they are prepared', () => {
  let server: RunningServer;
  let started = 0;
  beforeAll(async () => {
    server = await startTestServer();
    const generate = server.engine.generate.bind(server.engine);
    server.engine.generate = (...args) => {
      started++;
      return generate(...args);
    };
  });
  afterAll(() => server.close());

  it('a client gone before its schema is checked gets no sequence started for it', async () => {
    // A string of a fixed length takes about a second to compile for GPT-2's vocabulary.
    const slow = (length: number) => chat({ max_tokens: 40, response_format: jsonSchema({ type: 'string', minLength: length, maxLength: length }) });
    const before = started;
    const aborted = Array.from({ length: 4 }, async (_, i) => {
      const controller = new AbortController();
      const sent = fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(slow(3000 + i)), signal: controller.signal });
      await sleep(200);
      controller.abort();
      await sent.catch(() => undefined);
    });
    await Promise.all(aborted);
    // This request's schema is checked in the same worker after the check under way, and it goes on
    // through the same steps: by the time it is served, the requests gone have had every chance to
    // reach the engine, and none may have.
    const next = await postJson(server, '/v1/chat/completions', chat({ response_format: jsonSchema({ type: 'string', maxLength: 3 }) }));
    expect(next.status).toBe(200);
    await sleep(500);
    expect(started - before).toBe(1);
  }, 30_000);
});

describe('tokenize under the limits of completions', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  it('a text or a conversation too long for the context is refused before it is tokenized', async () => {
    const long = 'Once upon a time there was a little dog. '.repeat(24_000);
    const text = await postJson(server, '/tokenize', { model: MODEL, prompt: long });
    expectClientError(text, 'context_length_exceeded', 'prompt');
    const messages = await postJson(server, '/tokenize', { model: MODEL, messages: [{ role: 'user', content: long }] });
    expectClientError(messages, 'context_length_exceeded', 'messages');
  });
});

describe('clients take turns', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ apiKeys: ['sk-flood', 'sk-other'] });
  });
  afterAll(() => server.close());

  /** Resolves with the order in which the requests answered, by name. */
  async function answerOrder(requests: [string, Promise<JsonResponse>][]): Promise<string[]> {
    const order: string[] = [];
    await Promise.all(requests.map(([name, sent]) => sent.then((response) => {
      expect(response.status).toBeLessThan(500);
      order.push(name);
    })));
    return order;
  }

  it("another client's fresh schema waits for at most one of a flooding client's slow schemas", async () => {
    const slow = (length: number) => JSON.stringify(chat({ max_tokens: 1, response_format: jsonSchema({ type: 'string', minLength: length, maxLength: length }) }));
    const flood: [string, Promise<JsonResponse>][] = Array.from({ length: 6 }, (_, i) => [`flood${i}`, postText(server, '/v1/chat/completions', slow(2000 + i), 'sk-flood')]);
    await sleep(100);
    const other: [string, Promise<JsonResponse>] = ['other', postText(server, '/v1/chat/completions', JSON.stringify(chat({ max_tokens: 1, response_format: jsonSchema({ type: 'object', properties: { z: { type: 'integer' } } }) })), 'sk-other')];
    const order = await answerOrder([...flood, other]);
    expect(order.indexOf('other')).toBeLessThan(3);
  }, 60_000);

  it("another client's short prompt does not wait for a flooding client's queue of long ones", async () => {
    // Each prompt passes the early length check and is refused once tokenized: a task of its own in the preprocessing worker.
    const long = 'Once upon a time there was a little dog. '.repeat(350).slice(0, 14_335);
    const flood: [string, Promise<JsonResponse>][] = Array.from({ length: 40 }, (_, i) => [
      `flood${i}`,
      postText(server, '/v1/completions', JSON.stringify({ model: MODEL, prompt: `${i} ${long}`, max_tokens: 1 }), 'sk-flood'),
    ]);
    await sleep(30);
    const other: [string, Promise<JsonResponse>] = ['other', postText(server, '/v1/completions', JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: 1 }), 'sk-other')];
    const order = await answerOrder([...flood, other]);
    // In one queue it would come after the flood's 40 minus the few done before it arrived.
    expect(order.indexOf('other')).toBeLessThan(20);
  }, 60_000);
});

describe('the prefix cache is partitioned', () => {
  const prompt = 'Once upon a time, in a small town by the sea, there lived a girl who loved to read. Every day she went to the library to find a new book.';
  const cached = (response: JsonResponse) => response.body.usage.prompt_tokens_details.cached_tokens as number;

  it('by API key: one key never learns from cached_tokens what another sent', async () => {
    const server = await startTestServer({ apiKeys: ['sk-a', 'sk-b'] });
    try {
      const send = (key: string) => postText(server, '/v1/completions', JSON.stringify({ model: MODEL, prompt, max_tokens: 1 }), key);
      expect(cached(await send('sk-a'))).toBe(0);
      expect(cached(await send('sk-b'))).toBe(0);
      expect(cached(await send('sk-a'))).toBeGreaterThan(0);
      expect(cached(await send('sk-b'))).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });

  it('by a header the operator names, instead of the key', async () => {
    const server = await startTestServer({ prefixCachePartitionHeader: 'x-tenant' });
    try {
      const send = (tenant: string) => request(server, 'POST', '/v1/completions', { model: MODEL, prompt, max_tokens: 1 }, { 'x-tenant': tenant });
      expect(cached(await send('one'))).toBe(0);
      expect(cached(await send('two'))).toBe(0);
      expect(cached(await send('one'))).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });

  it('shared on a server without keys', async () => {
    const server = await startTestServer();
    try {
      const send = () => postJson(server, '/v1/completions', { model: MODEL, prompt, max_tokens: 1 });
      expect(cached(await send())).toBe(0);
      expect(cached(await send())).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });
});

describe('tools and template variables', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startTestServer({ model: fixture('models/tiny-llama-tools') });
  });
  afterAll(() => server.close());
  const toolsChat = (fields: Record<string, unknown>) => ({ model: 'tiny-llama-tools', messages: [{ role: 'user', content: 'What is the weather?' }], ...fields });
  const weather = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } };

  it('a required call cut off by max_tokens: no markup as content, finish_reason "length", streamed or not', async () => {
    for (const max_tokens of [1, 2, 3, 5, 8]) {
      const body = toolsChat({ tools: [weather], tool_choice: 'required', max_tokens, temperature: 0 });
      const plain = await postJson(server, '/v1/chat/completions', body);
      expect(plain.status).toBe(200);
      const [choice] = plain.body.choices;
      expect(choice.finish_reason).toBe('length');
      expect(choice.message.content).toBeNull();
      expect(choice.message.tool_calls).toBeUndefined();
      const streamed = await request(server, 'POST', '/v1/chat/completions', { ...body, stream: true });
      const contents = sseEvents(streamed.body as string)
        .filter((event): event is { choices: { delta: { content?: string } }[] } => typeof event === 'object')
        .map((event) => event.choices[0]?.delta.content ?? '');
      expect(contents.join('')).toBe('');
    }
  });

  it("chat_template_kwargs cannot stand in for the template's own variables (tools, messages…)", async () => {
    for (const name of ['tools', 'messages', 'add_generation_prompt', 'bos_token']) {
      const response = await postJson(server, '/v1/chat/completions', toolsChat({ max_tokens: 1, chat_template_kwargs: { [name]: [weather] } }));
      expectClientError(response, 'invalid_value', `chat_template_kwargs.${name}`);
      const tokenize = await postJson(server, '/tokenize', { model: 'tiny-llama-tools', messages: [{ role: 'user', content: 'Hi' }], chat_template_kwargs: { [name]: [weather] } });
      expectClientError(tokenize, 'invalid_value', `chat_template_kwargs.${name}`);
    }
  });

  it('tools: [] is refused, as OpenAI refuses it', async () => {
    expectClientError(await postJson(server, '/v1/chat/completions', toolsChat({ tools: [] })), 'empty_array', 'tools');
  });

  it('seeds a JSON number cannot hold exactly are refused; the largest exact ones are taken', async () => {
    for (const seed of ['9223372036854775808', '-9223372036854775809', '9007199254740993']) {
      const response = await postText(server, '/v1/chat/completions', `{"model":"tiny-llama-tools","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"seed":${seed}}`);
      expectClientError(response, 'invalid_value', 'seed');
    }
    for (const seed of [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER]) {
      expect((await postJson(server, '/v1/chat/completions', toolsChat({ max_tokens: 1, seed }))).status).toBe(200);
    }
  });
});

describe('idle connections', () => {
  it('cannot use up the connections: near --max-connections, idle and silent ones are closed to make room for /health', async () => {
    const server = await startTestServer({ maxConnections: 40 });
    const sockets: Socket[] = [];
    let closed = 0;
    try {
      const { port } = new URL(server.url);
      const open = () =>
        new Promise<Socket>((resolve, reject) => {
          const socket = connect(Number(port), '127.0.0.1', () => resolve(socket)).on('error', reject);
          socket.on('close', () => closed++).resume();
          sockets.push(socket);
        });
      // 30 keep-alive connections that made one request and stay idle, and 30 that never send a byte.
      for (let i = 0; i < 30; i++) {
        const socket = await open();
        const answered = new Promise((resolve) => socket.once('data', resolve));
        socket.write('GET /health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
        await answered;
      }
      for (let i = 0; i < 30; i++) await open().catch(() => undefined);
      await sleep(100);
      const health = await request(server, 'GET', '/health');
      expect(health.status).toBe(200);
      expect(closed).toBeGreaterThanOrEqual(20);
    } finally {
      for (const socket of sockets) socket.destroy();
      await server.close();
    }
  });
});

