/**
 * One model's bench: the prompts, then rounds of raw → ortserve → transformers.js → llama.cpp, so
 * that drifts in the machine's speed fall on all of them alike, then each runner's median round and
 * the ratios between them.
 */
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { PROMPT_TOKENS, ROOT, startServer, stopServer, THREADS, type Summary } from './common.js';
import { LlamaCppRounds, type LlamaCppReport, type LlamaCppVariant } from './llama-cpp.js';
import { ensureModel, ensureServedLayout, loadModelInfo, makePrompts, ROUNDS, type ModelSet, type ServedLayout } from './model-sets.js';
import { OrtserveRounds, type ServerResult } from './ortserve.js';
import { RawRounds, screenPrompts, type RawResult } from './raw.js';
import { TransformersRounds, type TransformersReport } from './transformers.js';

export interface BenchOptions {
  skipTransformers: boolean;
  skipLlamaCpp: boolean;
  serverFlags: string[];
  servedLayout: ServedLayout;
}

export interface ModelReport {
  model: ModelSet;
  dir: string;
  /** What ortserve serves (see --served-layout), from the folder `servedDir`: `dir` or one derived from it. */
  servedLayout: ServedLayout;
  servedDir: string;
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

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);

export async function benchModel(name: ModelSet, { skipTransformers, skipLlamaCpp, serverFlags, servedLayout }: BenchOptions): Promise<ModelReport> {
  const modelStart = performance.now();
  const notes: string[] = [];
  const dir = await ensureModel(name);
  const servedDir = ensureServedLayout(dir, servedLayout);
  const model = loadModelInfo(name);
  const candidates = makePrompts(model.tokenizer);
  const rounds = ROUNDS[name];

  const llamaCpp = new LlamaCppRounds(notes);
  if (!skipLlamaCpp) await llamaCpp.prepare(name, dir, log);
  log(`${name}: ${candidates.length} candidate prompts of ${PROMPT_TOKENS} tokens; screening them with the raw loop…`);

  const session = await ort.InferenceSession.create(join(dir, 'model.onnx'), {
    intraOpNumThreads: THREADS,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const { prompts, rawIds } = await screenPrompts(session, model, candidates, notes);

  log(`${name}: starting ortserve…`);
  const server = await startServer(servedDir, serverFlags);
  const raw = new RawRounds(session, model, prompts);
  // The server names its model after the folder it serves, which a served layout renames.
  const served = typeof server.ready.model === 'string' ? { ...model, id: server.ready.model } : model;
  const ortserve = new OrtserveRounds(server.url, served, prompts, rawIds, notes);
  const transformers = new TransformersRounds(skipTransformers, model, prompts, notes);
  let promptTokensSeenByServer: number[] = [];
  try {
    promptTokensSeenByServer = await ortserve.prepare();
    // Only one runner runs at a time; the others sit idle.
    for (let round = 1; round <= rounds; round++) {
      log(`${name}: round ${round}/${rounds}: raw loop, ortserve${skipTransformers ? '' : ', transformers.js'}${llamaCpp.active ? ', llama.cpp' : ''}…`);
      await raw.round();
      await ortserve.round(round);
      await transformers.round(round);
      await llamaCpp.round(round, prompts);
    }
  } catch (err) {
    await session.release();
    throw err;
  } finally {
    await stopServer(server);
  }

  const rawReport = raw.report(notes);
  const serverResults = ortserve.summaries();
  const transformersReport = transformers.report();
  const rawTokens = new Map<number, number[][]>([
    [1, rawReport.batch1.tokens],
    [16, rawReport.batch16.tokens],
  ]);
  const llamaCppReport = await llamaCpp.report(session, model, prompts, rawTokens);
  await session.release();

  return {
    model: name,
    dir: dir.startsWith(ROOT) ? dir.slice(ROOT.length) : dir,
    servedLayout,
    servedDir: servedDir.startsWith(ROOT) ? servedDir.slice(ROOT.length) : servedDir,
    serverFlags: ['--port', '0', '--host', '127.0.0.1', '--log-level', 'info', ...serverFlags],
    serverStartMs: server.startMs,
    prompts: prompts.map((p) => p.text),
    promptTokensSeenByServer,
    raw: rawReport.summaries.map(({ median: { tokens: _tokens, ...rest }, runs }) => ({ median: rest, runs })),
    server: serverResults,
    transformers: transformersReport,
    llamaCpp: llamaCppReport,
    ratios: ratios(rawReport.batch1, rawReport.batch16, serverResults, transformersReport, llamaCppReport),
    rounds,
    notes,
    seconds: (performance.now() - modelStart) / 1000,
  };
}

function ratios(raw1: RawResult, raw16: RawResult, server: Summary<ServerResult>[], transformers: TransformersReport, llamaCpp: LlamaCppReport): Record<string, number> {
  const one = server.find((s) => s.median.clients === 1)!.median;
  const sixteen = server.find((s) => s.median.clients === 16)!.median;
  const tjs16 = transformers.measured ? transformers.batches.find((t) => t.median.batch === 16)?.median : undefined;
  const llamaE2e = (key: LlamaCppVariant['key'], batch: number): number =>
    (llamaCpp.measured ? llamaCpp.variants.find((v) => v.key === key)?.batches.find((b) => b.median.batch === batch)?.median.endToEndTokensPerSecond : undefined) ?? NaN;
  return {
    ortserve1VsRawB1EndToEnd: one.tokensPerSecond / raw1.endToEndTokensPerSecond,
    ortserve1VsRawB1Decode: one.tokensPerSecond / raw1.decodeTokensPerSecond,
    ortserve16VsRawB16EndToEnd: sixteen.tokensPerSecond / raw16.endToEndTokensPerSecond,
    ortserve16VsRawB16Decode: sixteen.tokensPerSecond / raw16.decodeTokensPerSecond,
    ortserve16VsTransformersB16: tjs16 ? sixteen.tokensPerSecond / tjs16.endToEndTokensPerSecond : NaN,
    ortserve16ItlP95VsRawB16StepMs: sixteen.itlP95Ms / raw16.stepMs,
    ortserve1VsLlamaCppQ8B1: one.tokensPerSecond / llamaE2e('q8_0', 1),
    ortserve16VsLlamaCppQ8B16: sixteen.tokensPerSecond / llamaE2e('q8_0', 16),
    ortserve1VsLlamaCppQ4B1: one.tokensPerSecond / llamaE2e('q4_0', 1),
    ortserve16VsLlamaCppQ4B16: sixteen.tokensPerSecond / llamaE2e('q4_0', 16),
    ortserve16VsLlamaCppF32FlashB16: sixteen.tokensPerSecond / llamaE2e('f32-fa', 16),
  };
}
