/**
 * llama.cpp for the bench: node-llama-cpp installed on demand under bench/.llama-cpp/ (git-ignored,
 * never a dependency of the project), each run in a child process (llama-cpp-child.ts), and a look at
 * the machine's load around the runs (llama.cpp's fixed thread count suffers badly from other work).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { busyCores, cpuTimes, ROOT, runChild, type LlamaCppChildResult, type LlamaCppJob } from './common.js';
import type { GgufType } from './gguf.js';

export const NODE_LLAMA_CPP_VERSION = '3.22.1';
export const LLAMA_CPP_DIR = join(ROOT, 'bench/.llama-cpp');

/** One llama.cpp configuration the bench measures. */
export interface LlamaCppVariant {
  key: 'f32' | 'q8_0' | 'f32-fa';
  label: string;
  type: GgufType;
  flashAttention: boolean;
  batches: readonly number[];
}

export const LLAMA_CPP_VARIANTS: readonly LlamaCppVariant[] = [
  { key: 'f32', label: 'llama.cpp f32', type: 'f32', flashAttention: false, batches: [1, 16] },
  { key: 'q8_0', label: 'llama.cpp q8_0', type: 'q8_0', flashAttention: false, batches: [1, 16] },
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
