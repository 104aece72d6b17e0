/**
 * llama.cpp for the bench: node-llama-cpp installed on demand under bench/.llama-cpp/ (git-ignored,
 * never a dependency of the project), each run in a child process (llama-cpp-child.ts), a look at
 * the machine's load around the runs (llama.cpp's fixed thread count suffers badly from other work),
 * and the runner's rounds and report.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type * as ort from 'onnxruntime-node';
import {
  busyCores,
  cpuTimes,
  fmt,
  medianRun,
  NEW_TOKENS,
  ROOT,
  runChild,
  summarize,
  THREADS,
  type LlamaCppBatchResult,
  type LlamaCppChildResult,
  type LlamaCppJob,
  type Summary,
} from './common.js';
import { idAgreement, rankDifferences, type IdAgreement } from './llama-cpp-agreement.js';
import type { ModelInfo, Prompt } from './model-sets.js';
import { ensureGguf, GGUF_TYPES, type GgufType } from '../tools/gguf.js';

export const NODE_LLAMA_CPP_VERSION = '3.22.1';
export const LLAMA_CPP_DIR = join(ROOT, 'bench/.llama-cpp');

/** One llama.cpp configuration the bench measures. */
export interface LlamaCppVariant {
  key: 'f32' | 'q8_0' | 'q4_0' | 'f32-fa';
  label: string;
  type: GgufType;
  flashAttention: boolean;
  batches: readonly number[];
}

export const LLAMA_CPP_VARIANTS: readonly LlamaCppVariant[] = [
  { key: 'f32', label: 'llama.cpp f32', type: 'f32', flashAttention: false, batches: [1, 16] },
  { key: 'q8_0', label: 'llama.cpp q8_0', type: 'q8_0', flashAttention: false, batches: [1, 16] },
  { key: 'q4_0', label: 'llama.cpp q4_0', type: 'q4_0', flashAttention: false, batches: [1, 16] },
  { key: 'f32-fa', label: 'llama.cpp f32 flash-attn', type: 'f32', flashAttention: true, batches: [16] },
];

/** node-llama-cpp's prebuilt-binary package for this machine. */
function binaryPackage(): string {
  const platform = process.platform === 'darwin' ? 'mac' : process.platform === 'win32' ? 'win' : 'linux';
  const metal = process.platform === 'darwin' && process.arch === 'arm64' ? '-metal' : '';
  return `@node-llama-cpp/${platform}-${process.arch}${metal}`;
}

const installedVersion = (name: string): string | undefined => {
  const file = join(LLAMA_CPP_DIR, 'node_modules', name, 'package.json');
  return existsSync(file) ? ((JSON.parse(readFileSync(file, 'utf8')) as { version?: string }).version ?? undefined) : undefined;
};

/**
 * node-llama-cpp's entry module, installed first (with npm, into bench/.llama-cpp/) when it is
 * missing or another version. `--omit=optional` skips the other platforms' binaries (≈ 620 MiB) that
 * node-llama-cpp lists as optional dependencies; this platform's is a direct dependency instead.
 * `--ignore-scripts`: its postinstall step would only look for (or build) a binary.
 */
