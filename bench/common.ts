/** Types and helpers shared by bench/run.ts, bench/soak.ts and the transformers.js and llama.cpp child processes. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

export const PROMPT_TOKENS = 32;
export const NEW_TOKENS = 64;
/** Threads of the raw loop, transformers.js and llama.cpp: one per core. */
export const THREADS = availableParallelism();

/** What bench/run.ts hands the transformers.js child (as JSON in argv[2]). */
export interface TransformersJob {
  /** Folder that holds `<modelName>/` in transformers.js's layout (config at the top, graph under onnx/). */
  localModelPath: string;
  modelName: string;
  /** Prompt ids (each PROMPT_TOKENS long), as our tokenizer gives them. */
  prompts: number[][];
  /** The same prompts as text, tokenized again by transformers.js's own tokenizer as a check. */
  texts: string[];
  batches: number[];
  /** Runs per batch size; the run with the median end-to-end tokens/s is reported. */
  repeats: number;
  newTokens: number;
  threads: number;
}

export interface TransformersBatchResult {
  batch: number;
  /** Wall time of `generate` with max_new_tokens 1 (prefill plus one arg-max), ms. */
  prefillMs: number;
  /** Wall time of `generate` with max_new_tokens NEW_TOKENS, ms. */
  generateMs: number;
  /** New tokens per row that `generate` returned (fewer than asked if every row hit EOS). */
  newTokensPerRow: number;
  /** Rows whose new tokens contain an EOS id. */
  rowsWithEos: number;
  /** (batch × new tokens) / generateMs: prefill included. */
  endToEndTokensPerSecond: number;
  /** (batch × (new tokens − 1)) / (generateMs − prefillMs): an estimate of decode alone. */
  decodeTokensPerSecond: number;
}

export interface TransformersChildResult {
  ok: boolean;
  error?: string;
  loadMs?: number;
  /** Whether transformers.js's tokenizer (padding side left) gave the same ids as ours. */
  tokenizerMatches?: boolean;
  /** How the padded batch was built: its tokenizer, or tensors from our ids when that failed. */
  inputsFrom?: string;
  externalData?: string;
  results: TransformersBatchResult[];
}

/** What bench/run.ts hands the llama.cpp child (as JSON in argv[2]). */
export interface LlamaCppJob {
  /** node-llama-cpp's entry module, installed under bench/.llama-cpp/. */
  module: string;
  /** The GGUF file (tools/gguf.ts). */
  modelPath: string;
  /** Prompt ids (each PROMPT_TOKENS long), fed as ids: llama.cpp's tokenizer is not used. */
  prompts: number[][];
  batches: number[];
  newTokens: number;
  /** The context's threads (exact: the Llama instance is made with maxThreads 0). */
  threads: number;
  flashAttention: boolean;
}

/** What a greedy loop over a batch measured (the raw loop's and llama.cpp's). */
export interface LoopTimes {
  batch: number;
  /** One decode of batch × PROMPT_TOKENS tokens, to the first new token of every sequence. */
  prefillMs: number;
  /** Mean of the new tokens − 1 decode steps (one token per sequence each). */
  stepMs: number;
  stepP50Ms: number;
  decodeMs: number;
  decodeTokensPerSecond: number;
  /** (batch × new tokens) / (prefill + decode). */
  endToEndTokensPerSecond: number;
}

export interface LlamaCppBatchResult extends LoopTimes {
  /**
   * Cores kept busy by other processes during prefill and decode: the machine's busy time
   * (/proc/stat) less this process's own CPU time, over the wall time; undefined without /proc/stat.
   */
  otherBusyCores?: number;
  /** Greedy tokens of each sequence. */
  tokens: number[][];
}

export interface LlamaCppChildResult {
  ok: boolean;
  error?: string;
  loadMs?: number;
  /** llama.cpp's release that node-llama-cpp's binary was built from. */
  llamaCpp?: string;
  /** Whether the context was made with flash attention, as node-llama-cpp reports it. */
  flashAttention?: boolean;
  threads?: number;
  systemInfo?: string;
  results: LlamaCppBatchResult[];
}

/** The line prefix of the child's one result line on stdout. */
export const RESULT_PREFIX = 'BENCH_RESULT ';

export const percentile = (values: readonly number[], p: number): number => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest-rank percentile.
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
};

export const mean = (values: readonly number[]): number =>
  values.length === 0 ? NaN : values.reduce((sum, v) => sum + v, 0) / values.length;

