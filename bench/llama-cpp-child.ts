/**
 * llama.cpp (through node-llama-cpp) on one GGUF file, run by bench/run.ts as a child process so that
 * its native library stays out of the bench process. node-llama-cpp is not a dependency of the
 * project: bench/llama-cpp.ts installs it under bench/.llama-cpp/ and passes its entry module.
 *
 *   node --import tsx bench/llama-cpp-child.ts '<LlamaCppJob as JSON>'
 * Prints one line `BENCH_RESULT {LlamaCppChildResult}` on stdout.
 *
 * Greedy decoding of all sequences in lock step: each step queues one token on every sequence
 * (`controlledEvaluate`) in the same tick, so node-llama-cpp puts them in one batch, one decode.
 */
import { pathToFileURL } from 'node:url';
import { busyCores, cpuTimes, loopTimes, RESULT_PREFIX, type LlamaCppBatchResult, type LlamaCppChildResult, type LlamaCppJob } from './common.js';

// The part of node-llama-cpp 3.22's API used here (its types are not installed with the project).
interface EvaluateOptions {
  generateNext?: { token?: boolean; options?: { temperature?: number } };
}
type EvaluateItem = number | [number, EvaluateOptions];
interface LlamaSequence {
  controlledEvaluate(input: EvaluateItem[]): Promise<({ next: { token?: number | null } } | undefined)[]>;
  clearHistory(): Promise<void>;
  dispose(): void;
}
interface LlamaContext {
  getSequence(): LlamaSequence;
  readonly flashAttention: 'auto' | boolean;
  readonly currentThreads: number;
  dispose(): Promise<void>;
}
interface LlamaModel {
  createContext(options: {
    sequences: number;
    contextSize: number;
    batchSize: number;
    threads: number;
    flashAttention: boolean;
    failedCreationRemedy: false;
  }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
interface Llama {
  loadModel(options: { modelPath: string; gpuLayers: number }): Promise<LlamaModel>;
  readonly llamaCppRelease: { readonly repo: string; readonly release: string };
  readonly systemInfo: string;
  dispose(): Promise<void>;
}
interface NodeLlamaCpp {
  getLlama(options: { gpu: false; build: 'never'; maxThreads: number; logLevel: string; progressLogs: boolean }): Promise<Llama>;
}

const GREEDY: EvaluateOptions = { generateNext: { token: true, options: { temperature: 0 } } };

/** Evaluates `tokens` on each sequence (all queued in this tick) and returns the greedy next token of each. */
async function step(sequences: LlamaSequence[], tokens: number[][]): Promise<number[]> {
  const outputs = await Promise.all(sequences.map((sequence, row) => sequence.controlledEvaluate(tokens[row]!.map((token, i, all) => (i === all.length - 1 ? [token, GREEDY] : token)))));
  return outputs.map((output, row) => {
    const token = output[tokens[row]!.length - 1]?.next.token;
    if (typeof token !== 'number') throw new Error(`sequence ${row}: no next token`);
    return token;
  });
}

async function runBatch(model: LlamaModel, job: LlamaCppJob, batch: number): Promise<{ result: LlamaCppBatchResult; flashAttention: boolean; threads: number }> {
  const prompts = job.prompts.slice(0, batch);
  const promptLength = prompts[0]!.length;
  const context = await model.createContext({
    sequences: batch,
    contextSize: promptLength + job.newTokens,
    batchSize: batch * promptLength,
    threads: job.threads,
    flashAttention: job.flashAttention,
    failedCreationRemedy: false,
  });
  try {
    const sequences = prompts.map(() => context.getSequence());
    // Warm-up at this batch size: a short prefill and two decode steps, then the sequences are cleared.
    let warm = await step(sequences, prompts.map((p) => p.slice(0, 8)));
    for (let i = 0; i < 2; i++) warm = await step(sequences, warm.map((t) => [t]));
    for (const sequence of sequences) await sequence.clearHistory();

    const generated: number[][] = prompts.map(() => []);
    const machineBefore = cpuTimes();
    const ownBefore = process.cpuUsage();
    const prefillStart = performance.now();
    let next = await step(sequences, prompts);
    const prefillMs = performance.now() - prefillStart;
    next.forEach((t, row) => generated[row]!.push(t));
    const stepTimes: number[] = [];
    for (let i = 1; i < job.newTokens; i++) {
      const started = performance.now();
      next = await step(sequences, next.map((t) => [t]));
      stepTimes.push(performance.now() - started);
      next.forEach((t, row) => generated[row]!.push(t));
    }
    const wallMs = performance.now() - prefillStart;
    const own = process.cpuUsage(ownBefore);
    const machineAfter = cpuTimes();
    const otherBusyCores = machineBefore && machineAfter ? Math.max(0, busyCores(machineBefore, machineAfter) - (own.user + own.system) / 1000 / wallMs) : undefined;
    for (const sequence of sequences) sequence.dispose();
    return {
      result: {
        ...loopTimes(batch, prefillMs, stepTimes, job.newTokens),
        otherBusyCores,
        tokens: generated,
      },
      flashAttention: context.flashAttention === true,
      threads: context.currentThreads,
    };
  } finally {
    await context.dispose();
  }
}

async function main(job: LlamaCppJob): Promise<LlamaCppChildResult> {
  const { getLlama } = (await import(pathToFileURL(job.module).href)) as NodeLlamaCpp;
  // build 'never': use the prebuilt binary or fail, never download or compile; maxThreads 0: a context's threads is exact.
  const llama = await getLlama({ gpu: false, build: 'never', maxThreads: 0, logLevel: 'error', progressLogs: false });
  try {
    const loadStart = performance.now();
    const model = await llama.loadModel({ modelPath: job.modelPath, gpuLayers: 0 });
    const loadMs = performance.now() - loadStart;
    const results: LlamaCppBatchResult[] = [];
    let flashAttention = false;
    let threads = job.threads;
    try {
      for (const batch of job.batches) {
        const run = await runBatch(model, job, batch);
        results.push(run.result);
        flashAttention = run.flashAttention;
        threads = run.threads;
      }
    } finally {
      await model.dispose();
    }
    return { ok: true, loadMs, llamaCpp: `${llama.llamaCppRelease.repo}@${llama.llamaCppRelease.release}`, flashAttention, threads, systemInfo: llama.systemInfo, results };
  } finally {
    await llama.dispose();
  }
}

let result: LlamaCppChildResult;
try {
  result = await main(JSON.parse(process.argv[2] ?? '') as LlamaCppJob);
} catch (err) {
  result = { ok: false, error: (err as Error).stack ?? String(err), results: [] };
}
process.stdout.write(`\n${RESULT_PREFIX}${JSON.stringify(result)}\n`);
