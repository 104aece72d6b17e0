import fc from 'fast-check';
import { defaultConfig } from '../../src/config.js';
import { readModelConfig } from '../../src/model/config.js';
import { ModelLoadError } from '../../src/model/errors.js';
import type { ModelFiles } from '../../src/model/files.js';
import type { RunningServer } from '../../src/server.js';
import { responseErrors } from '../helpers/openapi.js';
import { rawJsonRequest } from '../helpers/raw-http.js';
import { request, startTestServer } from '../helpers/server.js';

/**
 * Property-based tests: thousands of random, hostile and almost-valid request bodies. Whatever a
 * client sends, the server answers with a 2xx completion or a 4xx in OpenAI's error shape, never
 * a 5xx, and keeps serving afterwards.
 *
 * Every property runs from a fixed seed, so a failure reproduces; set FUZZ_SEED to explore others.
 */

const MODEL = 'tinystories-gpt2';
const VOCAB_SIZE = 4096; // models/tinystories-gpt2/config.json
const CONTEXT_LENGTH = 512;
const BODY_LIMIT = defaultConfig().limits.maxBodyBytes;

const COMPLETIONS = '/v1/completions';
const CHAT = '/v1/chat/completions';
type Endpoint = typeof COMPLETIONS | typeof CHAT;
const ENDPOINTS: readonly Endpoint[] = [COMPLETIONS, CHAT];

const COMMON_FIELDS = [
  'model', 'n', 'stop', 'temperature', 'top_p', 'seed', 'stream', 'stream_options', 'max_tokens',
  'presence_penalty', 'frequency_penalty', 'logit_bias', 'user',
];
const FIELDS: Record<Endpoint, readonly string[]> = {
  [COMPLETIONS]: [...COMMON_FIELDS, 'prompt', 'best_of', 'echo', 'logprobs', 'suffix'],
  [CHAT]: [
    ...COMMON_FIELDS, 'messages', 'max_completion_tokens', 'logprobs', 'top_logprobs', 'response_format',
    'tools', 'tool_choice', 'parallel_tool_calls', 'functions', 'function_call', 'audio',
  ],
};

const ERROR_TYPES = ['invalid_request_error', 'authentication_error', 'rate_limit_error', 'server_error'];
const FINISH_REASONS = ['stop', 'length'];

const seed = (fixed: number) => (process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : fixed);

// ─── What every answer must look like ──────────────────────────────────────────────────────────

interface Answer {
  status: number;
  contentType: string;
  /** Parsed JSON, or the text when it is not JSON (a stream). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are checked field by field
  body: any;
}

class BadAnswer extends Error {
  override readonly name = 'BadAnswer';
}

function bad(answer: Answer, problem: string): never {
  const shown = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
  throw new BadAnswer(`${problem}\nHTTP ${answer.status} ${answer.contentType}\n${shown.slice(0, 600)}`);
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A 4xx in OpenAI's shape: `{ error: { message, type, param, code } }`, nothing else. */
function checkError(answer: Answer): void {
  const { body } = answer;
  if (!isObject(body) || Object.keys(body).join() !== 'error' || !isObject(body.error)) bad(answer, 'a 4xx without the { error: {...} } body');
  const { message, type, param, code } = body.error as Record<string, unknown>;
  if (typeof message !== 'string' || message.trim() === '') bad(answer, 'error.message is not a non-empty string');
  if (typeof type !== 'string' || !ERROR_TYPES.includes(type)) bad(answer, 'error.type is not one of OpenAI types');
  if (type === 'server_error') bad(answer, 'a 4xx typed server_error');
  if (param !== null && typeof param !== 'string') bad(answer, 'error.param is neither a string nor null');
  if (code !== null && typeof code !== 'string') bad(answer, 'error.code is neither a string nor null');
  if (!('param' in body.error) || !('code' in body.error)) bad(answer, 'error.param or error.code is missing');
}

function checkChoice(answer: Answer, endpoint: Endpoint, choice: unknown): void {
  if (!isObject(choice) || typeof choice.index !== 'number') bad(answer, 'a choice without an index');
  if (!FINISH_REASONS.includes(choice.finish_reason as string)) bad(answer, `finish_reason ${String(choice.finish_reason)}`);
  if (endpoint === COMPLETIONS && typeof choice.text !== 'string') bad(answer, 'a completion choice without text');
  if (endpoint === CHAT) {
    const message = choice.message as Record<string, unknown> | undefined;
    if (message?.role !== 'assistant' || typeof message.content !== 'string') bad(answer, 'a chat choice without an assistant message');
  }
}

function checkUsage(answer: Answer, usage: unknown): void {
  if (!isObject(usage)) bad(answer, 'no usage');
  const { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total } = usage as Record<string, number>;
  if (!Number.isInteger(prompt) || prompt < 1) bad(answer, 'usage.prompt_tokens is not a positive integer');
  if (!Number.isInteger(completion) || completion < 0) bad(answer, 'usage.completion_tokens is not a count');
  if (total !== prompt + completion) bad(answer, 'usage.total_tokens is not the sum');
}

/** A stream: `data:` events of chunks, ending with [DONE]; an error event is a failure. */
function checkStream(answer: Answer, endpoint: Endpoint): void {
  const events = String(answer.body).split('\n\n').filter((event) => event.trim() !== '');
  if (events.at(-1) !== 'data: [DONE]') bad(answer, 'a stream that does not end with data: [DONE]');
  const expectedObject = endpoint === COMPLETIONS ? 'text_completion' : 'chat.completion.chunk';
  for (const event of events.slice(0, -1)) {
    const chunk = JSON.parse(event.slice('data: '.length)) as Record<string, unknown>;
    if ('error' in chunk) bad(answer, 'a stream that ends with an error event');
    if (chunk.object !== expectedObject) bad(answer, `a stream chunk of object ${String(chunk.object)}`);
  }
}

/** The properties every answer holds, whatever was sent. */
function checkAnswer(endpoint: Endpoint, answer: Answer): void {
  const { status } = answer;
  if (status >= 500) bad(answer, 'a 5xx');
  if (status >= 400) return checkError(answer);
  if (status !== 200) bad(answer, `an unexpected status ${status}`);
  if (answer.contentType.startsWith('text/event-stream')) return checkStream(answer, endpoint);
  const { body } = answer;
  const expectedObject = endpoint === COMPLETIONS ? 'text_completion' : 'chat.completion';
  if (!isObject(body) || body.object !== expectedObject) bad(answer, `a 200 that is not a ${expectedObject}`);
  if (typeof body.id !== 'string' || body.model !== MODEL) bad(answer, 'a completion without its id or model');
  if (!Array.isArray(body.choices) || body.choices.length === 0) bad(answer, 'a completion without choices');
  for (const choice of body.choices) checkChoice(answer, endpoint, choice);
  checkUsage(answer, body.usage);
}

/** The root field an error's `param` points at: `messages[0].role` → `messages`. */
const paramRoot = (param: string) => param.split(/[.[]/)[0]!;

// ─── Sending ───────────────────────────────────────────────────────────────────────────────────

let server: RunningServer;

/** A JSON text body, through the helper that checks every answer against openapi.yaml. */
async function sendText(endpoint: Endpoint, text: string, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await request(server, 'POST', endpoint, text, { 'content-type': 'application/json', ...headers });
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', body: response.body };
}

const sendJson = (endpoint: Endpoint, value: unknown) => sendText(endpoint, JSON.stringify(value));

/** Raw bytes, with the answer checked against openapi.yaml here. */
async function sendBytes(endpoint: Endpoint, bytes: Uint8Array, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Answer> {
  const response = await fetch(`${server.url}${endpoint}`, { method: 'POST', body: bytes, headers });
  const text = await response.text();
  const contentType = response.headers.get('content-type') ?? '';
  const answer: Answer = { status: response.status, contentType, body: text };
  try {
    answer.body = JSON.parse(text);
  } catch {
    // a stream, or not JSON at all: checked as text
  }
  const violations = responseErrors(endpoint, response.status, contentType, text);
  if (violations.length > 0) bad(answer, `the answer does not match openapi.yaml:\n${violations.join('\n')}`);
  return answer;
}

// ─── Values ────────────────────────────────────────────────────────────────────────────────────

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((code) => String.fromCharCode(code));
const oneCodePoint = fc.string({ unit: 'binary', minLength: 1, maxLength: 1 });
const trickyChar = fc.constantFrom('\u0000', '\ufffd', '\ufeff', '\u2028', '\u202e', '\u{1f600}', '"', '\\', '\n', '\r', '\t', '{{', '{%', '<|endoftext|>');
/** Text of any code points, lone surrogates and template syntax included. */
const textUnit = fc.oneof({ weight: 6, arbitrary: oneCodePoint }, { weight: 1, arbitrary: loneSurrogate }, { weight: 1, arbitrary: trickyChar });
const text = (minLength: number, maxLength: number) => fc.string({ unit: textUnit, minLength, maxLength });

const nastyString = fc.oneof(
  text(0, 40),
  fc.constantFrom(
    '', ' ', 'null', 'true', 'NaN', 'Infinity', '-Infinity', '1e308', '-0', '0x10', '4', '1.5', MODEL, MODEL.toUpperCase(), `${MODEL}\u0000`,
    ` ${MODEL}`, '__proto__', 'constructor', 'toString', 'text', 'user', 'assistant', 'system', '\ud800', '\udfff\ud800', '{{ messages }}',
  ),
);

const extremeNumber = fc.constantFrom(
  0, -0, 1, -1, 0.5, -0.5, 2, 1.9999999, 2.0000001, -2.0000001, 4, 5, 6, 16, 17, 20, 21, 32, 33, 100, 101, 255, 256, 511, 512, 513,
  VOCAB_SIZE - 1, VOCAB_SIZE, 1e308, -1e308, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, -Number.MIN_VALUE, Number.EPSILON,
  2 ** 31 - 1, 2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53) - 2, 2 ** 64, 1e21, -1e21,
);
const anyNumber = fc.oneof(extremeNumber, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }));