/** The run with the median value of `key` (the lower middle one for an even count). */
export function medianRun<T>(runs: readonly T[], key: (run: T) => number): T {
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** The median run of a measurement (by `key`), and `key` of every run. */
export interface Summary<T> {
  median: T;
  runs: number[];
}

export function summarize<T>(runs: T[], key: (run: T) => number): Summary<T> {
  return { median: medianRun(runs, key), runs: runs.map(key) };
}

/** A number for the printed table and notes: `digits` decimals, or n/a. */
export const fmt = (value: number | undefined, digits = 1): string => (value !== undefined && Number.isFinite(value) ? value.toFixed(digits) : 'n/a');

/** Prompt text: short sentences of a children's story, as the default model was trained on. */
export const STORY = [
  'Once upon a time, there was a little girl named Lily.',
  'She lived in a small house near the woods with her mom, her dad and a big brown dog called Max.',
  'Every morning Lily and Max ran down the hill to the river to look at the fish.',
  'One day they found a shiny red stone under an old tree.',
  'Lily wanted to keep it, but Max barked at it and wagged his tail.',
  'Lily laughed and put the stone in her pocket.',
  'On the way home, they met a boy named Tom who was sad because he had lost his kite.',
  'Lily said, "Do not be sad, Tom. We will help you find it."',
  'They looked in the bushes, behind the fence and up in the trees.',
  'At last Max found the kite stuck in a tall green hedge.',
  'Tom was very happy and gave Lily a big hug.',
  'The three friends flew the kite together in the park until the sun went down.',
  'When Lily got home, her mom made warm soup and fresh bread.',
  'Lily told her mom and dad about the stone, the kite and her new friend.',
  'Her dad smiled and said that being kind is the best thing a person can do.',
  'That night Lily put the red stone on the shelf next to her bed.',
  'In her dream, the stone began to glow, and a tiny bird flew out of it.',
  'The bird said, "Thank you for being a good friend. I will sing for you every morning."',
  'The next day, Lily heard a sweet song outside her window.',
  'She ran to the garden and saw the tiny bird sitting on a flower.',
  'Max jumped and barked, but the bird was not scared.',
  'It flew around Lily three times and then landed on her hand.',
  'Lily and the bird became best friends, and they played in the garden every day.',
  'In the summer, Lily, Tom and Max went to the beach with a big blue bucket.',
  'They built a sand castle with a tall tower and a deep moat.',
  'A small crab walked into the moat, and Tom laughed so hard that he fell over.',
  'When the waves came, the castle fell down, but the friends did not mind.',
  'They knew they could build another one tomorrow.',
  'In the fall, the leaves turned red and yellow and fell from the trees.',
  'Lily and Max jumped into a big pile of leaves in the yard.',
  'Her mom took a picture and put it on the wall in the kitchen.',
  'Lily looked at the picture every day and remembered how much fun they had.',
];

// ---------- the machine's load ----------

export interface CpuTimes {
  /** Clock ticks of all CPUs doing work (not idle, not waiting for I/O). */
  busy: number;
  total: number;
}

/** The first line of /proc/stat (all CPUs); undefined where there is none. */
export function cpuTimes(): CpuTimes | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    return { busy: total - fields[3]! - fields[4]!, total };
  } catch {
    return undefined;
  }
}

/** Cores busy on average between two /proc/stat readings. */
export const busyCores = (from: CpuTimes, to: CpuTimes): number => (to.total > from.total ? ((to.busy - from.busy) / (to.total - from.total)) * availableParallelism() : 0);

// ---------- weights ----------

/** The CPU's features that decide which kernels run fastest, as /proc/cpuinfo names them. */
export function cpuFeatures(): string {
  const flags = (existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '' : '').split(' ');
  const present = ['avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_tile'].filter((flag) => flags.includes(flag));
  return present.join(', ') || 'no AVX2';
}

/** Writes a bench model's model.onnx.data from its weights-manifest.json (bench/make-weights.mjs) when it is missing. */
export function ensureWeights(dir: string): Promise<void> {
  if (!existsSync(join(dir, 'weights-manifest.json'))) return Promise.resolve();
  return new Promise((resolveDone, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bench/make-weights.mjs'), dir], { stdio: 'inherit' });
    child.once('exit', (code) => (code === 0 ? resolveDone() : reject(new Error(`make-weights.mjs exited with ${code}`))));
  });
}

// ---------- ortserve as a child process ----------

export interface ServerHandle {
  child: ChildProcessWithoutNullStreams;
  url: string;
  startMs: number;
  /** Resolves with the exit code (null when a signal ended it: see child.signalCode). */
  exited: Promise<number | null>;
  /** The fields of the server's "model ready" log line (model id, contextLength, …). */
  ready: Record<string, unknown>;
  /** The last few KiB the server wrote to stderr. */
  stderrTail(): string;
}

