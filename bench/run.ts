/**
 * ortserve's benchmark. In one run on one machine it measures, per model:
 *  - raw: a plain greedy loop over onnxruntime-node in this process (batch 1 and 16), the bar;
 *  - ortserve: the real server as a child process, 1, 4 and 16 concurrent streaming clients;
 *  - transformers.js: `generate`, greedy, batch 1 and 16 (in a child process, see transformers-child.ts);
 *  - llama.cpp: node-llama-cpp on the same weights converted to GGUF (gguf.ts), f32 and q8_0, batch 1
 *    and 16, and f32 with flash attention at 16 (in a child process, see llama-cpp.ts);
 * prints one table with the ratios, and writes bench/results/<timestamp>.json and latest.json.
 *
 *   npm run bench [-- --model-set default|124m|135m|all] [--skip-transformers] [--skip-llama-cpp] [--server-flags="--prefill-chunk 32"]
 */
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Tokenizer } from '@huggingface/tokenizers';
import * as ort from 'onnxruntime-node';
import { lastLogits, runRaw, type RawResult } from './raw.js';
import { ensureGguf, GGUF_TYPES, type GgufType } from './gguf.js';
import { BUSY_CORES, ensureNodeLlamaCpp, LLAMA_CPP_VARIANTS, NODE_LLAMA_CPP_VERSION, runLlamaCpp, waitForQuietMachine, type LlamaCppVariant, type MachineLoad } from './llama-cpp.js';
import {
  NEW_TOKENS,
  PROMPT_TOKENS,
  ROOT,
  STORY,
  ensureWeights,
  medianRun,
  percentile,
  runChild,
  sseData,
  startServer,
  stopServer,
  type LlamaCppBatchResult,
  type TransformersBatchResult,
  type TransformersChildResult,
  type TransformersJob,
} from './common.js';

const BENCH = join(ROOT, 'bench');
const CLIENT_COUNTS = [1, 4, 16] as const;
const BATCHES = [1, 16] as const;
const MAX_ROWS = 16;
/** Prompts built; the first MAX_ROWS whose greedy continuation has no EOS within NEW_TOKENS are used. */
const CANDIDATES = 28;
/** Most raw batch-16 runs spent replacing prompts whose greedy continuation hits EOS. */
const SCREEN_ATTEMPTS = 3;
const THREADS = availableParallelism();

const MODELS = {
  default: join(ROOT, 'models/tinystories-gpt2'),
  '124m': join(BENCH, 'models/bench-gpt2-124m'),
  '135m': join(BENCH, 'models/bench-llama-135m'),
} as const;
type ModelSet = keyof typeof MODELS;
/**
 * Rounds of every measurement; the run with the median tokens/s is reported. The default model's runs
 * take tens of milliseconds, so one run is mostly noise; the 124M model's take seconds.
 */
const ROUNDS: Record<ModelSet, number> = { default: 5, '124m': 3, '135m': 3 };

// ---------- model files and prompts ----------

interface ModelInfo {
  name: ModelSet;
  dir: string;
  id: string;
  tokenizer: Tokenizer;
  eosIds: Set<number>;
  numHeads: number;
  headDim: number;
}

function readJson(path: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
}

function loadModelInfo(name: ModelSet): ModelInfo {
  const dir = MODELS[name];
  const config = readJson(join(dir, 'config.json'));
  const generation = existsSync(join(dir, 'generation_config.json')) ? readJson(join(dir, 'generation_config.json')) : {};
  const eosIds = new Set<number>();
  for (const id of [generation.eos_token_id ?? config.eos_token_id].flat()) if (typeof id === 'number') eosIds.add(id);
  const numHeads = Number(config.n_head ?? config.num_key_value_heads ?? config.num_attention_heads);
  const hidden = Number(config.n_embd ?? config.hidden_size);
  const tokenizer = new Tokenizer(readJson(join(dir, 'tokenizer.json')), readJson(join(dir, 'tokenizer_config.json')));
  return { name, dir, id: basename(dir), tokenizer, eosIds, numHeads, headDim: Number(config.head_dim ?? hidden / numHeads) };
}

interface Prompt {
  text: string;
  ids: number[];
}

/**
 * CANDIDATES different prompts of exactly PROMPT_TOKENS tokens, as text: each starts at a sentence of
 * STORY (or, if that runs short, at a later word) and takes words until it tokenizes to 32 tokens.
 */
function makePrompts(tokenizer: Tokenizer): Prompt[] {
  const encode = (text: string) => tokenizer.encode(text, { add_special_tokens: true }).ids;
  const words = STORY.join(' ').split(' ');
  const sentenceStarts: number[] = [];
  let at = 0;
  for (const sentence of STORY) {
    sentenceStarts.push(at);
    at += sentence.split(' ').length;
  }
  const starts = [...sentenceStarts, ...words.map((_, i) => i).filter((i) => !sentenceStarts.includes(i))];
  const prompts: Prompt[] = [];
  const seen = new Set<string>();
  for (const start of starts) {
    for (let end = start + 1; end <= words.length; end++) {
      const text = words.slice(start, end).join(' ');
      const ids = encode(text);
      if (ids.length > PROMPT_TOKENS) break;
      if (ids.length === PROMPT_TOKENS && !seen.has(text)) {
        seen.add(text);
        prompts.push({ text, ids });
        break;
      }
    }
    if (prompts.length === CANDIDATES) return prompts;
  }
  if (prompts.length >= MAX_ROWS) return prompts;
  throw new Error(`could only build ${prompts.length} prompts of exactly ${PROMPT_TOKENS} tokens`);
}