/** A value of any JSON type, biased towards the edges. */
const nastyValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: anyNumber },
  { weight: 4, arbitrary: nastyString },
  { weight: 2, arbitrary: fc.constantFrom<unknown>(null, true, false, [], {}, [null], [[]], [{}], { '': null }, [0], [[0]], ['']) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 3, stringUnit: textUnit }) },
  { weight: 1, arbitrary: fc.array(anyNumber, { maxLength: 6 }) },
  { weight: 1, arbitrary: fc.array(nastyString, { maxLength: 6 }) },
  { weight: 1, arbitrary: fc.dictionary(nastyString, anyNumber, { maxKeys: 4 }) },
);

/** A token budget that is either small or refused before any work: keeps the fuzzing cheap. */
const cheapBudget: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 4 }) },
  fc.constantFrom<unknown>(0, -0, -1, 1.5, 4.000001, CONTEXT_LENGTH, CONTEXT_LENGTH + 1, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, Number.MIN_VALUE, '4', 'many', '', true, [], {}, [4], { value: 4 }),
  nastyString,
);

// ─── Valid requests of every shape ─────────────────────────────────────────────────────────────

const tokenId = fc.integer({ min: 0, max: VOCAB_SIZE - 1 });
const nullable = <T>(arbitrary: fc.Arbitrary<T>) => fc.option(arbitrary, { nil: null, freq: 6 });

const validSampling = {
  n: nullable(fc.integer({ min: 1, max: 3 })),
  stop: nullable(fc.oneof(text(1, 12), fc.array(text(1, 12), { maxLength: 4 }))),
  temperature: nullable(fc.double({ min: 0, max: 2, noNaN: true })),
  top_p: nullable(fc.double({ min: 0, max: 1, noNaN: true })),
  seed: nullable(fc.maxSafeInteger()),
  stream: nullable(fc.boolean()),
  stream_options: nullable(fc.record({ include_usage: nullable(fc.boolean()) }, { requiredKeys: [] })),
  presence_penalty: nullable(fc.double({ min: -2, max: 2, noNaN: true })),
  frequency_penalty: nullable(fc.double({ min: -2, max: 2, noNaN: true })),
  logit_bias: nullable(fc.dictionary(tokenId.map(String), fc.double({ min: -100, max: 100, noNaN: true }), { maxKeys: 4 })),
  user: nullable(text(0, 20)),
};

type Body = Record<string, unknown>;