export async function ensureNodeLlamaCpp(log: (message: string) => void): Promise<string> {
  const entry = join(LLAMA_CPP_DIR, 'node_modules/node-llama-cpp/dist/index.js');
  const binary = binaryPackage();
  if (existsSync(entry) && installedVersion('node-llama-cpp') === NODE_LLAMA_CPP_VERSION && installedVersion(binary) === NODE_LLAMA_CPP_VERSION) return entry;
  mkdirSync(LLAMA_CPP_DIR, { recursive: true });
  const manifest = {
    name: 'ortserve-bench-llama-cpp',
    private: true,
    description: 'node-llama-cpp for bench/run.ts only; installed by bench/llama-cpp.ts',
    type: 'module',
    dependencies: { 'node-llama-cpp': NODE_LLAMA_CPP_VERSION, [binary]: NODE_LLAMA_CPP_VERSION },
  };
  writeFileSync(join(LLAMA_CPP_DIR, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  log(`installing node-llama-cpp ${NODE_LLAMA_CPP_VERSION} and ${binary} into bench/.llama-cpp/…`);
  const args = ['install', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund'];
  await new Promise<void>((resolveDone, reject) => {
    const child = spawn(process.platform === 'win32' ? 'npm.cmd' : 'npm', args, { cwd: LLAMA_CPP_DIR, stdio: ['ignore', process.stderr, process.stderr] });
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolveDone() : reject(new Error(`npm ${args.join(' ')} exited with ${code} (in bench/.llama-cpp/)`))));
  });
  if (!existsSync(entry)) throw new Error(`npm install left no ${entry}`);
  return entry;
}

// ---------- the machine's load ----------

export interface MachineLoad {
  /** Cores busy over the last second sampled (from /proc/stat), or the 1-minute load average where /proc/stat is missing. */
  busyCores: number;
  source: '/proc/stat' | 'loadavg';
  /** Seconds waited for the machine to go quiet. */
  waitedSeconds: number;
}

/** The bench's own processes are idle while this samples; more than this many busy cores is someone else's work. */
export const BUSY_CORES = 0.25;

/**
 * Samples the machine's CPU use over one second, up to `maxSeconds` times, until fewer than
 * BUSY_CORES cores are busy; returns the last sample.
 */
export async function waitForQuietMachine(maxSeconds = 5): Promise<MachineLoad> {
  if (!cpuTimes()) return { busyCores: loadavg()[0]!, source: 'loadavg', waitedSeconds: 0 };
  let busy = Infinity;
  let waited = 0;
  while (waited < maxSeconds) {
    const from = cpuTimes()!;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    busy = busyCores(from, cpuTimes()!);
    waited++;
    if (busy < BUSY_CORES) break;
  }
  return { busyCores: busy, source: '/proc/stat', waitedSeconds: waited };
}

// ---------- the child process ----------

/** One llama.cpp child process (llama-cpp-child.ts) over `job`. */
export function runLlamaCpp(job: LlamaCppJob): Promise<LlamaCppChildResult> {
  return runChild<LlamaCppChildResult>('llama-cpp-child.ts', job, 600_000);
}

// ---------- the bench's rounds ----------

/** How one variant's greedy ids at one batch size agree with the raw loop's. */
export interface VariantAgreement extends IdAgreement {
  variant: LlamaCppVariant['key'];
}

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

export type LlamaCppReport =
  | { measured: false; reason: string }
  | {
      measured: true;
      nodeLlamaCpp: string;
      llamaCpp: string;
      systemInfo: string;
      files: Partial<Record<GgufType, string>>;
      variants: LlamaCppVariantReport[];
      agreement: VariantAgreement[];
      /** The machine's load before each round's llama.cpp runs. */
      loadBeforeRounds: (MachineLoad & { round: number })[];
    };

interface VariantInfo {
  loadMs: number[];
  flashAttention: boolean;
  threads: number;
  llamaCpp: string;
  systemInfo: string;
}

/** llama.cpp's runs of one model, round by round, variant by variant; what went amiss goes to `notes`. */
export class LlamaCppRounds {
  /** node-llama-cpp's entry module, once prepared. */
  private module: string | undefined;
  private reason = 'skipped (--skip-llama-cpp)';
  private readonly files: Partial<Record<GgufType, string>> = {};
  private readonly runs = new Map(LLAMA_CPP_VARIANTS.map((v) => [v.key, new Map<number, LlamaCppBatchResult[]>(v.batches.map((b) => [b, []]))]));
  private readonly info = new Map<LlamaCppVariant['key'], VariantInfo>();
  private readonly failed = new Map<LlamaCppVariant['key'], string>();
  private readonly loadBeforeRounds: (MachineLoad & { round: number })[] = [];

  constructor(private readonly notes: string[]) {}

  /** Whether it runs: prepared, and neither skipped nor failed to prepare. */
  get active(): boolean {
    return this.module !== undefined;
  }

  /** node-llama-cpp (installed on first use) and the model's GGUF files (converted on first use). */
  async prepare(name: string, dir: string, log: (message: string) => void): Promise<void> {
    try {
      this.module = await ensureNodeLlamaCpp(log);
      for (const type of GGUF_TYPES) {
        const { path, converted } = await ensureGguf(dir, type);
        if (converted) log(`${name}: converted to ${converted.type} GGUF in ${(converted.ms / 1000).toFixed(1)} s: ${path.slice(ROOT.length)}`);
        this.files[type] = path;
      }
    } catch (err) {
      this.module = undefined;
      this.reason = (err as Error).message;
      this.notes.push(`llama.cpp not measured: ${this.reason.split('\n')[0]}`);
    }
  }

  async round(round: number, prompts: Prompt[]): Promise<void> {
    if (!this.module) return;
    // llama.cpp's fixed thread count collapses when another process takes a core: look first.
    const load = await waitForQuietMachine();
    this.loadBeforeRounds.push({ round, ...load });
    if (load.busyCores >= BUSY_CORES) {
      this.notes.push(`round ${round}, llama.cpp: ${fmt(load.busyCores, 2)} of ${THREADS} cores busy with other work before the round (${load.source}, after waiting ${load.waitedSeconds} s)`);
    }
    for (const variant of LLAMA_CPP_VARIANTS) {
      if (this.failed.has(variant.key)) continue;
      const run = await runLlamaCpp({
        module: this.module,
        modelPath: this.files[variant.type]!,
        prompts: prompts.map((p) => p.ids),
        batches: [...variant.batches],
        newTokens: NEW_TOKENS,
        threads: THREADS,
        flashAttention: variant.flashAttention,
      });
      if (!run.ok) {
        this.failed.set(variant.key, run.error ?? 'unknown error');
        this.notes.push(`round ${round}, ${variant.label} failed: ${(run.error ?? 'unknown error').split('\n')[0]}`);
        continue;
      }
      for (const r of run.results) {
        this.runs.get(variant.key)!.get(r.batch)!.push(r);
        if (r.otherBusyCores !== undefined && r.otherBusyCores >= BUSY_CORES) {
          this.notes.push(`round ${round}, ${variant.label} batch ${r.batch}: other processes kept ${fmt(r.otherBusyCores, 2)} of ${THREADS} cores busy while it ran`);
        }
      }
      const info = this.info.get(variant.key);
      this.info.set(variant.key, {
        loadMs: [...(info?.loadMs ?? []), run.loadMs ?? NaN],
        flashAttention: run.flashAttention ?? false,
        threads: run.threads ?? NaN,
        llamaCpp: run.llamaCpp ?? '?',
        systemInfo: run.systemInfo ?? '?',
      });
      if (variant.flashAttention && run.flashAttention === false) this.notes.push(`round ${round}, ${variant.label}: node-llama-cpp made the context without flash attention`);
    }
  }

  /**
   * The median round (by e2e tokens/s) of each variant and batch size, and how its greedy ids agree
   * with the raw loop's (`rawTokens` by batch size; `session` ranks where f32's part from them).
   */
  async report(session: ort.InferenceSession, model: ModelInfo, prompts: Prompt[], rawTokens: Map<number, number[][]>): Promise<LlamaCppReport> {
    const measuredVariants = LLAMA_CPP_VARIANTS.filter((v) => this.info.has(v.key) && [...this.runs.get(v.key)!.values()].every((runs) => runs.length > 0));
    if (!this.module || measuredVariants.length === 0) {
      return { measured: false, reason: this.module ? [...this.failed.values()][0] ?? 'no run finished' : this.reason };
    }
    const agreement: VariantAgreement[] = [];
    const variants = measuredVariants.map((variant): LlamaCppVariantReport => {
      const info = this.info.get(variant.key)!;
      const batches = variant.batches.map((batch) => {
        const summary = summarize(this.runs.get(variant.key)!.get(batch)!, (r) => r.endToEndTokensPerSecond);
        const reference = rawTokens.get(batch);
        if (reference) agreement.push({ variant: variant.key, ...idAgreement(summary.median.tokens, reference) });
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
    // f32 should part from the raw loop only at near ties; q8_0 and q4_0 round their weights, so they part anyway.
    for (const a of agreement) if (a.variant === 'f32' || a.variant === 'f32-fa') await rankDifferences(session, model, prompts, rawTokens.get(a.batch)!, a);
    const first = this.info.get(measuredVariants[0]!.key)!;
    return {
      measured: true,
      nodeLlamaCpp: NODE_LLAMA_CPP_VERSION,
      llamaCpp: first.llamaCpp,
      systemInfo: first.systemInfo,
      files: Object.fromEntries(Object.entries(this.files).map(([type, path]) => [type, path.startsWith(ROOT) ? path.slice(ROOT.length) : path])),
      variants,
      agreement,
      loadBeforeRounds: this.loadBeforeRounds,
    };
  }
}