// ---------- ortserve as a child process (startServer and stopServer are in common.ts) ----------

interface StreamResult {
  sent: number;
  done: number;
  /** Arrival times of the SSE chunks that carry text. */
  arrivals: number[];
  text: string;
  usageTokens: number | undefined;
  finishReason: string | undefined;
  error: string | undefined;
}

interface CompletionChunk {
  choices?: { text?: string; finish_reason?: string | null }[];
  usage?: { completion_tokens?: number } | null;
  error?: { message?: string };
}

/** One streaming client (POST /v1/completions, stream: true, greedy, NEW_TOKENS tokens). */
async function streamCompletion(url: string, model: string, prompt: string, maxTokens: number): Promise<StreamResult> {
  const result: StreamResult = { sent: performance.now(), done: 0, arrivals: [], text: '', usageTokens: undefined, finishReason: undefined, error: undefined };
  try {
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, prompt, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } }),
      signal: AbortSignal.timeout(300_000),
    });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    for await (const { data, receivedAt: now } of sseData(response.body)) {
      if (data === '[DONE]') continue;
      const chunk = JSON.parse(data) as CompletionChunk;
      if (chunk.error) result.error = chunk.error.message ?? 'error event';
      if (chunk.usage) result.usageTokens = chunk.usage.completion_tokens;
      const choice = chunk.choices?.[0];
      if (choice?.text) {
        result.arrivals.push(now);
        result.text += choice.text;
      }
      if (choice?.finish_reason) result.finishReason = choice.finish_reason;
    }
  } catch (err) {
    result.error = (err as Error).message;
  }
  result.done = performance.now();
  return result;
}

interface ServerResult {
  clients: number;
  wallMs: number;
  /** Completion tokens (usage of each stream) / wall time from the first request sent to the last stream finished. */
  tokensPerSecond: number;
  completionTokens: number;
  /** Text-bearing SSE chunks over all streams (normally one per token). */
  textChunks: number;
  ttftP50Ms: number;
  ttftP95Ms: number;
  itlP50Ms: number;
  itlP95Ms: number;
  itlMaxMs: number;
  /** Streams that ended with finish_reason length and NEW_TOKENS tokens. */
  fullStreams: number;
  shortStreams: { client: number; tokens: number | undefined; finishReason: string | undefined; error: string | undefined }[];
  /** Streams whose text equals the decoded greedy tokens of the raw loop. */
  matchesRaw: number;
  /** `GET /health` latency, probed one after another while the streams run. */
  healthP50Ms: number;
  healthMaxMs: number;
}

/** Probes `GET /health` one after another, 20 ms apart, until `done` settles: the HTTP thread's responsiveness under load. */
async function probeHealth(url: string, done: Promise<unknown>): Promise<number[]> {
  let finished = false;
  void done.finally(() => (finished = true));
  const latencies: number[] = [];
  while (!finished) {
    const sent = performance.now();
    await fetch(`${url}/health`).then((response) => response.text());
    latencies.push(performance.now() - sent);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return latencies;
}

async function runClients(url: string, model: ModelInfo, prompts: Prompt[], clients: number, rawText: string[] | undefined): Promise<ServerResult> {
  const start = performance.now();
  const running = Promise.all(prompts.slice(0, clients).map((p) => streamCompletion(url, model.id, p.text, NEW_TOKENS)));
  const [streams, health] = await Promise.all([running, probeHealth(url, running)]);
  const end = Math.max(...streams.map((s) => s.done));
  const completionTokens = streams.reduce((sum, s) => sum + (s.usageTokens ?? s.arrivals.length), 0);
  const ttfts = streams.filter((s) => s.arrivals.length > 0).map((s) => s.arrivals[0]! - s.sent);
  const gaps = streams.flatMap((s) => s.arrivals.slice(1).map((t, i) => t - s.arrivals[i]!));
  const shortStreams = streams
    .map((s, client) => ({ client, tokens: s.usageTokens, finishReason: s.finishReason, error: s.error }))
    .filter((s) => s.tokens !== NEW_TOKENS || s.finishReason !== 'length' || s.error !== undefined);
  return {
    clients,
    wallMs: end - start,
    tokensPerSecond: completionTokens / ((end - start) / 1000),
    completionTokens,
    textChunks: streams.reduce((sum, s) => sum + s.arrivals.length, 0),
    ttftP50Ms: percentile(ttfts, 50),
    ttftP95Ms: percentile(ttfts, 95),
    itlP50Ms: percentile(gaps, 50),
    itlP95Ms: percentile(gaps, 95),
    itlMaxMs: Math.max(...gaps),
    fullStreams: clients - shortStreams.length,
    shortStreams,
    matchesRaw: rawText ? streams.filter((s, i) => s.text === rawText[i]).length : NaN,
    healthP50Ms: percentile(health, 50),
    healthMaxMs: Math.max(...health),
  };
}

/** Non-streaming, max_tokens 1: the server must count every prompt as exactly PROMPT_TOKENS tokens. */
async function checkPromptTokens(url: string, model: ModelInfo, prompts: Prompt[]): Promise<number[]> {
  const counts: number[] = [];
  for (const prompt of prompts) {
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: model.id, prompt: prompt.text, max_tokens: 1, temperature: 0 }),
    });
    const body = (await response.json()) as { usage?: { prompt_tokens?: number } };
    counts.push(body.usage?.prompt_tokens ?? NaN);
  }
  return counts;
}

// ---------- transformers.js (child process) ----------

