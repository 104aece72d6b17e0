/**
 * The Llama-family graph layouts served side by side: bench-llama-135m as exported (plain ops,
 * Optimum's `repeat_kv`) and as onnxruntime-genai's builder writes it (GroupQueryAttention with the
 * rotary fused, tools/model-variants.ts), each in the scenarios that tell batching apart:
 *
 *   npx tsx bench/layouts.ts [--rounds 3] [--root DIR] [--layouts plain,group-query] [--server-flags "..."]
 *
 * - single: 1 client, a 32-token prompt;
 * - same: 16 clients arriving together, 32-token prompts;
 * - mixed: 16 clients, prompts from 8 to 512 tokens, arriving over the first second (completion
 *   tokens/s, and prompt and completion tokens/s: prefilling 4,000 prompt tokens dominates it);
 * - mixed short: 16 clients, prompts from 8 to 64 tokens, arriving 20 ms apart;
 * - same long: 16 clients arriving together, prompts of the mixed scenario's mean length (260
 *   tokens): the same prefill work as mixed, without the spread of lengths and arrivals;
 * - quiet / long prompt: 15 clients decoding, alone, then with a 2,000-token prompt arriving once
 *   each has its first tokens: their p95 inter-token latency in each.
 *
 * Prompts are token ids (from a story, tokenized here), EOS is forbidden (logit_bias), 48 new tokens,
 * greedy; tokens/s are completion tokens over the wall time from the first request to the last
 * answer. Each round starts each layout's server afresh, layouts alternating; the medians of the
 * rounds are printed with the CPU's features. `--root DIR` runs the server of another checkout (to
 * compare against an earlier commit on the same machine, in the same hour).
 */
import { mkdirSync, existsSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { makeVariant } from '../tools/model-variants.js';
import { readModelFiles } from '../src/model/files.js';
import { TextTokenizer } from '../src/model/tokenizer.js';
import { cpuFeatures, ensureWeights, percentile, ROOT, sseData, startServer, STORY, stopServer, type ServerHandle } from './common.js';

const NEW_TOKENS = 48;
const SOURCE = join(ROOT, 'bench/models/bench-llama-135m');
const LAYOUTS = {
  plain: SOURCE,
  'group-query': join(ROOT, 'bench/models/bench-llama-135m-group-query'),
} as const;
type Layout = keyof typeof LAYOUTS;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    root: { type: 'string' },
    layouts: { type: 'string', default: 'plain,group-query' },
    'server-flags': { type: 'string', default: '' },
  },
});
const rounds = Number(values.rounds);
const layouts = values.layouts!.split(',') as Layout[];
for (const layout of layouts) if (!(layout in LAYOUTS)) throw new Error(`unknown layout ${layout}: ${Object.keys(LAYOUTS).join(', ')}`);

await ensureWeights(SOURCE);
if (layouts.includes('group-query') && !existsSync(join(LAYOUTS['group-query'], 'model.onnx'))) {
  console.error('[layouts] writing the GroupQueryAttention variant…');
  makeVariant('group-query-attention-rotary', SOURCE, LAYOUTS['group-query']);
}

const tokenizer = new TextTokenizer(readModelFiles(SOURCE));
const story = tokenizer.encode(STORY.join(' ').repeat(20), false);
/** A prompt of `length` token ids, starting at a different place of the story for each `seed`. */
const prompt = (length: number, seed: number) => {
  const start = (seed * 97) % (story.length - length);
  return story.slice(start, start + length);
};

interface Stream {
  sent: number;
  arrivals: number[];
  tokens: number;
  done: number;
  error?: string;
}

