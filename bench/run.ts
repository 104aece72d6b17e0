/**
 * ortserve's benchmark. In one run on one machine it measures, per model:
 *  - raw: a plain greedy loop over onnxruntime-node in this process (batch 1 and 16), the bar (raw.ts);
 *  - ortserve: the real server as a child process, 1, 4 and 16 concurrent streaming clients (ortserve.ts);
 *  - transformers.js: `generate`, greedy, batch 1 and 16 (in a child process, see transformers.ts);
 *  - llama.cpp: node-llama-cpp on the same weights converted to GGUF (tools/gguf.ts), f32, q8_0 and q4_0,
 *    batch 1 and 16, and f32 with flash attention at 16 (in a child process, see llama-cpp.ts);
 *  - the machine's memory bandwidth, and each runner's share of it (roofline.ts);
 * prints one table with the ratios (table.ts) and the roofline lines, and writes bench/results/<timestamp>.json and latest.json.
 * One model's rounds are in bench-model.ts.
 *
 *   npm run bench [-- --model-set default|124m|135m|0.5b|1b|all] [--skip-transformers] [--skip-llama-cpp] [--server-flags="--prefill-chunk 32"]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { benchModel, type BenchOptions, type ModelReport } from './bench-model.js';
import { cpuFeatures, NEW_TOKENS, PROMPT_TOKENS, ROOT, THREADS } from './common.js';
import { NODE_LLAMA_CPP_VERSION } from './llama-cpp.js';
import { BENCH, isServedLayout, MODELS, readJson, type ModelSet } from './model-sets.js';
import { modelRoofline, probeBandwidth } from './roofline.js';
import { table } from './table.js';

const USAGE = 'usage: npm run bench [-- --model-set default|124m|135m|0.5b|1b|all] [--served-layout as-set|int4-export] [--skip-transformers] [--skip-llama-cpp] [--server-flags="--prefill-chunk 32 ..."]\n';
let values: { 'model-set'?: string; 'served-layout'?: string; 'skip-transformers'?: boolean; 'skip-llama-cpp'?: boolean; 'server-flags'?: string };
try {
  ({ values } = parseArgs({
    options: {
      'model-set': { type: 'string', default: 'all' },
      'served-layout': { type: 'string', default: 'as-set' },
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
const servedLayout = values['served-layout'] ?? 'as-set';
if (!isServedLayout(servedLayout)) {
  process.stderr.write(USAGE);
  process.exit(2);
}
const serverFlags = (values['server-flags'] ?? '').split(/\s+/).filter(Boolean);

const runStart = performance.now();
const reports: ModelReport[] = [];
const options: BenchOptions = { skipTransformers: values['skip-transformers'] ?? false, skipLlamaCpp: values['skip-llama-cpp'] ?? false, serverFlags, servedLayout };
for (const name of names) reports.push(await benchModel(name, options));
// After the runners, so that the probe's buffers and threads do not share the machine with them.
const bandwidth = await probeBandwidth(THREADS);
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
  `ortserve bench — ${new Date().toISOString()} — ${THREADS} cores (${cpuModel}; ${cpuFeatures()}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${versions.node}, onnxruntime-node ${versions.onnxruntimeNode}, transformers.js ${versions.transformersJs}` +
    (versions.nodeLlamaCpp ? `, node-llama-cpp ${versions.nodeLlamaCpp} (${versions.llamaCpp ?? '?'})` : ''),
  `${PROMPT_TOKENS}-token prompts (different per row, same length), ${NEW_TOKENS} new tokens, greedy; raw/transformers.js intraOpNumThreads ${THREADS}, graphOptimizationLevel all; llama.cpp threads ${THREADS}`,
  `ortserve serves ${reports[0]?.servedDir ?? '?'} with flags: ${reports[0]?.serverFlags.join(' ')} (engine defaults otherwise: --max-batch 16, --prefill-chunk 16, --threads 0 = one per core)`,
  `rounds of raw → ortserve → transformers.js → llama.cpp: ${reports.map((r) => `${r.rounds} for ${r.model}`).join(', ')}; each row is the round with the median e2e tok/s (min-max over rounds shown); TTFT/ITL percentiles are over that round's streams`,
  '',
  table(reports),
];
summary.push(
  '',
  `roofline: ${THREADS} threads copying memory reached ${(bandwidth / 1e9).toFixed(1)} GB/s (read and write counted); a decode step reads the weights of every product once`,
  '  and each row\'s keys and values; decode tok/s (ortserve: clients × 1000 / ITL p50) × bytes per token against that probe:',
  ...reports.flatMap((report) => modelRoofline(report, bandwidth)),
);
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
  memoryBandwidthBytesPerSecond: bandwidth,
  results: reports,
};
mkdirSync(join(BENCH, 'results'), { recursive: true });
const stamp = report.date.replace(/[:.]/g, '-');
const json = JSON.stringify(report, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2);
writeFileSync(join(BENCH, 'results', `${stamp}.json`), json);
writeFileSync(join(BENCH, 'results', 'latest.json'), json);
console.log(`wrote bench/results/${stamp}.json and bench/results/latest.json`);