const validCompletion: fc.Arbitrary<Body> = fc
  .record(
    {
      model: fc.constant(MODEL),
      prompt: fc.oneof(
        text(1, 40),
        fc.array(text(1, 20), { minLength: 1, maxLength: 3 }),
        fc.array(tokenId, { minLength: 1, maxLength: 8 }),
        fc.array(fc.array(tokenId, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 3 }),
      ),
      max_tokens: fc.integer({ min: 1, max: 4 }),
      ...validSampling,
      best_of: nullable(fc.integer({ min: 1, max: 3 })),
      echo: nullable(fc.boolean()),
      logprobs: nullable(fc.integer({ min: 0, max: 5 })),
      suffix: fc.constantFrom(null, ''),
    },
    { requiredKeys: ['model', 'prompt', 'max_tokens'] },
  )
  .map((body) => {
    const n = body.n ?? 1;
    if (body.best_of !== undefined && body.best_of !== null && (body.best_of < n || body.stream)) body.best_of = n;
    // stream_options is only allowed with stream: true.
    if (body.stream !== true) delete body.stream_options;
    return body;
  });

const textPart = fc.record({ type: fc.constant('text'), text: text(0, 20) });
const chatMessage = fc.record(
  {
    role: fc.constantFrom('system', 'developer', 'user', 'assistant'),
    content: fc.oneof(text(0, 30), fc.array(textPart, { maxLength: 3 })),
    name: text(0, 10),
  },
  { requiredKeys: ['role', 'content'] },
);

const validChat: fc.Arbitrary<Body> = fc
  .record(
    {
      model: fc.constant(MODEL),
      messages: fc.array(chatMessage, { minLength: 1, maxLength: 3 }),
      max_tokens: fc.integer({ min: 1, max: 4 }),
      max_completion_tokens: nullable(fc.integer({ min: 1, max: 4 })),
      ...validSampling,
      logprobs: nullable(fc.boolean()),
      top_logprobs: nullable(fc.integer({ min: 0, max: 20 })),
      response_format: nullable(fc.constant({ type: 'text' })),
      tools: fc.constant(null),
      tool_choice: fc.constant(null),
    },
    { requiredKeys: ['model', 'messages', 'max_tokens'] },
  )
  .map((body) => {
    if (!body.logprobs) delete body.top_logprobs;
    if (body.stream !== true) delete body.stream_options;
    return body;
  });

const validBody = (endpoint: Endpoint) => (endpoint === COMPLETIONS ? validCompletion : validChat);

/** How many sequences a valid body asks for and how many tokens each may take. */
function expectedWork(endpoint: Endpoint, body: Body): { choices: number; sequences: number; maxTokens: number } {
  const n = (body.n as number | null | undefined) ?? 1;
  const bestOf = (body.best_of as number | null | undefined) ?? n;
  const prompt = body.prompt;
  const prompts = endpoint === CHAT || typeof prompt === 'string' || typeof (prompt as unknown[])[0] === 'number' ? 1 : (prompt as unknown[]).length;
  const maxTokens = ((body.max_completion_tokens ?? body.max_tokens) as number);
  return { choices: prompts * n, sequences: prompts * bestOf, maxTokens };
}

// ─── Mutations: a valid body with one thing changed ────────────────────────────────────────────

type Path = (string | number)[];

/** Every place in a body that a mutation may touch (objects and arrays, four levels deep). */
function pathsOf(value: unknown, prefix: Path = []): Path[] {
  if (prefix.length >= 4 || typeof value !== 'object' || value === null) return [];
  const entries: [string | number, unknown][] = Array.isArray(value) ? value.map((item, index) => [index, item]) : Object.entries(value);
  return entries.flatMap(([key, child]) => [[...prefix, key], ...pathsOf(child, [...prefix, key])]);
}

function objectPathsOf(value: unknown, prefix: Path = []): Path[] {
  if (prefix.length >= 4 || typeof value !== 'object' || value === null) return [];
  const entries: [string | number, unknown][] = Array.isArray(value) ? value.map((item, index) => [index, item]) : Object.entries(value);
  const here = Array.isArray(value) ? [] : [prefix];
  return [...here, ...entries.flatMap(([key, child]) => objectPathsOf(child, [...prefix, key]))];
}

const isBudget = (path: Path) => path.length === 1 && (path[0] === 'max_tokens' || path[0] === 'max_completion_tokens');

type Mutation =
  | { kind: 'set'; path: Path; value: unknown }
  | { kind: 'delete'; path: Path }
  | { kind: 'add'; path: Path; key: string; value: unknown };

function applyMutation(body: Body, mutation: Mutation): Body {
  const copy = structuredClone(body);
  const path = mutation.path;
  let parent: Record<string | number, unknown> = copy;
  const steps = mutation.kind === 'add' ? path : path.slice(0, -1);
  for (const key of steps) parent = parent[key] as Record<string | number, unknown>;
  if (mutation.kind === 'add') {
    // `__proto__` would set the prototype rather than add a key: define it as an own property.
    Object.defineProperty(parent, mutation.key, { value: mutation.value, enumerable: true, writable: true, configurable: true });
    return copy;
  }
  const last = path.at(-1)!;
  if (mutation.kind === 'set') parent[last] = mutation.value;
  else if (Array.isArray(parent)) parent.splice(last as number, 1);
  else delete parent[last];
  return copy;
}

/** A valid body with one mutation, as the JSON text sent (so that a counterexample prints in full). */
function mutated(endpoint: Endpoint): fc.Arbitrary<{ text: string; mutation: Mutation }> {
  return validBody(endpoint).chain((body) => {
    const paths = pathsOf(body);
    const set = fc.constantFrom(...paths).chain((path) =>
      fc.record({ kind: fc.constant('set' as const), path: fc.constant(path), value: isBudget(path) ? cheapBudget : nastyValue }),
    );
    const deletable = paths.filter((path) => !isBudget(path));
    const remove = fc.constantFrom(...deletable).map((path): Mutation => ({ kind: 'delete', path }));
    const add = fc
      .record({
        path: fc.constantFrom(...objectPathsOf(body)),
        key: fc.oneof(nastyString, fc.constantFrom(...FIELDS[endpoint]), tokenId.map(String), fc.constantFrom('-1', '99999', '1e3', ' 1')),
        value: nastyValue,
      })
      .filter(({ path, key }) => !(path.length === 0 && (key === 'max_tokens' || key === 'max_completion_tokens')))
      .map((fields): Mutation => ({ kind: 'add', ...fields }));
    return fc
      .oneof({ weight: 5, arbitrary: set }, { weight: 2, arbitrary: remove }, { weight: 2, arbitrary: add })
      .map((mutation) => ({ text: JSON.stringify(applyMutation(body, mutation)), mutation }));
  });
}

