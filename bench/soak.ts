/**
 * ortserve's soak test: the real server as a child process under mixed load for a set time, watching
 * its memory. The load: a number of concurrent clients, each sending one request after another, a
 * random mix of
 *  - POST /v1/completions and POST /v1/chat/completions, streaming and not;
 *  - short prompts (a sentence or two) and long ones (a few hundred tokens, below the context);
 *  - n of 1 (mostly), 2 or 3; max_tokens from 1 to 160 (cut to the room the context leaves) or none;
 *    greedy or sampled (temperature, top_p, with or without a seed);
 *  - streams the client aborts after a random number of chunks, and non-streaming requests it
 *    aborts after a random number of milliseconds.
 * With --hostile, one more client sends what a hostile caller sends (see hostile-client.ts) and a
 * probe asks GET /health every 200 ms; their answers are reported apart, and a 5xx to either fails.
 * It samples the server's RSS (/proc/<pid>/status) and, when GET /metrics answers, its heap, every few
 * seconds; at the end it checks the server still answers (/health and one completion), prints a
 * summary, and writes the full report to bench/results/soak-<timestamp>.json.
 *
 *   npm run soak [-- --minutes 10] [--clients 8] [--model models/tinystories-gpt2] [--server-flags="--max-batch 8"]
 *                [--warmup-seconds 15] [--sample-seconds 5] [--seed 1] [--hostile]
 *
 * Exit status 1 when a 5xx was seen (an HTTP status, or an error event of type server_error inside a
 * stream), the server died, or the end check failed; 2 for bad arguments.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import { ROOT, STORY, percentile, sseData, startServer, stopServer, type ServerHandle } from './common.js';
import { hostileClient, probeHealth, type HealthLatencies, type HostileTally } from './hostile-client.js';

const BENCH = join(ROOT, 'bench');
const DEFAULT_MODEL = 'models/tinystories-gpt2';
const MiB = 1024 * 1024;
/** A request that takes longer than this is aborted and counted as an error ("timeout"). */
const REQUEST_TIMEOUT_MS = 120_000;
/** Tokens kept free for the chat template's role markers around the messages. */
const CHAT_TEMPLATE_MARGIN = 32;
/**
 * The verdict on memory: RSS has levelled off when its growth from the middle sample to the end sample
 * is below RSS_GROWTH_PCT % of the middle RSS or below RSS_GROWTH_MIB MiB (the larger of the two allowances).
 */
const RSS_GROWTH_PCT = 10;
const RSS_GROWTH_MIB = 50;

// ---------- arguments ----------

const USAGE =
  'usage: npm run soak [-- --minutes 10] [--clients 8] [--model DIR] [--server-flags="--max-batch 8 ..."] [--warmup-seconds 15] [--sample-seconds 5] [--seed 1] [--hostile]\n';

interface Options {
  minutes: number;
  clients: number;
  modelDir: string;
  serverFlags: string[];
  warmupSeconds: number;
  sampleSeconds: number;
  seed: number;
  hostile: boolean;
}