const linkOrSymlink = (target: string, path: string) => {
  try {
    linkSync(target, path);
  } catch {
    symlinkSync(target, path);
  }
};

/** transformers.js's layout: config and tokenizer at the top, graph (and its external data) under onnx/; links, no copies. */
function transformersLayout(model: ModelInfo): { localModelPath: string; modelName: string } {
  const modelName = `${model.id}-transformersjs`;
  const localModelPath = join(BENCH, 'models');
  const dir = join(localModelPath, modelName);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  for (const file of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    if (existsSync(join(model.dir, file))) linkOrSymlink(resolve(model.dir, file), join(dir, file));
  }
  // The graph names its external data "model.onnx.data"; onnxruntime looks for it next to the graph.
  for (const file of ['model.onnx', 'model.onnx.data']) {
    if (existsSync(join(model.dir, file))) linkOrSymlink(resolve(model.dir, file), join(dir, 'onnx', file));
  }
  return { localModelPath, modelName };
}

/** One round of transformers.js (batch 1 and 16) in a child process; it loads the model each time. */
function runTransformers(model: ModelInfo, prompts: Prompt[]): Promise<TransformersChildResult> {
  const job: TransformersJob = {
    ...transformersLayout(model),
    prompts: prompts.map((p) => p.ids),
    texts: prompts.map((p) => p.text),
    batches: [...BATCHES],
    repeats: 1,
    newTokens: NEW_TOKENS,
    threads: THREADS,
  };
  return runChild<TransformersChildResult>('transformers-child.ts', job, 300_000);
}

// ---------- one model ----------

type TransformersReport =
  | { measured: false; reason: string }
  | {
      measured: true;
      loadMs: number;
      tokenizerMatches: boolean;
      inputsFrom: string;
      externalData: string;
      batches: Summary<TransformersBatchResult>[];
    };

type LlamaCppRow = Omit<LlamaCppBatchResult, 'tokens'> & { rowsWithEos: number };

interface LlamaCppVariantReport {
  key: LlamaCppVariant['key'];
  label: string;
  type: GgufType;
  /** Asked for, and what node-llama-cpp says the context got. */
  flashAttention: boolean;
  flashAttentionUsed: boolean;
  threads: number;
  loadMs: number;
  batches: Summary<LlamaCppRow>[];
}

/** How many greedy ids of a llama.cpp run equal the raw loop's, position by position. */
interface IdAgreement {
  variant: LlamaCppVariant['key'];
  batch: number;
  equalIds: number;
  ids: number;
  equalRows: number;
  rows: number;
  /** Where each row that differs parts from the raw loop's ids. */
  differences: IdDifference[];
}

interface IdDifference {
  row: number;
  /** The first new token that differs. */
  token: number;
  rawId: number;
  llamaCppId: number;
  /**
   * For f32: where llama.cpp's id ranks among the raw loop's logits at that point (1 = its arg-max,
   * 2 = its runner-up), and how far below the arg-max its logit is.
   */
  rankInRaw?: number;
  logitGap?: number;
}

type LlamaCppReport =
  | { measured: false; reason: string }
  | {
      measured: true;
      nodeLlamaCpp: string;
      llamaCpp: string;
      systemInfo: string;
      files: Partial<Record<GgufType, string>>;
      variants: LlamaCppVariantReport[];
      agreement: IdAgreement[];
      /** The machine's load before each round's llama.cpp runs. */
      loadBeforeRounds: (MachineLoad & { round: number })[];
    };

function idAgreement(variant: LlamaCppVariant['key'], tokens: number[][], reference: number[][]): IdAgreement {
  const agreement: IdAgreement = { variant, batch: tokens.length, equalIds: 0, ids: 0, equalRows: 0, rows: tokens.length, differences: [] };
  tokens.forEach((row, r) => {
    row.forEach((id, i) => {
      agreement.ids++;
      if (id === reference[r]?.[i]) agreement.equalIds++;
    });
    const token = row.findIndex((id, i) => id !== reference[r]?.[i]);
    if (token === -1) agreement.equalRows++;
    else agreement.differences.push({ row: r, token, rawId: reference[r]?.[token] ?? -1, llamaCppId: row[token]! });
  });
  return agreement;
}

/** Ranks llama.cpp's id at each difference among the raw loop's logits there (the prompt and the raw ids before it, prefilled anew). */
async function rankDifferences(session: ort.InferenceSession, model: ModelInfo, prompts: Prompt[], reference: number[][], agreement: IdAgreement): Promise<void> {
  for (const difference of agreement.differences) {
    const logits = await lastLogits(session, model, [...prompts[difference.row]!.ids, ...reference[difference.row]!.slice(0, difference.token)]);
    const chosen = logits[difference.llamaCppId]!;
    let best = -Infinity;
    let above = 0;
    for (const value of logits) {
      best = Math.max(best, value);
      if (value > chosen) above++;
    }
    difference.rankInRaw = above + 1;
    difference.logitGap = best - chosen;
  }
}

const describeAgreement = (a: IdAgreement): string => {
  let text = `batch ${a.batch} ${a.equalIds}/${a.ids} ids` + (a.rows > 1 ? ` (${a.equalRows}/${a.rows} rows)` : '');
  if (a.differences.length > 0) {
    const ranked = a.differences.filter((d) => d.rankInRaw !== undefined);
    const shown = a.differences.slice(0, 4);
    const more = a.differences.length > shown.length ? ` (and ${a.differences.length - shown.length} more)` : '';
    text += `, ${a.differences.length > 1 ? 'rows' : 'row'} ${shown.map((d) => `${d.row} from token ${d.token}`).join(', ')}${more}`;
    if (ranked.length === a.differences.length) {
      text += ` on, where llama.cpp took the raw loop's ${ranked.slice(0, 4).map((d) => `#${d.rankInRaw} (${d.logitGap!.toExponential(1)} below #1)`).join(', ')}${more}`;
    }
  }
  return text;
};