// ─── Raw texts and bytes ───────────────────────────────────────────────────────────────────────

const baseText = (endpoint: Endpoint, extra = '') =>
  endpoint === COMPLETIONS
    ? `{"model":"${MODEL}","prompt":"Once upon a time","max_tokens":1${extra}}`
    : `{"model":"${MODEL}","messages":[{"role":"user","content":"Hi"}],"max_tokens":1${extra}}`;

const deepArray = (depth: number, closed: boolean) => '['.repeat(depth) + (closed ? ']'.repeat(depth) : '');
const deepObject = (depth: number, closed: boolean) => '{"a":'.repeat(depth) + '1' + (closed ? '}'.repeat(depth) : '');

/** JSON number literals that JSON.stringify cannot write: beyond double range, negative zero, long mantissas. */
const numberLiteral = fc.constantFrom(
  '-0', '-0.0', '0e0', '-0e-0', '1e999', '-1e999', '1e-999', '-1e-999', '1E+308', '1.7976931348623157e309', '4.9e-325',
  '9007199254740993', '-9007199254740993', '18446744073709551616', '123456789012345678901234567890', '0.30000000000000004',
  '4095.0', '4096e0', '4.0', '1.0000000000000001', '2.00000000000000001', '1e1', '5e-1', '0.0000000000000000000001',
);
/** Text that looks like a number but is not JSON. */
const notJsonNumber = fc.constantFrom('NaN', '-NaN', 'Infinity', '-Infinity', '+1', '01', '.5', '1.', '0x10', '1e', '1_000', '--1', 'undefined', '1n');

const numericFields: Record<Endpoint, string[]> = {
  [COMPLETIONS]: ['n', 'temperature', 'top_p', 'seed', 'max_tokens', 'presence_penalty', 'frequency_penalty', 'best_of', 'logprobs'],
  [CHAT]: ['n', 'temperature', 'top_p', 'seed', 'max_tokens', 'max_completion_tokens', 'presence_penalty', 'frequency_penalty', 'top_logprobs'],
};

/** A JSON-ish text body: broken, deep, oddly numbered, duplicated or escaped. */
function rawText(endpoint: Endpoint): fc.Arbitrary<string> {
  const base = baseText(endpoint);
  const depth = fc.integer({ min: 1, max: 12_000 });
  const field = fc.constantFrom(...FIELDS[endpoint], 'x', '');
  return fc.oneof(
    // truncated: any prefix, and the whole with a tail of garbage
    fc.nat({ max: base.length - 1 }).map((length) => base.slice(0, length)),
    fc.constantFrom(',', '}', ']', ' x', '\u0000', '{}', ' //c', '/* */').map((tail) => base + tail),
    // very deep nesting, as the body or as a field's value, closed or not
    fc.tuple(depth, fc.boolean(), fc.boolean()).map(([d, arrays, closed]) => (arrays ? deepArray(d, closed) : deepObject(d, closed))),
    fc.tuple(depth, fc.boolean(), field).map(([d, arrays, name]) => baseText(endpoint, `,"${name}":${arrays ? deepArray(d, true) : deepObject(d, true)}`)),
    // numbers: beyond range, negative zero, not JSON at all
    fc.tuple(fc.constantFrom(...numericFields[endpoint]), fc.oneof(numberLiteral, notJsonNumber)).map(([name, literal]) => baseText(endpoint, `,"${name}":${literal}`)),
    fc.array(fc.oneof(numberLiteral, notJsonNumber), { minLength: 1, maxLength: 4 }).map((ids) => baseText(endpoint, `,"prompt":[${ids.join(',')}]`)),
    // escapes: lone surrogates written as \u escapes, and broken escapes
    fc.constantFrom('\\ud800', '\\udfff', '\\udc00\\ud800', '\\ud83d\\ude00', '\\u0000', '\\u12', '\\x41', '\\', '\\uZZZZ', '\\/', '\\U0001F600', '\t', '\n').chain((escape) =>
      fc.constantFrom(...FIELDS[endpoint], 'content', 'role').map((name) =>
        name === 'content' || name === 'role'
          ? `{"model":"${MODEL}","max_tokens":1,"messages":[{"role":"${name === 'role' ? escape : 'user'}","content":"${name === 'content' ? escape : 'Hi'}"}],"prompt":"${escape}"}`
          : baseText(endpoint, `,"${name}":"${escape}"`),
      ),
    ),
    // duplicate keys, arrays where objects belong, objects where arrays belong
    fc.constantFrom(
      `{"model":"nope","model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}`,
      `{"model":"${MODEL}","model":"nope","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}`,
      `{"model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"max_tokens":0}`,
      `{"model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":0,"max_tokens":1}`,
      `{"model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi","role":"wizard"}],"max_tokens":1}`,
      `[{"model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}]`,
      `{"model":"${MODEL}","prompt":{"0":"Hi"},"messages":{"0":{"role":"user","content":"Hi"}},"max_tokens":1}`,
      `{"model":"${MODEL}","prompt":"Hi","messages":[["user","Hi"]],"max_tokens":1}`,
      `{"model":["${MODEL}"],"prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1}`,
      `{"model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"stream":true,"stream_options":[true]}`,
      `{"model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"logit_bias":[[5,1]]}`,
      `{"model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"__proto__":{"max_tokens":500}}`,
      `{"model":"${MODEL}","prompt":"Hi","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"constructor":{"prototype":{"n":100}}}`,
      '\ufeff' + baseText(endpoint),
      ` \r\n\t${baseText(endpoint)} \r\n\t`,
      baseText(endpoint, ',"user":"\u2028\u2029"'),
    ),
  );
}

const badUtf8 = fc.constantFrom<number[]>(
  [0xff], [0xfe], [0x80], [0xbf], [0xc0, 0x80], [0xc1, 0xbf], [0xc3], [0xc3, 0x28], [0xe0, 0x80, 0x80], [0xe2, 0x82],
  [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf], [0xf0, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80], [0xfc, 0x84, 0x80, 0x80, 0x80, 0x80], [0xef, 0xbb, 0xbf], [0x00],
);