async function stream(server: ServerHandle, promptIds: number[], maxTokens = NEW_TOKENS, onToken?: (count: number) => void): Promise<Stream> {
  const result: Stream = { sent: performance.now(), arrivals: [], tokens: 0, done: 0 };
  try {
    const response = await fetch(`${server.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: server.ready.model, prompt: promptIds, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true }, logit_bias: { '50256': -100 } }),
    });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    for await (const { data, receivedAt } of sseData(response.body)) {
      if (data === '[DONE]') continue;
      const chunk = JSON.parse(data) as { choices?: { text?: string }[]; usage?: { completion_tokens: number } | null };
      if (chunk.usage) result.tokens = chunk.usage.completion_tokens;
      if (chunk.choices?.[0]?.text) {
        result.arrivals.push(receivedAt);
        onToken?.(result.arrivals.length);
      }
    }
  } catch (err) {
    result.error = (err as Error).message;
  }
  result.done = performance.now();
  return result;
}

const gaps = (streams: Stream[]) => streams.flatMap((s) => s.arrivals.slice(1).map((t, i) => t - s.arrivals[i]!));
const tokensPerSecond = (streams: Stream[]) => {
  const start = Math.min(...streams.map((s) => s.sent));
  const end = Math.max(...streams.map((s) => s.done));
  return streams.reduce((sum, s) => sum + s.tokens, 0) / ((end - start) / 1000);
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface RoundResult {
  single: number;
  same: number;
  mixedShort: number;
  mixed: number;
  /** 16 clients together, prompts of the mixed scenario's mean length. */
  sameLong: number;
  /** Prompt and completion tokens/s of the mixed scenario. */
  mixedProcessed: number;
  quietItlP95: number;
  longItlP95: number;
  errors: string[];
}

async function round(server: ServerHandle): Promise<RoundResult> {
  const errors: string[] = [];
  const check = (streams: Stream[]) => {
    for (const s of streams) if (s.error || s.tokens !== NEW_TOKENS) errors.push(s.error ?? `${s.tokens} tokens`);
    return streams;
  };
  await stream(server, prompt(32, 999), 8);
  const single = tokensPerSecond(check([await stream(server, prompt(32, 1))]));
  const same = tokensPerSecond(check(await Promise.all(Array.from({ length: 16 }, (_, i) => stream(server, prompt(32, i + 2))))));
  /** 16 clients, prompts from 8 to `longest` tokens in a spread order, arriving `apartMs` apart. */
  const spread = (longest: number, apartMs: number) =>
    Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const length = Math.round(8 + ((i * 7) % 16) * ((longest - 8) / 15));
        await sleep(i * apartMs);
        return stream(server, prompt(length, i + 40));
      }),
    );
  const mixedShort = tokensPerSecond(check(await spread(64, 20)));
  const mixedStreams = check(await spread(512, 1000 / 16));
  const mixed = tokensPerSecond(mixedStreams);
  const promptTokens = Array.from({ length: 16 }, (_, i) => Math.round(8 + ((i * 7) % 16) * (504 / 15))).reduce((a, b) => a + b, 0);
  const sameLong = tokensPerSecond(check(await Promise.all(Array.from({ length: 16 }, (_, i) => stream(server, prompt(Math.round(promptTokens / 16), i + 60))))));
  const mixedProcessed = mixed * (1 + promptTokens / mixedStreams.reduce((sum, s) => sum + s.tokens, 0));
  const decoding = async (withLong: boolean) => {
    let started = 0;
    let release: () => void = () => {};
    const allStarted = new Promise<void>((resolve) => (release = resolve));
    const streams = Array.from({ length: 15 }, (_, i) =>
      stream(server, prompt(32, i + 80), NEW_TOKENS * 2, (count) => {
        if (count === 4 && ++started === 15) release();
      }),
    );
    // (A stream that fails before its first tokens ends the wait too.)
    await Promise.race([allStarted, Promise.all(streams)]);
    const mark = performance.now();
    if (withLong) void stream(server, prompt(2000, 7), 4);
    const done = check(await Promise.all(streams));
    // The gaps from the moment every stream had its first tokens.
    return percentile(gaps(done.map((s) => ({ ...s, arrivals: s.arrivals.filter((t) => t >= mark) }))), 95);
  };
  const quietItlP95 = await decoding(false);
  const longItlP95 = await decoding(true);
  return { single, same, mixedShort, mixed, sameLong, mixedProcessed, quietItlP95, longItlP95, errors: errors.filter((e) => !/^96 tokens$/.test(e)) };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const results = new Map<Layout, RoundResult[]>(layouts.map((layout) => [layout, []]));
const serverRoot = values.root ?? ROOT;
const flags = values['server-flags']!.split(/\s+/).filter(Boolean);
for (let r = 1; r <= rounds; r++) {
  for (const layout of r % 2 === 1 ? layouts : [...layouts].reverse()) {
    console.error(`[layouts] round ${r}/${rounds}: ${layout}…`);
    const server = await startServer(LAYOUTS[layout], ['--max-batch', '16', ...flags], { root: serverRoot });
    try {
      results.get(layout)!.push(await round(server));
    } finally {
      await stopServer(server);
    }
  }
}

console.log(`bench-llama-135m layouts — ${new Date().toISOString()} — ${cpus().length} cores (${cpus()[0]?.model ?? '?'}; ${cpuFeatures()}), server from ${serverRoot}, ${rounds} rounds, medians`);
console.log('layout        1 client  16 same  16 mixed short  short/same  16 mixed 8-512  (prompt+completion)  16 same long  mixed/same long  quiet ITL p95 ms  with a 2,000-token prompt  ratio');
const summary: Record<string, Record<string, number>> = {};
for (const [layout, runs] of results) {
  const row = {
    single: median(runs.map((r) => r.single)),
    same: median(runs.map((r) => r.same)),
    mixedShort: median(runs.map((r) => r.mixedShort)),
    mixed: median(runs.map((r) => r.mixed)),
    sameLong: median(runs.map((r) => r.sameLong)),
    mixedProcessed: median(runs.map((r) => r.mixedProcessed)),
    quietItlP95: median(runs.map((r) => r.quietItlP95)),
    longItlP95: median(runs.map((r) => r.longItlP95)),
  };
  summary[layout] = row;
  const cells = [
    [row.single, 8],
    [row.same, 7],
    [row.mixedShort, 14],
    [row.mixedShort / row.same, 10, 2],
    [row.mixed, 14],
    [row.mixedProcessed, 19],
    [row.sameLong, 12],
    [row.mixed / row.sameLong, 15, 2],
    [row.quietItlP95, 16],
    [row.longItlP95, 25],
    [row.longItlP95 / row.quietItlP95, 5, 2],
  ] as const;
  console.log(`${layout.padEnd(12)}  ${cells.map(([value, width, digits = 1]) => value.toFixed(digits).padStart(width)).join('  ')}`);
  const errors = runs.flatMap((r) => r.errors);
  if (errors.length > 0) console.log(`  ${layout}: ${errors.length} streams amiss: ${[...new Set(errors)].slice(0, 3).join('; ')}`);
}
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
const file = join(ROOT, `bench/results/layouts-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify({ serverRoot, rounds, cpu: cpus()[0]?.model, features: cpuFeatures(), summary, results: Object.fromEntries(results) }, null, 2)}\n`);
console.log(`wrote ${file}`);