function parseOptions(): Options {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      clients: { type: 'string', default: '8' },
      model: { type: 'string', default: DEFAULT_MODEL },
      'server-flags': { type: 'string', default: '' },
      'warmup-seconds': { type: 'string', default: '15' },
      'sample-seconds': { type: 'string', default: '5' },
      seed: { type: 'string', default: '1' },
      hostile: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const number = (name: string, text: string | undefined, min: number, integer = false): number => {
    const value = Number(text);
    if (!Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, not ${text}`);
    return value;
  };
  const model = values.model ?? DEFAULT_MODEL;
  return {
    minutes: number('minutes', values.minutes, 0.05),
    clients: number('clients', values.clients, 1, true),
    modelDir: isAbsolute(model) ? model : resolve(process.cwd(), model),
    serverFlags: (values['server-flags'] ?? '').split(/\s+/).filter(Boolean),
    warmupSeconds: number('warmup-seconds', values['warmup-seconds'], 0),
    sampleSeconds: number('sample-seconds', values['sample-seconds'], 0.5),
    seed: number('seed', values.seed, 0, true),
    hostile: values.hostile === true,
  };
}

// ---------- prompts ----------

interface Prompt {
  text: string;
  tokens: number;
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

/**
 * Short prompts: one or two sentences of STORY. Long prompts: runs of consecutive sentences (wrapping
 * around) of 200 to 380 tokens, or less where the context is short, so that at least a quarter of the
 * context is left for the completion.
 */
function makePrompts(modelDir: string, contextLength: number): { short: Prompt[]; long: Prompt[]; encode: (text: string) => number; tokenOf: (text: string) => number | undefined } {
  const tokenizer = new Tokenizer(readJson(join(modelDir, 'tokenizer.json')), readJson(join(modelDir, 'tokenizer_config.json')));
  const encode = (text: string) => tokenizer.encode(text, { add_special_tokens: true }).ids.length;
  const short: Prompt[] = [];
  STORY.forEach((sentence, i) => {
    short.push({ text: sentence, tokens: encode(sentence) });
    if (i % 2 === 0 && i + 1 < STORY.length) {
      const two = `${sentence} ${STORY[i + 1]}`;
      short.push({ text: two, tokens: encode(two) });
    }
  });
  const most = Math.min(380, Math.floor(contextLength * 0.75) - CHAT_TEMPLATE_MARGIN);
  const least = Math.min(200, Math.floor(most * 0.6));
  const long: Prompt[] = [];
  const count = 24;
  for (let k = 0; k < count; k++) {
    const target = Math.round(least + ((most - least) * k) / (count - 1));
    const sentences: string[] = [];
    let prompt: Prompt = { text: '', tokens: 0 };
    for (let i = (k * 7) % STORY.length; prompt.tokens < target; i = (i + 1) % STORY.length) {
      const next = [...sentences, STORY[i]!].join(' ');
      const tokens = encode(next);
      if (tokens > most) break;
      sentences.push(STORY[i]!);
      prompt = { text: next, tokens };
    }
    if (prompt.tokens > 0) long.push(prompt);
  }
  const tokenOf = (text: string) => {
    const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
    return ids.length === 1 ? ids[0] : undefined;
  };
  return { short, long, encode, tokenOf };
}

// ---------- the load ----------

/** mulberry32: a small seeded generator, so that a seed gives the same mix of requests. */
function rngFrom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Endpoint = 'completions' | 'chat';
type Kind = `${Endpoint} ${'stream' | 'non-stream'}`;
const KINDS: Kind[] = ['completions stream', 'completions non-stream', 'chat stream', 'chat non-stream'];

interface Plan {
  endpoint: Endpoint;
  stream: boolean;
  long: boolean;
  n: number;
  body: Record<string, unknown>;
  /** Streams: abort after this many text chunks. */
  abortAfterChunks?: number;
  /** Non-streaming requests: abort after this many milliseconds. */
  abortAfterMs?: number;
}

const randInt = (rng: () => number, min: number, max: number) => min + Math.floor(rng() * (max - min + 1));
const pick = <T>(rng: () => number, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;

function makePlan(rng: () => number, prompts: ReturnType<typeof makePrompts>, modelId: string, contextLength: number): Plan {
  const endpoint: Endpoint = rng() < 0.5 ? 'completions' : 'chat';
  const stream = rng() < 0.5;
  const long = rng() < 0.3;
  const prompt = pick(rng, long ? prompts.long : prompts.short);
  const n = rng() < 0.2 ? randInt(rng, 2, 3) : 1;
  const body: Record<string, unknown> = { model: modelId, n };

  let promptTokens = prompt.tokens;
  if (endpoint === 'completions') body.prompt = prompt.text;
  else {
    const messages: { role: string; content: string }[] = [];
    if (rng() < 0.3) messages.push({ role: 'system', content: 'You tell short, happy stories for children.' });
    messages.push({ role: 'user', content: prompt.text });
    body.messages = messages;
    promptTokens = prompts.encode(messages.map((m) => m.content).join('\n')) + CHAT_TEMPLATE_MARGIN;
  }

  // max_tokens: a few, some tens, up to 160, or none (the server then uses the room the context leaves).
  const r = rng();
  let maxTokens = r < 0.2 ? randInt(rng, 1, 8) : r < 0.7 ? randInt(rng, 16, 64) : r < 0.95 ? randInt(rng, 65, 160) : undefined;
  if (maxTokens !== undefined) {
    maxTokens = Math.max(1, Math.min(maxTokens, contextLength - promptTokens));
    body[endpoint === 'chat' && rng() < 0.5 ? 'max_completion_tokens' : 'max_tokens'] = maxTokens;
  }

  if (n === 1 && rng() < 0.25) body.temperature = 0;
  else {
    body.temperature = Math.round((0.3 + rng()) * 100) / 100;
    if (rng() < 0.5) body.seed = randInt(rng, 0, 2 ** 31 - 1);
    if (rng() < 0.3) body.top_p = 0.9;
  }

  const plan: Plan = { endpoint, stream, long, n, body };
  if (stream) {
    body.stream = true;
    if (rng() < 0.7) body.stream_options = { include_usage: true };
    if (rng() < 0.15) plan.abortAfterChunks = randInt(rng, 1, 24);
  } else if (rng() < 0.1) plan.abortAfterMs = randInt(rng, 20, 800);
  return plan;
}

interface Outcome {
  kind: Kind;
  long: boolean;
  n: number;
  result: 'completed' | 'aborted' | 'error';
  /** "HTTP 429 queue_full", "stream error server_error/-", "network ECONNRESET", "timeout", … */
  error?: string;
  status?: number;
  message?: string;
  /** A 5xx status, or an error event of type server_error inside a stream. */
  serverError: boolean;
  /** usage.completion_tokens where the response carried it, else the text chunks received. */
  tokens: number;
  tokensFromUsage: boolean;
  abortPlanned: boolean;
  ms: number;
  finishedAt: number;
}

interface ErrorBody {
  error?: { message?: string; type?: string; code?: string | null };
}

interface StreamEvent extends ErrorBody {
  choices?: { index?: number; text?: string; delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: { completion_tokens?: number } | null;
}

interface FullResponse extends ErrorBody {
  choices?: { finish_reason?: string | null }[];
  usage?: { completion_tokens?: number };
}

function networkError(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; name?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.name ?? e.cause?.message;
  return `network ${cause ?? `${e.name}: ${e.message}`}`;
}

/** Headers of every POST: JSON, and the first --api-key of the server flags as a bearer token, if any. */
let postHeaders: Record<string, string> = { 'content-type': 'application/json' };

function apiKeyFrom(flags: readonly string[]): string | undefined {
  for (let i = 0; i < flags.length; i++) {
    if (flags[i] === '--api-key') return flags[i + 1];
    if (flags[i]!.startsWith('--api-key=')) return flags[i]!.slice('--api-key='.length);
  }
  return undefined;
}

/** Sends one request as planned and says how it ended. */
async function runRequest(url: string, plan: Plan): Promise<Outcome> {
  const kind: Kind = `${plan.endpoint} ${plan.stream ? 'stream' : 'non-stream'}`;
  const started = performance.now();
  const outcome: Outcome = {
    kind,
    long: plan.long,
    n: plan.n,
    result: 'completed',
    serverError: false,
    tokens: 0,
    tokensFromUsage: false,
    abortPlanned: plan.abortAfterChunks !== undefined || plan.abortAfterMs !== undefined,
    ms: 0,
    finishedAt: 0,
  };
  const controller = new AbortController();
  let abortedByClient = false;
  let timedOut = false;
  const timeout = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, REQUEST_TIMEOUT_MS);
  const abortTimer =
    plan.abortAfterMs === undefined
      ? undefined
      : setTimeout(() => {
          abortedByClient = true;
          controller.abort();
        }, plan.abortAfterMs);
  const fail = (error: string, message?: string, status?: number) => {
    outcome.result = 'error';
    outcome.error = error;
    outcome.message = message?.slice(0, 500);
    outcome.status = status;
  };
  try {
    const response = await fetch(`${url}/v1/${plan.endpoint === 'chat' ? 'chat/completions' : 'completions'}`, {
      method: 'POST',
      headers: postHeaders,
      body: JSON.stringify(plan.body),
      signal: controller.signal,
    });
    if (!response.ok) {
      const text = await response.text();
      let body: ErrorBody = {};
      try {
        body = JSON.parse(text) as ErrorBody;
      } catch {
        // not JSON: the text is the message
      }
      fail(`HTTP ${response.status} ${body.error?.code ?? '-'}`, body.error?.message ?? text, response.status);
      outcome.serverError = response.status >= 500;
    } else if (plan.stream) {
      let chunks = 0;
      let done = false;
      let usageTokens: number | undefined;
      let streamError: ErrorBody['error'];
      const finished = new Set<number>();
      for await (const { data } of sseData(response.body!)) {
        if (data === '[DONE]') {
          done = true;
          continue;
        }
        const event = JSON.parse(data) as StreamEvent;
        if (event.error) streamError = event.error;
        if (typeof event.usage?.completion_tokens === 'number') usageTokens = event.usage.completion_tokens;
        for (const choice of event.choices ?? []) {
          if (plan.endpoint === 'chat' ? choice.delta?.content : choice.text) chunks++;
          if (choice.finish_reason) finished.add(choice.index ?? 0);
        }
        if (plan.abortAfterChunks !== undefined && chunks >= plan.abortAfterChunks && !done) {
          abortedByClient = true;
          controller.abort();
          break;
        }
      }
      outcome.tokens = usageTokens ?? chunks;
      outcome.tokensFromUsage = usageTokens !== undefined;
      if (abortedByClient) outcome.result = 'aborted';
      else if (streamError) {
        fail(`stream error ${streamError.type ?? '-'}/${streamError.code ?? '-'}`, streamError.message);
        outcome.serverError = streamError.type === 'server_error';
      } else if (!done) fail('stream ended without [DONE]');
      else if (finished.size !== plan.n) fail('stream: finish_reason missing', `${finished.size} of ${plan.n} choices finished`);
    } else {
      const body = (await response.json()) as FullResponse;
      if (typeof body.usage?.completion_tokens === 'number') {
        outcome.tokens = body.usage.completion_tokens;
        outcome.tokensFromUsage = true;
      }
      const choices = body.choices ?? [];
      if (choices.length !== plan.n || choices.some((c) => !c.finish_reason)) fail('response: choices missing', `${choices.length} choices for n ${plan.n}`);
    }
  } catch (err) {
    if (abortedByClient) outcome.result = 'aborted';
    else if (timedOut) fail('timeout', `no complete response within ${REQUEST_TIMEOUT_MS / 1000} s`);
    else if (err instanceof SyntaxError) fail('bad JSON', err.message);
    else fail(networkError(err), (err as Error).message);
  } finally {
    clearTimeout(timeout);
    clearTimeout(abortTimer);
  }
  outcome.finishedAt = performance.now();
  outcome.ms = outcome.finishedAt - started;
  return outcome;
}

// ---------- tallies ----------

interface Tally {
  sent: number;
  completed: number;
  aborted: number;
  errors: number;
  tokens: number;
}

const emptyTally = (): Tally => ({ sent: 0, completed: 0, aborted: 0, errors: 0, tokens: 0 });

function add(tally: Tally, o: Outcome): void {
  tally.sent++;
  tally[o.result === 'completed' ? 'completed' : o.result === 'aborted' ? 'aborted' : 'errors']++;
  tally.tokens += o.tokens;
}

class PhaseStats {
  readonly byKind = Object.fromEntries(KINDS.map((k) => [k, emptyTally()])) as Record<Kind, Tally>;
  readonly shortPrompts = emptyTally();
  readonly longPrompts = emptyTally();
  readonly nAbove1 = emptyTally();
  readonly total = emptyTally();
  readonly errors: Record<string, number> = {};
  /** Aborts planned, and how many of those requests finished before the abort fired (counted completed). */
  abortsPlanned = 0;
  abortsTooLate = 0;
  tokensFromUsage = 0;
  tokensFromChunks = 0;
  private readonly completedMs = Object.fromEntries(KINDS.map((k) => [k, [] as number[]])) as Record<Kind, number[]>;

  record(o: Outcome): void {
    add(this.byKind[o.kind], o);
    add(o.long ? this.longPrompts : this.shortPrompts, o);
    if (o.n > 1) add(this.nAbove1, o);
    add(this.total, o);
    if (o.error) this.errors[o.error] = (this.errors[o.error] ?? 0) + 1;
    if (o.abortPlanned) {
      this.abortsPlanned++;
      if (o.result !== 'aborted') this.abortsTooLate++;
    }
    if (o.tokensFromUsage) this.tokensFromUsage += o.tokens;
    else this.tokensFromChunks += o.tokens;
    if (o.result === 'completed') this.completedMs[o.kind].push(o.ms);
  }

  latency(kind: Kind): { p50Ms: number; p95Ms: number } {
    return { p50Ms: percentile(this.completedMs[kind], 50), p95Ms: percentile(this.completedMs[kind], 95) };
  }

  toJSON() {
    return {
      byKind: Object.fromEntries(KINDS.map((k) => [k, { ...this.byKind[k], completedLatency: this.latency(k) }])),
      shortPrompts: this.shortPrompts,
      longPrompts: this.longPrompts,
      nAbove1: this.nAbove1,
      total: this.total,
      errors: this.errors,
      abortsPlanned: this.abortsPlanned,
      abortsFinishedFirst: this.abortsTooLate,
      tokensFromUsage: this.tokensFromUsage,
      tokensCountedAsChunks: this.tokensFromChunks,
    };
  }
}

// ---------- memory ----------

interface Sample {
  /** Seconds since the end of the warm-up (negative during it). */
  t: number;
  at: number;
  rssMiB: number | undefined;
  /** Peak RSS so far (VmHWM). */
  peakRssMiB: number | undefined;
  heapUsedMiB: number | undefined;
  /** Requests finished so far (warm-up included), requests in flight, tokens so far. */
  finished: number;
  inFlight: number;
  tokens: number;
}

function readRss(pid: number): { rssMiB?: number; peakRssMiB?: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (field: string) => {
      const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
      return match ? Number(match[1]) / 1024 : undefined;
    };
    return { rssMiB: kib('VmRSS'), peakRssMiB: kib('VmHWM') };
  } catch {
    // No /proc (macOS): ps gives RSS in KiB.
    try {
      const kib = Number(execFileSync('ps', ['-o', 'rss=', '-p', String(pid)], { encoding: 'utf8' }).trim());
      return Number.isFinite(kib) && kib > 0 ? { rssMiB: kib / 1024 } : {};
    } catch {
      return {};
    }
  }
}

/** heapUsed from GET /metrics: a JSON body with a `heapUsed` field anywhere, or Prometheus text (nodejs_heap_size_used_bytes). */
async function readHeapUsed(url: string): Promise<{ status: number; heapUsedBytes?: number }> {
  const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(3000) });
  const text = await response.text();
  if (!response.ok) return { status: response.status };
  try {
    const find = (value: unknown): number | undefined => {
      if (typeof value !== 'object' || value === null) return undefined;
      for (const [key, inner] of Object.entries(value)) {
        if ((key === 'heapUsed' || key === 'heap_used') && typeof inner === 'number') return inner;
        const found = find(inner);
        if (found !== undefined) return found;
      }
      return undefined;
    };
    return { status: response.status, heapUsedBytes: find(JSON.parse(text)) };
  } catch {
    const match = /^nodejs_heap_size_used_bytes(?:\{[^}]*\})?\s+(\S+)/m.exec(text);
    return { status: response.status, heapUsedBytes: match ? Number(match[1]) : undefined };
  }
}

// ---------- end check ----------

interface EndCheck {
  healthStatus: number | string;
  completionStatus: number | string;
  completionTokens?: number;
  streamStatus: number | string;
  streamDone?: boolean;
  ok: boolean;
}

async function endCheck(url: string, modelId: string): Promise<EndCheck> {
  const attempt = async <T>(fn: () => Promise<T>): Promise<T | string> => {
    try {
      return await fn();
    } catch (err) {
      return networkError(err);
    }
  };
  const signal = () => AbortSignal.timeout(60_000);
  const health = await attempt(async () => {
    const response = await fetch(`${url}/health`, { signal: signal() });
    const body = (await response.json()) as { status?: string };
    return response.status === 200 && body.status === 'ok' ? 200 : `${response.status} ${JSON.stringify(body)}`;
  });
  let completionTokens: number | undefined;
  const completion = await attempt(async () => {
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: postHeaders,
      body: JSON.stringify({ model: modelId, prompt: STORY[0], max_tokens: 8, temperature: 0 }),
      signal: signal(),
    });
    const body = (await response.json()) as FullResponse & { choices?: { text?: string }[] };
    completionTokens = body.usage?.completion_tokens;
    return response.status === 200 && typeof body.choices?.[0]?.text === 'string' && (completionTokens ?? 0) >= 1 ? 200 : `${response.status} ${JSON.stringify(body).slice(0, 300)}`;
  });
  let streamDone: boolean | undefined;
  const stream = await attempt(async () => {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: postHeaders,
      body: JSON.stringify({ model: modelId, messages: [{ role: 'user', content: STORY[1] }], max_tokens: 8, temperature: 0, stream: true }),
      signal: signal(),
    });
    if (response.status !== 200 || !response.body) return `${response.status} ${(await response.text()).slice(0, 300)}`;
    streamDone = false;
    for await (const { data } of sseData(response.body)) if (data === '[DONE]') streamDone = true;
    return streamDone ? 200 : '200 without [DONE]';
  });
  return { healthStatus: health, completionStatus: completion, completionTokens, streamStatus: stream, streamDone, ok: health === 200 && completion === 200 && stream === 200 };
}

// ---------- output helpers ----------

const fmt = (value: number | undefined, digits = 1): string => (value !== undefined && Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
const log = (message: string) => process.stderr.write(`[soak] ${message}\n`);

function tallyTable(stats: PhaseStats): string[] {
  const header = ['', 'sent', 'completed', 'aborted', 'errors', 'tokens', 'p50 ms', 'p95 ms'];
  const rows: string[][] = [];
  const row = (label: string, t: Tally, latency?: { p50Ms: number; p95Ms: number }) =>
    rows.push([label, String(t.sent), String(t.completed), String(t.aborted), String(t.errors), String(t.tokens), latency ? fmt(latency.p50Ms, 0) : '', latency ? fmt(latency.p95Ms, 0) : '']);
  for (const kind of KINDS) row(kind, stats.byKind[kind], stats.latency(kind));
  row('all', stats.total);
  row('  short prompts', stats.shortPrompts);
  row('  long prompts', stats.longPrompts);
  row('  n > 1', stats.nAbove1);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '  ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map((r) => (r[0] === 'all' ? [line(widths.map((w) => '-'.repeat(w))), line(r)] : [line(r)])).flat()];
}

// ---------- main ----------

let options: Options;
try {
  options = parseOptions();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
const apiKey = apiKeyFrom(options.serverFlags);
if (apiKey) postHeaders = { ...postHeaders, authorization: `Bearer ${apiKey}` };
const durationMs = options.minutes * 60_000;
const warmupMs = options.warmupSeconds * 1000;
const date = new Date().toISOString();

log(`starting ortserve (${relative(ROOT, options.modelDir) || options.modelDir}${options.serverFlags.length ? ` ${options.serverFlags.join(' ')}` : ''})…`);
const serverErrorLogs: string[] = [];
let serverErrorLogCount = 0;
const server: ServerHandle = await startServer(options.modelDir, options.serverFlags, {
  onLog: (entry, line) => {
    if (typeof entry.level !== 'number' || entry.level < 50) return;
    serverErrorLogCount++;
    if (serverErrorLogs.length < 20) serverErrorLogs.push(line.slice(0, 2000));
    if (serverErrorLogCount <= 5) process.stderr.write(`server: ${line.slice(0, 2000)}\n`);
  },
});
const pid = server.child.pid!;
const modelId = typeof server.ready.model === 'string' ? server.ready.model : 'default';
const contextLength = typeof server.ready.contextLength === 'number' ? server.ready.contextLength : 512;
// Ctrl-C: take the server down too.
process.once('SIGINT', () => {
  server.child.kill('SIGTERM');
  process.exit(130);
});

const prompts = makePrompts(options.modelDir, contextLength);
log(
  `server pid ${pid} at ${server.url} (model ${modelId}, context ${contextLength}) ready in ${fmt(server.startMs / 1000)} s; ` +
    `${prompts.short.length} short prompts (${Math.min(...prompts.short.map((p) => p.tokens))}-${Math.max(...prompts.short.map((p) => p.tokens))} tokens), ` +
    `${prompts.long.length} long (${Math.min(...prompts.long.map((p) => p.tokens))}-${Math.max(...prompts.long.map((p) => p.tokens))} tokens)`,
);

let died: { code: number | null; signal: string | null; t: number } | undefined;
let stopping = false;
const t0 = performance.now();
const measuredStart = t0 + warmupMs;
const loadEnd = measuredStart + durationMs;
const seconds = (at: number) => (at - measuredStart) / 1000;
void server.exited.then((code) => {
  if (stopping && !died) return;
  died = { code, signal: server.child.signalCode, t: seconds(performance.now()) };
  stopping = true;
  log(`the server died (exit code ${code}, signal ${server.child.signalCode ?? '-'})`);
});

const warmup = new PhaseStats();
const measured = new PhaseStats();
const serverErrors: (Omit<Outcome, 'finishedAt'> & { t: number })[] = [];
let finished = 0;
let inFlight = 0;
let tokens = 0;

async function client(index: number): Promise<void> {
  const rng = rngFrom(options.seed * 1_000_003 + index);
  while (!stopping && performance.now() < loadEnd) {
    const plan = makePlan(rng, prompts, modelId, contextLength);
    inFlight++;
    const outcome = await runRequest(server.url, plan);
    inFlight--;
    finished++;
    tokens += outcome.tokens;
    (outcome.finishedAt < measuredStart ? warmup : measured).record(outcome);
    if (outcome.serverError) {
      const { finishedAt, ...rest } = outcome;
      serverErrors.push({ ...rest, t: seconds(finishedAt) });
    }
    // The server is full: wait as its retry-after header asks.
    if (outcome.status === 429) await sleep(1000);
  }
}

const samples: Sample[] = [];
let metricsStatus: number | string | undefined;
async function takeSample(): Promise<Sample> {
  const at = performance.now();
  const alive = server.child.exitCode === null && server.child.signalCode === null;
  const { rssMiB, peakRssMiB } = alive ? readRss(pid) : {};
  let heapUsedMiB: number | undefined;
  if (alive && metricsStatus !== 404) {
    try {
      const metrics = await readHeapUsed(server.url);
      metricsStatus = metrics.status;
      if (metrics.heapUsedBytes !== undefined) heapUsedMiB = metrics.heapUsedBytes / MiB;
    } catch (err) {
      metricsStatus = networkError(err);
    }
  }
  return { t: seconds(at), at, rssMiB, peakRssMiB, heapUsedMiB, finished, inFlight, tokens };
}

const samplerStop = new AbortController();
const sampler = (async () => {
  let nextProgress = 30;
  while (!samplerStop.signal.aborted) {
    try {
      await sleep(options.sampleSeconds * 1000, undefined, { signal: samplerStop.signal });
    } catch {
      break;
    }
    // The start sample may have been taken a moment ago.
    const last = samples.at(-1);
    if (last && performance.now() - last.at < (options.sampleSeconds * 1000) / 2) continue;
    const sample = await takeSample();
    samples.push(sample);
    if (sample.t >= nextProgress) {
      nextProgress += 30;
      log(`${fmt(sample.t, 0)}/${fmt(durationMs / 1000, 0)} s: ${sample.finished} requests finished, ${sample.inFlight} in flight, RSS ${fmt(sample.rssMiB)} MiB${sample.heapUsedMiB !== undefined ? `, heap ${fmt(sample.heapUsedMiB)} MiB` : ''}`);
    }
  }
})();

log(`${options.clients} clients: ${fmt(warmupMs / 1000, 0)} s warm-up, then ${fmt(durationMs / 1000, 0)} s measured`);
const clients = Array.from({ length: options.clients }, (_, i) => client(i));
const loadOver = () => stopping || performance.now() >= loadEnd;
const hostile: Promise<HostileTally> | undefined = options.hostile ? hostileClient(server.url, modelId, postHeaders, loadOver, prompts.tokenOf('a')) : undefined;
const health: Promise<HealthLatencies> | undefined = options.hostile ? probeHealth(server.url, loadOver) : undefined;
await Promise.race([sleep(warmupMs), server.exited]);
const startSample = await takeSample();
samples.push(startSample);
log(`warm-up done: ${finished} requests, RSS ${fmt(startSample.rssMiB)} MiB`);
await Promise.all(clients);
const hostileTally = await hostile;
const healthLatencies = await health;
samplerStop.abort();
await sampler;
const endSample = await takeSample();
samples.push(endSample);
log(`load done: ${finished} requests in all; checking the server…`);

const alive = server.child.exitCode === null && server.child.signalCode === null;
const check: EndCheck = alive
  ? await endCheck(server.url, modelId)
  : { healthStatus: 'server not running', completionStatus: 'server not running', streamStatus: 'server not running', ok: false };

stopping = true;
const stopStart = performance.now();
await stopServer(server);
const shutdown = {
  exitCode: server.child.exitCode,
  signal: server.child.signalCode,
  ms: performance.now() - stopStart,
  /** SIGTERM took the server down by itself (exit 0), not the SIGKILL that follows 10 s later. */
  clean: server.child.exitCode === 0,
};

// ---------- memory verdict ----------

const measuredSamples = samples.filter((s) => s.t >= 0 && s.rssMiB !== undefined);
const middleAt = durationMs / 2000;
const middle = measuredSamples.reduce<Sample | undefined>((best, s) => (best === undefined || Math.abs(s.t - middleAt) < Math.abs(best.t - middleAt) ? s : best), undefined);
const start = startSample.rssMiB !== undefined ? startSample : measuredSamples[0];
const end = endSample.rssMiB !== undefined ? endSample : measuredSamples.at(-1);
const growthMiB = middle && end ? end.rssMiB! - middle.rssMiB! : undefined;
const allowanceMiB = middle ? Math.max((RSS_GROWTH_PCT / 100) * middle.rssMiB!, RSS_GROWTH_MIB) : undefined;
/** No verdict when the server died or there are too few samples to tell a middle from an end. */
const levelledOff = !died && growthMiB !== undefined && allowanceMiB !== undefined && middle !== end ? growthMiB < allowanceMiB : undefined;
/** Least-squares slope of RSS over the second half of the measured period, MiB per minute. */
const secondHalf = measuredSamples.filter((s) => middle && s.t >= middle.t);
const slopeMiBPerMinute = (() => {
  if (secondHalf.length < 3) return undefined;
  const mx = secondHalf.reduce((a, s) => a + s.t, 0) / secondHalf.length;
  const my = secondHalf.reduce((a, s) => a + s.rssMiB!, 0) / secondHalf.length;
  const sxy = secondHalf.reduce((a, s) => a + (s.t - mx) * (s.rssMiB! - my), 0);
  const sxx = secondHalf.reduce((a, s) => a + (s.t - mx) ** 2, 0);
  return sxx > 0 ? (sxy / sxx) * 60 : undefined;
})();
const throughput = (from: Sample | undefined, to: Sample | undefined) =>
  from && to && to.t > from.t ? { requestsPerSecond: (to.finished - from.finished) / (to.t - from.t), tokensPerSecond: (to.tokens - from.tokens) / (to.t - from.t) } : undefined;
const firstHalf = throughput(start, middle);
const lastHalf = throughput(middle, end);

// ---------- verdict and report ----------

const failures: string[] = [];
if (serverErrors.length > 0) failures.push(`${serverErrors.length} server error(s) (5xx)`);
if (hostileTally && hostileTally.serverErrors > 0) failures.push(`${hostileTally.serverErrors} 5xx to the hostile client`);
if (healthLatencies && healthLatencies.failures > 0) failures.push(`${healthLatencies.failures} /health probes failed`);
if (died) failures.push(`the server died at ${fmt(died.t)} s (exit code ${died.code}, signal ${died.signal ?? '-'})`);
if (!check.ok) failures.push('the end check failed');

const versions = {
  node: process.version,
  onnxruntimeNode: (readJson(join(ROOT, 'node_modules/onnxruntime-node/package.json')).version as string | undefined) ?? '?',
};
const cpuModel = cpus()[0]?.model ?? '?';
const memory = {
  start: start && { t: start.t, rssMiB: start.rssMiB, heapUsedMiB: start.heapUsedMiB },
  middle: middle && { t: middle.t, rssMiB: middle.rssMiB, heapUsedMiB: middle.heapUsedMiB },
  end: end && { t: end.t, rssMiB: end.rssMiB, heapUsedMiB: end.heapUsedMiB },
  peakRssMiB: Math.max(...samples.map((s) => s.peakRssMiB ?? s.rssMiB ?? -Infinity)),
  growthMiddleToEndMiB: growthMiB,
  growthMiddleToEndPct: growthMiB !== undefined && middle ? (100 * growthMiB) / middle.rssMiB! : undefined,
  requestsMiddleToEnd: middle && end ? end.finished - middle.finished : undefined,
  allowanceMiB,
  rule: `levelled off when RSS(end) − RSS(middle) < max(${RSS_GROWTH_PCT}% of RSS(middle), ${RSS_GROWTH_MIB} MiB)`,
  levelledOff,
  secondHalfSlopeMiBPerMinute: slopeMiBPerMinute,
  metricsEndpoint: metricsStatus ?? 'not probed',
};

const report = {
  date,
  machine: { cores: availableParallelism(), cpu: cpuModel, memoryGiB: totalmem() / 2 ** 30 },
  versions,
  options: { ...options, modelDir: relative(ROOT, options.modelDir) || options.modelDir, requestTimeoutMs: REQUEST_TIMEOUT_MS },
  server: {
    pid,
    model: modelId,
    contextLength,
    flags: ['--port', '0', '--host', '127.0.0.1', '--log-level', 'info', ...options.serverFlags],
    startMs: server.startMs,
    died: died ?? null,
    shutdown,
    errorLogLines: serverErrorLogCount,
    errorLogSamples: serverErrorLogs,
    stderrTail: server.stderrTail().slice(-4000),
  },
  prompts: {
    short: { count: prompts.short.length, minTokens: Math.min(...prompts.short.map((p) => p.tokens)), maxTokens: Math.max(...prompts.short.map((p) => p.tokens)) },
    long: { count: prompts.long.length, minTokens: Math.min(...prompts.long.map((p) => p.tokens)), maxTokens: Math.max(...prompts.long.map((p) => p.tokens)) },
  },
  warmup: warmup.toJSON(),
  measured: measured.toJSON(),
  throughput: { firstHalf, secondHalf: lastHalf },
  serverErrors,
  memory,
  endCheck: check,
  samples: samples.map(({ at: _at, ...s }) => s),
  hostile: hostileTally ?? null,
  health: healthLatencies ?? null,
  ok: failures.length === 0,
  failures,
};

const errorLines = Object.entries(measured.errors)
  .sort((a, b) => b[1] - a[1])
  .map(([key, count]) => `  ${key}: ${count}`);
const warmupErrors = Object.values(warmup.errors).reduce((a, b) => a + b, 0);
const mib = (value: number | undefined) => `${fmt(value)} MiB`;
const heap = (s: Sample | undefined) => (s?.heapUsedMiB !== undefined ? ` (heapUsed ${fmt(s.heapUsedMiB)} MiB)` : '');
const lines = [
  `ortserve soak — ${date} — ${availableParallelism()} cores (${cpuModel}), node ${versions.node}, onnxruntime-node ${versions.onnxruntimeNode}`,
  `model ${modelId} (context ${contextLength}), server flags: ${report.server.flags.join(' ')}; ${options.clients} clients, ${fmt(durationMs / 1000, 0)} s measured after ${fmt(warmupMs / 1000, 0)} s warm-up, seed ${options.seed}`,
  '',
  `requests finished in the measured period (warm-up: ${warmup.total.sent} requests, ${warmupErrors} errors):`,
  ...tallyTable(measured),
  `  (p50/p95: completed requests, ms from sent to last byte; tokens: usage.completion_tokens, or text chunks where a stream had no usage: ${measured.tokensFromChunks} of ${measured.total.tokens})`,
  `aborts planned: ${measured.abortsPlanned}; ${measured.abortsTooLate} of them finished before the abort fired (counted completed)`,
  `throughput: ${fmt(firstHalf?.requestsPerSecond, 2)} req/s, ${fmt(firstHalf?.tokensPerSecond)} tok/s in the first half; ${fmt(lastHalf?.requestsPerSecond, 2)} req/s, ${fmt(lastHalf?.tokensPerSecond)} tok/s in the second`,
  errorLines.length > 0 ? `errors:\n${errorLines.join('\n')}` : 'errors: none',
  serverErrors.length > 0
    ? `5xx: ${serverErrors.length}\n${serverErrors
        .slice(0, 20)
        .map((e) => `  ${fmt(e.t)} s ${e.kind}: ${e.error} ${e.message ?? ''}`)
        .join('\n')}${serverErrors.length > 20 ? `\n  … ${serverErrors.length - 20} more in the JSON report` : ''}`
    : '5xx: none',
  `server error log lines: ${serverErrorLogCount}`,
  ...(hostileTally
    ? [
        `hostile client (answers by kind and status): ${Object.entries(hostileTally.statuses)
          .sort()
          .map(([key, n]) => `${key}: ${n}`)
          .join(', ')}; 5xx: ${hostileTally.serverErrors}`,
      ]
    : []),
  ...(healthLatencies ? [`/health every 200 ms: ${healthLatencies.count} probes, ${healthLatencies.failures} failed; p50 ${fmt(healthLatencies.p50Ms)} ms, p99 ${fmt(healthLatencies.p99Ms)} ms, max ${fmt(healthLatencies.maxMs)} ms`] : []),
  '',
  `server RSS: start ${mib(start?.rssMiB)}${heap(start)} at ${fmt(start?.t, 0)} s, middle ${mib(middle?.rssMiB)}${heap(middle)} at ${fmt(middle?.t, 0)} s, end ${mib(end?.rssMiB)}${heap(end)} at ${fmt(end?.t, 0)} s; peak ${mib(memory.peakRssMiB)}`,
  `  middle → end: ${growthMiB !== undefined && growthMiB >= 0 ? '+' : ''}${mib(growthMiB)} (${fmt(memory.growthMiddleToEndPct)}%) over ${memory.requestsMiddleToEnd ?? 'n/a'} requests; second-half slope ${fmt(slopeMiBPerMinute, 2)} MiB/min`,
  `  GET /metrics: ${metricsStatus === 404 ? 'not served (404), no heap figures' : String(metricsStatus ?? 'not probed')}`,
  `  verdict: ${levelledOff === undefined ? `no verdict (${died ? 'the server died' : 'too few RSS samples'})` : levelledOff ? `RSS levelled off (growth below ${mib(allowanceMiB)} = max(${RSS_GROWTH_PCT}% of middle, ${RSS_GROWTH_MIB} MiB))` : `RSS did NOT level off (growth ≥ ${mib(allowanceMiB)} = max(${RSS_GROWTH_PCT}% of middle, ${RSS_GROWTH_MIB} MiB))`}`,
  '',
  `end check: /health ${check.healthStatus}, completion ${check.completionStatus}${check.completionTokens !== undefined ? ` (${check.completionTokens} tokens)` : ''}, streaming chat ${check.streamStatus} → ${check.ok ? 'healthy' : 'NOT healthy'}`,
  `server: ${died ? `died at ${fmt(died.t)} s` : 'alive throughout'}; SIGTERM → ${shutdown.clean ? `exit 0 in ${fmt(shutdown.ms, 0)} ms` : `exit code ${shutdown.exitCode ?? '-'}, signal ${shutdown.signal ?? '-'}`}`,
  `result: ${failures.length === 0 ? 'PASS' : `FAIL — ${failures.join('; ')}`}`,
];
console.log(lines.join('\n'));

mkdirSync(join(BENCH, 'results'), { recursive: true });
const stamp = date.replace(/[:.]/g, '-');
writeFileSync(
  join(BENCH, 'results', `soak-${stamp}.json`),
  JSON.stringify(report, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2),
);
console.log(`wrote bench/results/soak-${stamp}.json`);
process.exit(failures.length === 0 ? 0 : 1);