export interface StartServerOptions {
  /**
   * Called with every JSON log line after "model ready". Without it, lines at level error or above
   * are copied to this process's stderr.
   */
  onLog?: (entry: Record<string, unknown>, line: string) => void;
  /** How long to wait for the "model ready" line. */
  readyTimeoutMs?: number;
  /** The checkout whose server runs (another commit's, to compare); default this one. */
  root?: string;
}

const STDERR_TAIL_CHARS = 16_384;

/**
 * Starts `bin/ortserve.js --model <modelDir>` on a free port of 127.0.0.1 (port 0: the server picks one
 * and logs its URL) and resolves once it logs "model ready".
 */
export function startServer(modelDir: string, extraFlags: readonly string[], options: StartServerOptions = {}): Promise<ServerHandle> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 180_000;
  const root = options.root ?? ROOT;
  const args = [join(root, 'bin/ortserve.js'), '--model', modelDir, '--port', '0', '--host', '127.0.0.1', '--log-level', 'info', ...extraFlags];
  const started = performance.now();
  // Only the flags configure it: ORTSERVE_* and PORT from the caller's environment are left out.
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ORTSERVE_') && key !== 'PORT'));
  const child = spawn(process.execPath, args, { cwd: root, env });
  const exited = new Promise<number | null>((resolveExit) => child.once('exit', (code) => resolveExit(code)));
  let stderr = '';
  child.stderr.on('data', (data: Buffer) => {
    stderr = (stderr + data.toString()).slice(-STDERR_TAIL_CHARS);
  });
  return new Promise((resolveReady, reject) => {
    let isReady = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server: no "model ready" log line within ${readyTimeoutMs / 1000} s`));
    }, readyTimeoutMs);
    // Keep reading stdout (the request logs) for the server's whole life so it never blocks on a full pipe.
    createInterface({ input: child.stdout }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      if (!isReady && entry.msg === 'model ready' && typeof entry.url === 'string') {
        isReady = true;
        clearTimeout(timer);
        resolveReady({ child, url: entry.url, startMs: performance.now() - started, exited, ready: entry, stderrTail: () => stderr });
      } else if (options.onLog) {
        options.onLog(entry, line);
      } else if (typeof entry.level === 'number' && entry.level >= 50) {
        process.stderr.write(`server: ${line}\n`);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before it was ready: ${stderr.slice(-2000)}`));
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export async function stopServer(server: ServerHandle, graceMs = 10_000): Promise<void> {
  server.child.kill('SIGTERM');
  const killer = setTimeout(() => server.child.kill('SIGKILL'), graceMs);
  await server.exited;
  clearTimeout(killer);
}

// ---------- server-sent events ----------

/** The payload of one `data: ` event, with the time its bytes arrived (performance.now()). */
export interface SseData {
  data: string;
  receivedAt: number;
}

/** The `data: ` payloads of an OpenAI-style event stream (events separated by a blank line), in order. */
export async function* sseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseData> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const bytes of body) {
    const receivedAt = performance.now();
    buffer += decoder.decode(bytes, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) !== -1) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (event.startsWith('data: ')) yield { data: event.slice(6), receivedAt };
    }
  }
}

/** A result the child process did not give: the end of what it printed instead. */
export interface ChildFailure {
  ok: false;
  error: string;
  results: [];
}

/**
 * Runs the TypeScript script `script` (under bench/) as a child process with `job` as its argument
 * and reads the one line it prints after RESULT_PREFIX; killed after `timeoutMs`.
 */
export function runChild<Result>(script: string, job: unknown, timeoutMs: number): Promise<Result | ChildFailure> {
  return new Promise((resolveResult) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench', script), JSON.stringify(job)], { cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => (stdout += data.toString()));
    child.stderr.on('data', (data: Buffer) => (stderr = (stderr + data.toString()).slice(-16_384)));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const line = stdout.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      if (line) resolveResult(JSON.parse(line.slice(RESULT_PREFIX.length)) as Result);
      else resolveResult({ ok: false, error: `child exited with ${code ?? signal}: ${(stderr || stdout).slice(-1500)}`, results: [] });
    });
  });
}

/** A greedy loop's times from its prefill and the times of its decode steps, `newTokens` per sequence in all. */
export function loopTimes(batch: number, prefillMs: number, stepTimes: readonly number[], newTokens: number): LoopTimes {
  const decodeMs = stepTimes.reduce((a, b) => a + b, 0);
  return {
    batch,
    prefillMs,
    stepMs: decodeMs / stepTimes.length,
    stepP50Ms: percentile(stepTimes, 50),
    decodeMs,
    decodeTokensPerSecond: (batch * stepTimes.length) / (decodeMs / 1000),
    endToEndTokensPerSecond: (batch * newTokens) / ((prefillMs + decodeMs) / 1000),
  };
}