interface BenchOptions {
  skipTransformers: boolean;
  skipLlamaCpp: boolean;
  serverFlags: string[];
}

interface ModelReport {
  model: ModelSet;
  dir: string;
  serverFlags: string[];
  serverStartMs: number;
  prompts: string[];
  promptTokensSeenByServer: number[];
  raw: Summary<Omit<RawResult, 'tokens'>>[];
  server: Summary<ServerResult>[];
  transformers: TransformersReport;
  llamaCpp: LlamaCppReport;
  ratios: Record<string, number>;
  /** Rounds of every measurement; the median run (by tokens/s) is reported. */
  rounds: number;
  notes: string[];
  seconds: number;
}

async function benchModel(name: ModelSet, { skipTransformers, skipLlamaCpp, serverFlags }: BenchOptions): Promise<ModelReport> {
  const modelStart = performance.now();
  const notes: string[] = [];
  const dir = MODELS[name];
  await ensureWeights(dir);
  const model = loadModelInfo(name);
  const candidates = makePrompts(model.tokenizer);
  const rounds = ROUNDS[name];

  // llama.cpp: node-llama-cpp (installed on first use) and the GGUF files (converted on first use).
  let llamaModule: string | undefined;
  let llamaReason = 'skipped (--skip-llama-cpp)';
  const ggufFiles: Partial<Record<GgufType, string>> = {};
  if (!skipLlamaCpp) {
    try {
      llamaModule = await ensureNodeLlamaCpp(log);
      for (const type of GGUF_TYPES) {
        const { path, converted } = await ensureGguf(dir, type);
        if (converted) log(`${name}: converted to ${converted.type} GGUF in ${(converted.ms / 1000).toFixed(1)} s: ${path.slice(ROOT.length)}`);
        ggufFiles[type] = path;
      }
    } catch (err) {
      llamaModule = undefined;
      llamaReason = (err as Error).message;
      notes.push(`llama.cpp not measured: ${llamaReason.split('\n')[0]}`);
    }
  }
  log(`${name}: ${candidates.length} candidate prompts of ${PROMPT_TOKENS} tokens; screening them with the raw loop…`);

  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'), {
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  // Screening (and the raw loop's warm-up): a raw batch-16 run; prompts whose greedy continuation
  // hits EOS within NEW_TOKENS (a trained model may end its story) are replaced, so that every row
  // and every stream runs the full NEW_TOKENS tokens.
  let prompts = candidates.slice(0, MAX_ROWS);
  let screen = await runRaw(session, model, prompts.map((p) => p.ids));
  const excluded = new Set<Prompt>();
  for (let attempt = 1; attempt < SCREEN_ATTEMPTS && screen.rowsWithEos > 0; attempt++) {
    screen.tokens.forEach((ids, row) => {
      if (ids.some((id) => model.eosIds.has(id))) excluded.add(prompts[row]!);
    });
    const usable = candidates.filter((p) => !excluded.has(p));
    if (usable.length < MAX_ROWS) break;
    notes.push(`screening: ${screen.rowsWithEos} prompt(s) led to EOS within ${NEW_TOKENS} greedy tokens and were replaced by other candidates`);
    prompts = usable.slice(0, MAX_ROWS);
    screen = await runRaw(session, model, prompts.map((p) => p.ids));
  }
  const rawText = screen.tokens.map((ids) => {
    const eos = ids.findIndex((id) => model.eosIds.has(id));
    return model.tokenizer.decode(eos === -1 ? ids : ids.slice(0, eos), { skip_special_tokens: true });
  });

  log(`${name}: starting ortserve…`);
  const server = await startServer(model.dir, serverFlags);
  const rawRuns = new Map<number, RawResult[]>(BATCHES.map((b) => [b, []]));
  const serverRuns = new Map<number, ServerResult[]>(CLIENT_COUNTS.map((c) => [c, []]));
  const transformersRuns = new Map<number, TransformersBatchResult[]>(BATCHES.map((b) => [b, []]));
  let transformersInfo: TransformersChildResult | undefined;
  const llamaRuns = new Map(LLAMA_CPP_VARIANTS.map((v) => [v.key, new Map<number, LlamaCppBatchResult[]>(v.batches.map((b) => [b, []]))]));
  const llamaInfo = new Map<LlamaCppVariant['key'], { loadMs: number[]; flashAttention: boolean; threads: number; llamaCpp: string; systemInfo: string }>();
  const llamaFailed = new Map<LlamaCppVariant['key'], string>();
  const loadBeforeRounds: (MachineLoad & { round: number })[] = [];
  let promptTokensSeenByServer: number[] = [];
  try {
    promptTokensSeenByServer = await checkPromptTokens(server.url, model, prompts);
    const bad = promptTokensSeenByServer.filter((n) => n !== PROMPT_TOKENS).length;
    if (bad > 0) notes.push(`${bad} prompt(s) were not ${PROMPT_TOKENS} tokens for the server: ${promptTokensSeenByServer.join(',')}`);
    await streamCompletion(server.url, model.id, prompts[0]!.text, 16); // warm-up stream

    // Rounds: raw, ortserve, transformers.js, llama.cpp one after the other, so that drifts in the
    // machine's speed fall on all of them alike. Only one of them runs at a time; the others sit idle.
    for (let round = 1; round <= rounds; round++) {
      log(`${name}: round ${round}/${rounds}: raw loop, ortserve${skipTransformers ? '' : ', transformers.js'}${llamaModule ? ', llama.cpp' : ''}…`);
      for (const batch of BATCHES) rawRuns.get(batch)!.push(await runRaw(session, model, prompts.slice(0, batch).map((p) => p.ids)));
      for (const clients of CLIENT_COUNTS) {
        const result = await runClients(server.url, model, prompts, clients, rawText);
        serverRuns.get(clients)!.push(result);
        for (const s of result.shortStreams) {
          notes.push(`round ${round}, ortserve ${clients} clients: stream ${s.client} got ${s.tokens ?? '?'} tokens, finish_reason ${s.finishReason ?? '?'}${s.error ? `, error: ${s.error}` : ''}`);
        }
        if (result.matchesRaw !== clients) notes.push(`round ${round}, ortserve ${clients} clients: ${result.matchesRaw}/${clients} streams' text equals the raw loop's greedy text`);
        if (result.textChunks !== result.completionTokens) {
          notes.push(`round ${round}, ortserve ${clients} clients: ${result.textChunks} text chunks for ${result.completionTokens} tokens (a chunk may carry several tokens, e.g. a multi-byte character)`);
        }
      }
      if (!skipTransformers && (transformersInfo === undefined || transformersInfo.ok)) {
        transformersInfo = await runTransformers(model, prompts);
        for (const t of transformersInfo.results) {
          transformersRuns.get(t.batch)!.push(t);
          if (t.newTokensPerRow !== NEW_TOKENS || t.rowsWithEos > 0) notes.push(`round ${round}, transformers.js batch ${t.batch}: ${t.newTokensPerRow} new tokens per row, ${t.rowsWithEos} row(s) with EOS`);
        }
      }
      if (llamaModule) {
        // llama.cpp's fixed thread count collapses when another process takes a core: look first.
        const load = await waitForQuietMachine();
        loadBeforeRounds.push({ round, ...load });
        if (load.busyCores >= BUSY_CORES) {
          notes.push(`round ${round}, llama.cpp: ${fmt(load.busyCores, 2)} of ${THREADS} cores busy with other work before the round (${load.source}, after waiting ${load.waitedSeconds} s)`);
        }
        for (const variant of LLAMA_CPP_VARIANTS) {
          if (llamaFailed.has(variant.key)) continue;
          const run = await runLlamaCpp({
            module: llamaModule,
            modelPath: ggufFiles[variant.type]!,
            prompts: prompts.map((p) => p.ids),
            batches: [...variant.batches],
            newTokens: NEW_TOKENS,
            threads: THREADS,
            flashAttention: variant.flashAttention,
          });
          if (!run.ok) {
            llamaFailed.set(variant.key, run.error ?? 'unknown error');
            notes.push(`round ${round}, ${variant.label} failed: ${(run.error ?? 'unknown error').split('\n')[0]}`);
            continue;
          }
          for (const r of run.results) {
            llamaRuns.get(variant.key)!.get(r.batch)!.push(r);
            if (r.otherBusyCores !== undefined && r.otherBusyCores >= BUSY_CORES) {
              notes.push(`round ${round}, ${variant.label} batch ${r.batch}: other processes kept ${fmt(r.otherBusyCores, 2)} of ${THREADS} cores busy while it ran`);
            }
          }
          const info = llamaInfo.get(variant.key);
          llamaInfo.set(variant.key, {
            loadMs: [...(info?.loadMs ?? []), run.loadMs ?? NaN],
            flashAttention: run.flashAttention ?? false,
            threads: run.threads ?? NaN,
            llamaCpp: run.llamaCpp ?? '?',
            systemInfo: run.systemInfo ?? '?',
          });
          if (variant.flashAttention && run.flashAttention === false) notes.push(`round ${round}, ${variant.label}: node-llama-cpp made the context without flash attention`);
        }
      }
    }
  } catch (err) {
    await session.release();
    throw err;
  } finally {
    await stopServer(server);
  }

  const raw = BATCHES.map((batch) => summarize(rawRuns.get(batch)!, (r) => r.endToEndTokensPerSecond));
  const serverResults = CLIENT_COUNTS.map((clients) => summarize(serverRuns.get(clients)!, (r) => r.tokensPerSecond));
  for (const r of raw) if (r.median.rowsWithEos > 0) notes.push(`raw batch ${r.median.batch}: ${r.median.rowsWithEos} row(s) produced EOS within ${NEW_TOKENS} tokens (the loop runs on regardless)`);
  const raw1 = raw.find((r) => r.median.batch === 1)!.median;
  const raw16 = raw.find((r) => r.median.batch === 16)!.median;
  if (JSON.stringify(raw1.tokens[0]) !== JSON.stringify(raw16.tokens[0])) notes.push('raw: row 0 greedy tokens differ between batch 1 and batch 16');

  let transformers: ModelReport['transformers'];
  if (skipTransformers || !transformersInfo) transformers = { measured: false, reason: 'skipped (--skip-transformers)' };
  else if (!transformersInfo.ok) {
    transformers = { measured: false, reason: transformersInfo.error ?? 'unknown error' };
    notes.push(`transformers.js not measured: ${transformers.reason.split('\n')[0]}`);
  } else {
    transformers = {
      measured: true,
      loadMs: transformersInfo.loadMs ?? NaN,
      tokenizerMatches: transformersInfo.tokenizerMatches ?? false,
      inputsFrom: transformersInfo.inputsFrom ?? '?',
      externalData: transformersInfo.externalData ?? '?',
      batches: BATCHES.map((batch) => summarize(transformersRuns.get(batch)!, (t) => t.endToEndTokensPerSecond)),
    };
    if (!transformers.tokenizerMatches) notes.push('transformers.js tokenizer gave other ids than ours; tensors from our ids were used');
  }

  let llamaCpp: LlamaCppReport;
  const measuredVariants = LLAMA_CPP_VARIANTS.filter((v) => llamaInfo.has(v.key) && [...llamaRuns.get(v.key)!.values()].every((runs) => runs.length > 0));
  if (!llamaModule || measuredVariants.length === 0) {
    llamaCpp = { measured: false, reason: llamaModule ? [...llamaFailed.values()][0] ?? 'no run finished' : llamaReason };
  } else {
    const rawTokens = new Map<number, number[][]>([
      [1, raw1.tokens],
      [16, raw16.tokens],
    ]);
    const agreement: IdAgreement[] = [];
    const variants = measuredVariants.map((variant): LlamaCppVariantReport => {
      const info = llamaInfo.get(variant.key)!;
      const batches = variant.batches.map((batch) => {
        const summary = summarize(llamaRuns.get(variant.key)!.get(batch)!, (r) => r.endToEndTokensPerSecond);
        const reference = rawTokens.get(batch);
        if (reference) agreement.push(idAgreement(variant.key, summary.median.tokens, reference));
        const { tokens, ...rest } = summary.median;
        return { median: { ...rest, rowsWithEos: tokens.filter((row) => row.some((id) => model.eosIds.has(id))).length }, runs: summary.runs };
      });
      return {
        key: variant.key,
        label: variant.label,
        type: variant.type,
        flashAttention: variant.flashAttention,
        flashAttentionUsed: info.flashAttention,
        threads: info.threads,
        loadMs: medianRun(info.loadMs, (ms) => ms),
        batches,
      };
    });
    // f32 should part from the raw loop only at near ties; q8_0 rounds its weights, so it parts anyway.
    for (const a of agreement) if (a.variant !== 'q8_0') await rankDifferences(session, model, prompts, rawTokens.get(a.batch)!, a);
    const first = llamaInfo.get(measuredVariants[0]!.key)!;
    llamaCpp = {
      measured: true,
      nodeLlamaCpp: NODE_LLAMA_CPP_VERSION,
      llamaCpp: first.llamaCpp,
      systemInfo: first.systemInfo,
      files: Object.fromEntries(Object.entries(ggufFiles).map(([type, path]) => [type, path.startsWith(ROOT) ? path.slice(ROOT.length) : path])),
      variants,
      agreement,
      loadBeforeRounds,
    };
  }
  await session.release();

  const one = serverResults.find((s) => s.median.clients === 1)!.median;
  const sixteen = serverResults.find((s) => s.median.clients === 16)!.median;
  const tjs16 = transformers.measured ? transformers.batches.find((t) => t.median.batch === 16)?.median : undefined;
  const llamaE2e = (key: LlamaCppVariant['key'], batch: number): number =>
    (llamaCpp.measured ? llamaCpp.variants.find((v) => v.key === key)?.batches.find((b) => b.median.batch === batch)?.median.endToEndTokensPerSecond : undefined) ?? NaN;
  const ratios = {
    ortserve1VsRawB1EndToEnd: one.tokensPerSecond / raw1.endToEndTokensPerSecond,
    ortserve1VsRawB1Decode: one.tokensPerSecond / raw1.decodeTokensPerSecond,
    ortserve16VsRawB16EndToEnd: sixteen.tokensPerSecond / raw16.endToEndTokensPerSecond,
    ortserve16VsRawB16Decode: sixteen.tokensPerSecond / raw16.decodeTokensPerSecond,
    ortserve16VsTransformersB16: tjs16 ? sixteen.tokensPerSecond / tjs16.endToEndTokensPerSecond : NaN,
    ortserve16ItlP95VsRawB16StepMs: sixteen.itlP95Ms / raw16.stepMs,
    ortserve1VsLlamaCppQ8B1: one.tokensPerSecond / llamaE2e('q8_0', 1),
    ortserve16VsLlamaCppQ8B16: sixteen.tokensPerSecond / llamaE2e('q8_0', 16),
    ortserve16VsLlamaCppF32FlashB16: sixteen.tokensPerSecond / llamaE2e('f32-fa', 16),
  };
  return {
    model: name,
    dir: dir.startsWith(ROOT) ? dir.slice(ROOT.length) : dir,
    serverFlags: ['--port', '0', '--host', '127.0.0.1', '--log-level', 'info', ...serverFlags],
    serverStartMs: server.startMs,
    prompts: prompts.map((p) => p.text),
    promptTokensSeenByServer,
    raw: raw.map(({ median: { tokens: _tokens, ...rest }, runs }) => ({ median: rest, runs })),
    server: serverResults,
    transformers,
    llamaCpp,
    ratios,
    rounds,
    notes,
    seconds: (performance.now() - modelStart) / 1000,
  };
}