/** Bytes that are not UTF-8: bad sequences inside a string value or anywhere, UTF-16, random bytes. */
function rawBytes(endpoint: Endpoint): fc.Arbitrary<Uint8Array> {
  const base = Buffer.from(baseText(endpoint));
  const insideString = base.indexOf(endpoint === COMPLETIONS ? 'Once' : 'Hi');
  const insert = (position: number, sequences: readonly number[][]) => Buffer.concat([base.subarray(0, position), Buffer.from(sequences.flat()), base.subarray(position)]);
  return fc.oneof(
    fc.array(badUtf8, { minLength: 1, maxLength: 4 }).map((sequences) => insert(insideString, sequences)),
    fc.tuple(fc.nat({ max: base.length }), fc.array(badUtf8, { minLength: 1, maxLength: 4 })).map(([position, sequences]) => insert(position, sequences)),
    fc.constantFrom(Buffer.from(baseText(endpoint), 'utf16le'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(baseText(endpoint), 'utf16le')]), Buffer.from(baseText(endpoint), 'latin1')),
    fc.uint8Array({ minLength: 1, maxLength: 300 }),
  );
}

const contentType = fc.oneof(
  fc.constantFrom(
    'application/json', 'application/json; charset=utf-8', 'application/json; charset=UTF-8', 'APPLICATION/JSON', 'application/json;',
    'application/json; charset=utf-16', 'application/json; charset=latin1', 'application/json; boundary=x', 'application/json ; q=1',
    'application/jsonx', 'application/json-patch+json', 'application/vnd.api+json', 'application/x-ndjson', 'text/json', 'text/plain',
    'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream',
    '*/*', 'application/*', 'json', '', ';', 'application/json, text/plain', 'application /json', 'application/json\t',
  ),
  fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
);

const essence = (type: string) => type.split(';')[0]!.trim().toLowerCase();

// ─── The properties ────────────────────────────────────────────────────────────────────────────

describe('fuzzed requests never break the server', () => {
  beforeAll(async () => {
    server = await startTestServer();
    expect(server.model.config.vocabSize).toBe(VOCAB_SIZE);
    expect(server.model.config.contextLength).toBe(CONTEXT_LENGTH);
  });
  afterAll(async () => {
    await server.close();
  });

  const endpoint = fc.constantFrom(...ENDPOINTS);

  it('any JSON value as the whole body → a 4xx in the error shape', async () => {
    await fc.assert(
      fc.asyncProperty(endpoint, fc.jsonValue({ maxDepth: 4, stringUnit: textUnit }), async (path, value) => {
        const answer = await sendJson(path, value);
        checkAnswer(path, answer);
        expect(answer.status).toBeGreaterThanOrEqual(400);
      }),
      { seed: seed(1001), numRuns: 600 },
    );
  });

  it('every known field set to a value of any type → never a 5xx, and a 400 names a known field', async () => {
    const wild = (path: Endpoint) =>
      fc.record(
        {
          ...Object.fromEntries(FIELDS[path].map((name) => [name, nastyValue])),
          // Often right, so that validation gets past the model and reaches the other fields.
          model: fc.oneof(fc.constant(MODEL), nastyValue),
          prompt: fc.oneof(validCompletion.map((body) => body.prompt), nastyValue),
          messages: fc.oneof(validChat.map((body) => body.messages), nastyValue),
          max_tokens: cheapBudget,
          max_completion_tokens: cheapBudget,
        },
        { requiredKeys: ['max_tokens'] },
      );
    await fc.assert(
      fc.asyncProperty(endpoint.chain((path) => fc.tuple(fc.constant(path), wild(path))), async ([path, body]) => {
        const answer = await sendJson(path, body);
        checkAnswer(path, answer);
        if (answer.status === 400 && answer.body.error.param !== null) expect(FIELDS[path]).toContain(paramRoot(answer.body.error.param));
      }),
      { seed: seed(1002), numRuns: 1200 },
    );
  });

  it.each(ENDPOINTS)('valid requests of every shape on %s → 200 with the choices asked for', async (path) => {
    await fc.assert(
      fc.asyncProperty(validBody(path), async (body) => {
        const answer = await sendJson(path, body);
        checkAnswer(path, answer);
        expect(answer.status).toBe(200);
        if (answer.contentType.startsWith('text/event-stream')) return;
        const work = expectedWork(path, body);
        expect(answer.body.choices.map((choice: { index: number }) => choice.index)).toEqual(Array.from({ length: work.choices }, (_, i) => i));
        expect(answer.body.usage.completion_tokens).toBeLessThanOrEqual(work.sequences * work.maxTokens);
      }),
      { seed: seed(path === COMPLETIONS ? 1003 : 1004), numRuns: 100 },
    );
  });

  it.each(ENDPOINTS)('valid requests with one field changed, removed or added on %s → never a 5xx, and a 400 names a known field', async (path) => {
    await fc.assert(
      fc.asyncProperty(mutated(path), async ({ text: body }) => {
        const answer = await sendText(path, body);
        checkAnswer(path, answer);
        if (answer.status === 400 && answer.body.error.param !== null) expect(FIELDS[path]).toContain(paramRoot(answer.body.error.param));
      }),
      { seed: seed(path === COMPLETIONS ? 1005 : 1006), numRuns: 200 },
    );
  });

  const anyId = fc.oneof({ weight: 3, arbitrary: tokenId }, fc.integer({ min: -(2 ** 31), max: 2 ** 31 }), extremeNumber);
  const inVocabulary = (id: number) => Number.isSafeInteger(id) && id >= 0 && id < VOCAB_SIZE;

  it('prompts of token ids → 200 when every id is in the vocabulary, else a 400 naming the prompt', async () => {
    const ids = fc.array(anyId, { minLength: 1, maxLength: 6 });
    await fc.assert(
      fc.asyncProperty(fc.oneof(ids, fc.array(ids, { minLength: 1, maxLength: 3 })), async (prompt) => {
        const answer = await sendJson(COMPLETIONS, { model: MODEL, prompt, max_tokens: 1 });
        checkAnswer(COMPLETIONS, answer);
        if ((prompt as unknown[]).flat().every((id) => inVocabulary(id as number))) {
          expect(answer.status).toBe(200);
        } else {
          expect(answer.status).toBe(400);
          expect(paramRoot(answer.body.error.param)).toBe('prompt');
        }
      }),
      { seed: seed(1010), numRuns: 250 },
    );
  });

  it('logit_bias → 200 when every key is a token id and every bias is within ±100, else a 400 naming logit_bias', async () => {
    const key = fc.oneof(anyId.map(String), fc.constantFrom('', ' 1', '1 ', '+1', '01', '1.0', '1e3', '0x10', '-0', `${VOCAB_SIZE}0`, '9'.repeat(400)));
    const bias = fc.oneof(fc.double({ min: -100, max: 100, noNaN: true }), extremeNumber);
    await fc.assert(
      fc.asyncProperty(endpoint, fc.dictionary(key, bias, { minKeys: 1, maxKeys: 4 }), async (path, logitBias) => {
        const answer = await sendJson(path, { ...(JSON.parse(baseText(path)) as Body), logit_bias: logitBias });
        checkAnswer(path, answer);
        const valid = Object.entries(logitBias).every(([id, value]) => /^(0|[1-9]\d*)$/.test(id) && Number(id) < VOCAB_SIZE && Math.abs(value) <= 100);
        if (valid) {
          expect(answer.status).toBe(200);
        } else {
          expect(answer.status).toBe(400);
          expect(paramRoot(answer.body.error.param)).toBe('logit_bias');
        }
      }),
      { seed: seed(1011), numRuns: 250 },
    );
  });

  it('a body that is not a JSON object → 400 invalid_type, not a missing parameter', async () => {
    await fc.assert(
      fc.asyncProperty(endpoint, fc.oneof(fc.constant(null), fc.jsonValue({ maxDepth: 2 }).filter((value) => typeof value !== 'object' || Array.isArray(value))), async (path, value) => {
        const answer = await sendJson(path, value);
        checkAnswer(path, answer);
        expect(answer.status).toBe(400);
        expect(answer.body.error).toMatchObject({ param: null, code: 'invalid_type' });
      }),
      { seed: seed(1020), numRuns: 100 },
    );
  });

  // Fields by the JSON type they take; a value of another type is named as such.
  const INTEGER_FIELDS: Record<Endpoint, string[]> = {
    [COMPLETIONS]: ['max_tokens', 'n', 'seed', 'best_of', 'logprobs'],
    [CHAT]: ['max_tokens', 'n', 'seed', 'max_completion_tokens', 'top_logprobs'],
  };
  const NUMBER_FIELDS = ['temperature', 'top_p', 'presence_penalty', 'frequency_penalty'];
  const STRING_FIELDS = ['model', 'user'];
  const notA = (kind: 'integer' | 'number' | 'string'): fc.Arbitrary<string> =>
    fc.oneof(
      fc.constantFrom('true', 'false', '[]', '[1]', '{}', '{"a":1}'),
      ...(kind === 'string' ? [fc.constantFrom('0', '123', '1.5', '-1')] : [fc.constantFrom('"5"', '"x"', '1e309', '-1e309')]),
      ...(kind === 'integer' ? [fc.double({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 }).filter((x) => !Number.isInteger(x)).map(String)] : []),
    );

  it('a field of the wrong type → 400 invalid_type naming the field', async () => {
    const wrongType = endpoint.chain((path) =>
      fc.oneof(
        ...INTEGER_FIELDS[path].map((field) => fc.tuple(fc.constant(path), fc.constant(field), notA('integer'))),
        ...NUMBER_FIELDS.map((field) => fc.tuple(fc.constant(path), fc.constant(field), notA('number'))),
        ...STRING_FIELDS.map((field) => fc.tuple(fc.constant(path), fc.constant(field), notA('string'))),
        fc.tuple(fc.constant(path), fc.constant('logit_bias'), fc.constantFrom('{"5":"x"}', '{"5":true}', '{"5":[1]}', '{"5":1e309}').map(String)),
      ),
    );
    await fc.assert(
      fc.asyncProperty(wrongType, async ([path, field, value]) => {
        // A later duplicate key wins, as in JSON.parse.
        const answer = await sendText(path, baseText(path, `,"${field}":${value}`));
        checkAnswer(path, answer);
        expect(answer.status).toBe(400);
        expect(answer.body.error.code).toBe('invalid_type');
        expect(paramRoot(answer.body.error.param)).toBe(field);
      }),
      { seed: seed(1021), numRuns: 300 },
    );
  });

  it('seed takes every integer a JSON number holds exactly (±(2^53 − 1)), and nothing beyond, where two seeds would be one', async () => {
    for (const value of ['9007199254740991', '-9007199254740991', '0', '-1']) {
      expect((await sendText(COMPLETIONS, baseText(COMPLETIONS, `,"seed":${value}`))).status).toBe(200);
    }
    for (const value of ['9007199254740993', '9223372036854775807', '9223372036854775808', '-9223372036854775809', '18446744073709551616', '-1e20']) {
      const answer = await sendText(COMPLETIONS, baseText(COMPLETIONS, `,"seed":${value}`));
      expect(answer.status).toBe(400);
      expect(answer.body.error.param).toBe('seed');
    }
  });

  it('logit_bias keys that spell one token id several ways ("7", "07", "007") → 400', async () => {
    const answer = await sendText(COMPLETIONS, baseText(COMPLETIONS, ',"logit_bias":{"7":1,"07":1,"007":1}'));
    expect(answer.status).toBe(400);
    expect(paramRoot(answer.body.error.param)).toBe('logit_bias');
  });

  it('truncated, deep, duplicated, oddly numbered and oddly escaped JSON texts → never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(endpoint.chain((path) => fc.tuple(fc.constant(path), rawText(path))), async ([path, body]) => {
        checkAnswer(path, await sendText(path, body));
      }),
      { seed: seed(1007), numRuns: 500 },
    );
  });

  it('deeply nested values in every free-form field (kwargs, tool arguments, schemas, metadata) → never a 5xx, a 400 past the limit', async () => {
    const user = '{"role":"user","content":"Hi"}';
    const places: ((deep: string) => [path: string, body: string])[] = [
      (deep) => [CHAT, baseText(CHAT, `,"chat_template_kwargs":{"k":${deep}}`)],
      (deep) => [CHAT, `{"model":"${MODEL}","max_tokens":1,"messages":[${user},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":${JSON.stringify(deep)}}}]},{"role":"tool","tool_call_id":"c","content":"ok"}]}`],
      (deep) => [CHAT, baseText(CHAT, `,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object","properties":{"p":${deep}}}}}`)],
      (deep) => [CHAT, baseText(CHAT, `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"p":${deep}}}}}]`)],
      (deep) => ['/v1/responses', `{"model":"${MODEL}","input":"Hi","max_output_tokens":1,"metadata":{"m":${deep}}}`],
      (deep) => ['/v1/responses', `{"model":"${MODEL}","max_output_tokens":1,"input":[{"type":"function_call","call_id":"c","name":"f","arguments":${JSON.stringify(deep)}},{"type":"function_call_output","call_id":"c","output":"ok"}]}`],
      (deep) => ['/tokenize', `{"model":"${MODEL}","messages":[${user}],"chat_template_kwargs":{"k":${deep}}}`],
    ];
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: places.length - 1 }), fc.integer({ min: 1, max: 120_000 }), fc.boolean(), async (place, depth, arrays) => {
        const [path, body] = places[place]!(arrays ? deepArray(depth, true) : deepObject(depth, true));
        const answer = await request(server, 'POST', path, body, { 'content-type': 'application/json' });
        if (answer.status >= 500) throw new Error(`${path} at depth ${depth}: ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`);
        // Every place is at most six levels into the body; past 64 in all, the depth limit answers.
        if (depth > 64) expect([answer.status, answer.body.error?.code]).toEqual([400, 'limit_exceeded']);
      }),
      { seed: seed(1010), numRuns: 120 },
    );
    expect((await request(server, 'GET', '/health')).status).toBe(200);
  });

  it('duplicate keys: the last one wins, as in JSON.parse', async () => {
    for (const path of ENDPOINTS) {
      const last = await sendText(path, baseText(path, `,"model":"nope","model":"${MODEL}","max_tokens":0,"max_tokens":1`));
      expect(last.status).toBe(200);
      const first = await sendText(path, baseText(path, `,"model":"${MODEL}","model":"nope"`));
      expect(first.status).toBe(404);
      expect(first.body.error.param).toBe('model');
    }
  });

  it('bodies that are not UTF-8 → never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(endpoint.chain((path) => fc.tuple(fc.constant(path), rawBytes(path))), async ([path, bytes]) => {
        checkAnswer(path, await sendBytes(path, bytes));
      }),
      { seed: seed(1008), numRuns: 300 },
    );
  });

  it('any content type → a 200 only for application/json, else a 4xx in the error shape', async () => {
    await fc.assert(
      fc.asyncProperty(endpoint, contentType, async (path, type) => {
        const headers: Record<string, string> = type === '' ? {} : { 'content-type': type };
        const answer = await sendBytes(path, Buffer.from(baseText(path)), headers);
        checkAnswer(path, answer);
        if (answer.status === 200) expect(essence(type)).toBe('application/json');
        if (essence(type) === 'text/plain') expect(answer.status).toBe(415);
      }),
      { seed: seed(1009), numRuns: 300 },
    );
  });

  describe('bodies near and above the body limit', () => {
    /** A valid body padded with an ignored field to exactly `size` bytes. */
    function paddedTo(path: Endpoint, size: number): string {
      const head = baseText(path).slice(0, -1) + ',"padding":"';
      const tail = '"}';
      return head + 'x'.repeat(size - head.length - tail.length) + tail;
    }

    it.each(ENDPOINTS)('%s: exactly the limit → 200; one byte more, or far more → 413 request_too_large', async (path) => {
      const atLimit = await sendText(path, paddedTo(path, BODY_LIMIT));
      checkAnswer(path, atLimit);
      expect(atLimit.status).toBe(200);
      for (const size of [BODY_LIMIT + 1, BODY_LIMIT + 4096, 4 * BODY_LIMIT]) {
        const over = await sendText(path, paddedTo(path, size));
        checkAnswer(path, over);
        expect(over.status).toBe(413);
        expect(over.body.error.code).toBe('request_too_large');
      }
    });

    it('a body over the limit sent chunked, without a content-length → 413', async () => {
      const chunk = Buffer.from('x'.repeat(64 * 1024));
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent === 0) controller.enqueue(Buffer.from(baseText(COMPLETIONS).slice(0, -1) + ',"padding":"'));
          controller.enqueue(chunk);
          sent += chunk.length;
          if (sent > 2 * BODY_LIMIT) {
            controller.enqueue(Buffer.from('"}'));
            controller.close();
          }
        },
      });
      const init = { method: 'POST', headers: { 'content-type': 'application/json' }, body, duplex: 'half' } as RequestInit;
      const response = await fetch(`${server.url}${COMPLETIONS}`, init);
      const answer: Answer = { status: response.status, contentType: response.headers.get('content-type') ?? '', body: await response.json() };
      checkAnswer(COMPLETIONS, answer);
      expect(answer.status).toBe(413);
    });

    const room = BODY_LIMIT - 200;
    const hi = [{ role: 'user', content: 'Hi' }];
    it.each([
      { what: 'a prompt of one long word', path: COMPLETIONS, body: { model: MODEL, max_tokens: 1, prompt: 'x'.repeat(room) }, status: 400, param: 'prompt' },
      { what: 'a prompt of many token ids', path: COMPLETIONS, body: { model: MODEL, max_tokens: 1, prompt: Array<number>(Math.floor(room / 5)).fill(1234) }, status: 400, param: 'prompt' },
      { what: 'many prompts of token ids', path: COMPLETIONS, body: { model: MODEL, max_tokens: 1, prompt: Array.from({ length: Math.floor(room / 4) }, () => [7]) }, status: 400, param: 'prompt' },
      { what: 'a message of many words', path: CHAT, body: { model: MODEL, max_tokens: 1, messages: [{ role: 'user', content: 'hello world '.repeat(room / 12) }] }, status: 400, param: 'messages' },
      { what: 'many messages', path: CHAT, body: { model: MODEL, max_tokens: 1, messages: Array.from({ length: Math.floor(room / 31) }, () => hi[0]) }, status: 400, param: 'messages' },
      { what: 'a huge model name', path: COMPLETIONS, body: { model: 'm'.repeat(room), max_tokens: 1, prompt: 'Hi' }, status: 404, param: 'model' },
      { what: 'a huge stop string', path: CHAT, body: { model: MODEL, max_tokens: 1, stop: 's'.repeat(room), messages: hi }, status: 400, param: 'stop' },
      { what: 'a huge user', path: CHAT, body: { model: MODEL, max_tokens: 1, user: 'u'.repeat(room), messages: hi }, status: 200, param: null },
    ] as const)('$what just under the limit → $status', async ({ path, body, status, param }) => {
      const text = JSON.stringify(body);
      expect(text.length).toBeLessThanOrEqual(BODY_LIMIT);
      expect(text.length).toBeGreaterThan(BODY_LIMIT - 1000);
      const answer = await sendText(path, text);
      checkAnswer(path, answer);
      expect(answer.status).toBe(status);
      if (param !== null) expect(answer.body.error.param).toBe(param);
    });
  });

  describe('temperatures so small that their inverse overflows (below about 5.6e-309)', () => {
    const tiny = [5e-324, 1e-310];
    const greedyText = (path: Endpoint, answer: Answer): string =>
      path === COMPLETIONS ? answer.body.choices[0].text : answer.body.choices[0].message.content;
    const withTemperature = (path: Endpoint, temperature: number) => ({
      ...(JSON.parse(baseText(path)) as Body),
      max_tokens: 4,
      temperature,
      logprobs: path === COMPLETIONS ? 1 : true,
    });

    it.each(ENDPOINTS.flatMap((path) => tiny.map((temperature) => [path, temperature] as const)))(
      '%s, temperature %d → 200 with the greedy text, as at temperature 0',
      async (path, temperature) => {
        const greedy = await sendJson(path, withTemperature(path, 0));
        expect(greedy.status).toBe(200);
        const answer = await sendJson(path, withTemperature(path, temperature));
        checkAnswer(path, answer);
        expect(answer.status).toBe(200);
        expect(greedyText(path, answer)).toBe(greedyText(path, greedy));
      },
    );

    it('such a request does not fail the other requests decoding in the same batch', async () => {
      const other = await fetch(`${server.url}${COMPLETIONS}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, prompt: 'Once upon a time', max_tokens: 200, temperature: 0, logit_bias: { 0: -100 }, stream: true }),
      });
      const reader = other.body!.getReader();
      let streamed = Buffer.from((await reader.read()).value!).toString(); // the other request is decoding now
      const answer = await sendJson(CHAT, withTemperature(CHAT, 5e-324));
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) streamed += Buffer.from(chunk.value).toString();
      checkAnswer(COMPLETIONS, { status: other.status, contentType: other.headers.get('content-type') ?? '', body: streamed });
      checkAnswer(CHAT, answer);
    });
  });

  it('request targets with stray percent signs, and odd Expect and Host headers → an answer in the error shape with a request id, never a bare one', async () => {
    const host = new URL(server.url).host;
    const pathPiece = fc.constantFrom('v1', 'models', MODEL, '%', '%Z', '%ZZ', '%2', '%e0%a4', '%C3%28', '%00', '%2F', '..', '.', '', 'x');
    const target = fc.array(pathPiece, { minLength: 1, maxLength: 5 }).map((pieces) => `/${pieces.join('/')}`);
    const headers = fc.record(
      {
        host: fc.constantFrom(host, '', 'x', '[::1]', 'a'.repeat(300)),
        expect: fc.constantFrom('100-continue', '200-ok', '', 'x'.repeat(200), 'continue'),
      },
      { requiredKeys: [] },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('GET', 'POST'), target, headers, async (method, path, given) => {
        const answer = await rawJsonRequest(server.url, method, path, method === 'POST' ? { model: MODEL, prompt: 'Hi', max_tokens: 1 } : undefined, given as Record<string, string>);
        expect(answer.status).toBeGreaterThanOrEqual(200);
        if (answer.status < 400) return;
        expect(answer.status).toBeLessThan(500);
        const { error } = JSON.parse(answer.body) as { error: Record<string, unknown> };
        expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
        expect(typeof error.message === 'string' && typeof error.code === 'string' && ERROR_TYPES.includes(error.type as string)).toBe(true);
        expect(answer.headers['x-request-id']).toMatch(/\S/);
      }),
      { seed: seed(1030), numRuns: 200 },
    );
  });

  it('the server is healthy afterwards: /health, both endpoints, and no work left behind', async () => {
    const health = await request(server, 'GET', '/health');
    expect(health.status).toBe(200);
    for (const path of ENDPOINTS) {
      const answer = await sendText(path, baseText(path));
      checkAnswer(path, answer);
      expect(answer.status).toBe(200);
    }
    for (let i = 0; i < 50 && (server.engine.load > 0 || server.lifecycle.requestsInFlight > 0); i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(server.engine.load).toBe(0);
    expect(server.lifecycle.requestsInFlight).toBe(0);
  });
});

describe('fuzzed model configs never start a server on absurd numbers', () => {
  const base = { n_layer: 2, n_head: 4, n_embd: 32, vocab_size: 100, n_positions: 64, eos_token_id: 5 };
  const anyJson = fc.oneof(fc.integer({ min: -5, max: 1e6 }), fc.double(), extremeNumber, fc.jsonValue({ maxDepth: 1 }), fc.constant(null));
  const files = (config: Record<string, unknown>, generationConfig: Record<string, unknown> = {}): ModelFiles => ({
    dir: '/m',
    modelPath: '/m/model.onnx',
    config,
    generationConfig,
    tokenizerJson: {},
    tokenizerConfig: {},
    notes: [],
  });

  it('config.json sizes: positive whole numbers are taken, anything else is a ModelLoadError naming the field', () => {
    fc.assert(
      fc.property(fc.constantFrom('n_layer', 'n_head', 'n_embd', 'vocab_size', 'n_positions', 'eos_token_id'), anyJson, (field, value) => {
        let config;
        try {
          config = readModelConfig(files({ ...base, [field]: value }));
        } catch (err) {
          expect(err).toBeInstanceOf(ModelLoadError);
          expect((err as Error).message).toMatch(/config\.json|hidden size/);
          return;
        }
        for (const size of [config.numLayers, config.numKvHeads, config.headDim, config.vocabSize, config.contextLength]) {
          expect(Number.isSafeInteger(size) && size > 0).toBe(true);
        }
        for (const id of config.eosTokenIds) expect(id >= 0 && id < config.vocabSize).toBe(true);
      }),
      { seed: seed(1040), numRuns: 2000 },
    );
  });
});