/** The median run of a measurement (by `key`), and `key` of every run. */
interface Summary<T> {
  median: T;
  runs: number[];
}

function summarize<T>(runs: T[], key: (run: T) => number): Summary<T> {
  return { median: medianRun(runs, key), runs: runs.map(key) };
}

// ---------- output ----------

const fmt = (value: number | undefined, digits = 1): string => (value !== undefined && Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

function table(reports: ModelReport[]): string {
  const header = ['model', 'runner', 'batch/clients', 'prefill ms | TTFT p50/p95', 'step ms | ITL p50/p95', 'decode tok/s', 'e2e tok/s', 'e2e min-max', 'full rows', '/health p50/max ms'];
  const range = (runs: number[]) => `${fmt(Math.min(...runs))}-${fmt(Math.max(...runs))}`;
  const rows: string[][] = [];
  for (const r of reports) {
    for (const { median: raw, runs } of r.raw) {
      rows.push([r.model, 'raw onnxruntime loop', String(raw.batch), fmt(raw.prefillMs), `${fmt(raw.stepMs)} (p50 ${fmt(raw.stepP50Ms)})`, fmt(raw.decodeTokensPerSecond), fmt(raw.endToEndTokensPerSecond), range(runs), `${raw.batch - raw.rowsWithEos}/${raw.batch} no EOS`, '']);
    }
    for (const { median: s, runs } of r.server) {
      rows.push([r.model, 'ortserve (HTTP, SSE)', String(s.clients), `${fmt(s.ttftP50Ms, 0)} / ${fmt(s.ttftP95Ms, 0)}`, `${fmt(s.itlP50Ms)} / ${fmt(s.itlP95Ms)}`, '-', fmt(s.tokensPerSecond), range(runs), `${s.fullStreams}/${s.clients}`, `${fmt(s.healthP50Ms)} / ${fmt(s.healthMaxMs)}`]);
    }
    if (!r.transformers.measured) {
      const reason = r.transformers.reason.startsWith('skipped') ? 'skipped' : 'not measured (see notes)';
      rows.push([r.model, 'transformers.js generate', '-', reason, '', '', '', '', '', '']);
    } else {
      for (const { median: t, runs } of r.transformers.batches) {
        rows.push([r.model, 'transformers.js generate', String(t.batch), fmt(t.prefillMs), fmt((t.generateMs - t.prefillMs) / (t.newTokensPerRow - 1)), fmt(t.decodeTokensPerSecond), fmt(t.endToEndTokensPerSecond), range(runs), `${t.batch - t.rowsWithEos}/${t.batch} no EOS`, '']);
      }
    }
    if (!r.llamaCpp.measured) {
      const reason = r.llamaCpp.reason.startsWith('skipped') ? 'skipped' : 'not measured (see notes)';
      rows.push([r.model, 'llama.cpp', '-', reason, '', '', '', '', '', '']);
    } else {
      for (const variant of r.llamaCpp.variants) {
        for (const { median: l, runs } of variant.batches) {
          rows.push([r.model, variant.label, String(l.batch), fmt(l.prefillMs), `${fmt(l.stepMs)} (p50 ${fmt(l.stepP50Ms)})`, fmt(l.decodeTokensPerSecond), fmt(l.endToEndTokensPerSecond), range(runs), `${l.batch - l.rowsWithEos}/${l.batch} no EOS`, '']);
        }
      }
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i >= 2 && i <= 7 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  ')];
  let previous = '';
  for (const row of rows) {
    if (previous && row[0] !== previous) out.push('');
    previous = row[0]!;
    out.push(line(row));
  }
  out.push(
    '',
    'raw: prefill = one run over batch × 32 tokens; step = mean (p50) of the 63 decode steps; e2e = batch × 64 / (prefill + decode).',
    'ortserve: TTFT = request sent → first text chunk; ITL = gaps between text chunks within a stream; e2e = completion tokens (usage)',
    '  / wall time from the first request sent to the last stream finished; full rows = streams with 64 tokens and finish_reason length;',
    '  /health = GET /health answered one after another, 20 ms apart, while the streams run.',
    'transformers.js: prefill = generate(max_new_tokens 1) wall time; step = (generate(64) − that) / 63; e2e = batch × 64 / generate(64) time.',
    'llama.cpp: node-llama-cpp, the graph\'s weights as GGUF (bench/gguf.ts); the sequences in lock step, one decode per step for all;',
    '  prefill, step and e2e as for raw; KV cache f16 (llama.cpp\'s default); flash-attn = the context made with flashAttention.',
    'Each runner is its own process (raw: this one), and on this VM the same loop can run ~20% faster or slower from one process',
    'to the next; see the min-max column and treat ratios within about ±0.2 of 1 as ties.',
    '',
  );
  for (const r of reports) {
    if (!r.llamaCpp.measured) continue;
    const f32 = r.llamaCpp.agreement.filter((a) => a.variant === 'f32');
    const others = r.llamaCpp.agreement.filter((a) => a.variant !== 'f32');
    out.push(`${r.model}: llama.cpp f32 greedy ids equal to the raw loop's: ${f32.map(describeAgreement).join('; ') || 'n/a'}`);
    if (others.length > 0) out.push(`  (for reference: ${others.map((a) => `${a.variant} ${describeAgreement(a)}`).join('; ')})`);
  }
  if (reports.some((r) => r.llamaCpp.measured)) out.push('');
  const ratioRows: [string, keyof ModelReport['ratios'] & string][] = [
    ['ortserve 1 client / raw batch 1, end-to-end', 'ortserve1VsRawB1EndToEnd'],
    ['ortserve 1 client / raw batch 1, decode-only', 'ortserve1VsRawB1Decode'],
    ['ortserve 16 clients / raw batch 16, end-to-end', 'ortserve16VsRawB16EndToEnd'],
    ['ortserve 16 clients / raw batch 16, decode-only', 'ortserve16VsRawB16Decode'],
    ['ortserve 16 clients / transformers.js batch 16', 'ortserve16VsTransformersB16'],
    ['ortserve 16-client ITL p95 / raw b16 step ms', 'ortserve16ItlP95VsRawB16StepMs'],
    ['ortserve 1 client / llama.cpp q8_0 batch 1', 'ortserve1VsLlamaCppQ8B1'],
    ['ortserve 16 clients / llama.cpp q8_0 batch 16', 'ortserve16VsLlamaCppQ8B16'],
    ['ortserve 16 clients / llama.cpp f32 flash-attn batch 16', 'ortserve16VsLlamaCppF32FlashB16'],
  ];
  const labelWidth = Math.max(...ratioRows.map(([label]) => label.length)) + 2;
  out.push('ratios'.padEnd(labelWidth + 2) + reports.map((r) => r.model.padStart(9)).join(''));
  for (const [label, key] of ratioRows) out.push(`  ${label.padEnd(labelWidth)}${reports.map((r) => fmt(r.ratios[key], 2).padStart(9)).join('')}`);
  return out.join('\n');
}

// ---------- main ----------

const USAGE = 'usage: npm run bench [-- --model-set default|124m|135m|all] [--skip-transformers] [--skip-llama-cpp] [--server-flags="--prefill-chunk 32 ..."]\n';
let values: { 'model-set'?: string; 'skip-transformers'?: boolean; 'skip-llama-cpp'?: boolean; 'server-flags'?: string };
try {
  ({ values } = parseArgs({
    options: {
      'model-set': { type: 'string', default: 'all' },
      'skip-transformers': { type: 'boolean', default: false },
      'skip-llama-cpp': { type: 'boolean', default: false },
      'server-flags': { type: 'string', default: '' },
    },
  }));
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n${USAGE}`);
  process.exit(2);
}
const set = values['model-set'] ?? 'all';
if (set !== 'all' && !(set in MODELS)) {
  process.stderr.write(USAGE);
  process.exit(2);
}
const names: ModelSet[] = set === 'all' ? ['default', '124m'] : [set as ModelSet];
const serverFlags = (values['server-flags'] ?? '').split(/\s+/).filter(Boolean);

const runStart = performance.now();
const reports: ModelReport[] = [];
const options: BenchOptions = { skipTransformers: values['skip-transformers'] ?? false, skipLlamaCpp: values['skip-llama-cpp'] ?? false, serverFlags };
for (const name of names) reports.push(await benchModel(name, options));
const totalSeconds = (performance.now() - runStart) / 1000;

const versions = {
  node: process.version,
  onnxruntimeNode: (readJson(join(ROOT, 'node_modules/onnxruntime-node/package.json')).version as string | undefined) ?? '?',
  transformersJs: (readJson(join(ROOT, 'node_modules/@huggingface/transformers/package.json')).version as string | undefined) ?? '?',
  nodeLlamaCpp: reports.some((r) => r.llamaCpp.measured) ? NODE_LLAMA_CPP_VERSION : undefined,
  llamaCpp: reports.map((r) => (r.llamaCpp.measured ? r.llamaCpp.llamaCpp : undefined)).find((v) => v !== undefined),
};
const cpuModel = cpus()[0]?.model ?? '?';
const summary = [
  `ortserve bench — ${new Date().toISOString()} — ${THREADS} cores (${cpuModel}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${versions.node}, onnxruntime-node ${versions.onnxruntimeNode}, transformers.js ${versions.transformersJs}` +
    (versions.nodeLlamaCpp ? `, node-llama-cpp ${versions.nodeLlamaCpp} (${versions.llamaCpp ?? '?'})` : ''),
  `${PROMPT_TOKENS}-token prompts (different per row, same length), ${NEW_TOKENS} new tokens, greedy; raw/transformers.js intraOpNumThreads ${THREADS}, graphOptimizationLevel all; llama.cpp threads ${THREADS}`,
  `ortserve flags: ${reports[0]?.serverFlags.join(' ')} (engine defaults otherwise: --max-batch 16, --prefill-chunk 16, --threads 0 = one per core)`,
  `rounds of raw → ortserve → transformers.js → llama.cpp: ${reports.map((r) => `${r.rounds} for ${r.model}`).join(', ')}; each row is the round with the median e2e tok/s (min-max over rounds shown); TTFT/ITL percentiles are over that round's streams`,
  '',
  table(reports),
];
const notes = reports.flatMap((r) => r.notes.map((n) => `  ${r.model}: ${n}`));
summary.push('', notes.length > 0 ? `notes:\n${notes.join('\n')}` : 'notes: none (every stream and row ran the full 64 tokens)');
summary.push(`\ntotal run time: ${totalSeconds.toFixed(1)} s (${reports.map((r) => `${r.model} ${r.seconds.toFixed(1)} s`).join(', ')})`);
console.log(summary.join('\n'));

const report = {
  date: new Date().toISOString(),
  machine: { cores: THREADS, cpu: cpuModel, memoryGiB: totalmem() / 2 ** 30 },
  versions,
  promptTokens: PROMPT_TOKENS,
  newTokens: NEW_TOKENS,
  totalSeconds,
  results: reports,
};
mkdirSync(join(BENCH, 'results'), { recursive: true });
const stamp = report.date.replace(/[:.]/g, '-');
const json = JSON.stringify(report, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2);
writeFileSync(join(BENCH, 'results', `${stamp}.json`), json);
writeFileSync(join(BENCH, 'results', 'latest.json'), json);
console.log(`wrote bench/results/${stamp}.json and bench/results/latest.json`);
