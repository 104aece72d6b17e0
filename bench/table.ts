/** The printed table of a bench run: a row per runner and batch size (or client count), then the ratios. */
import { fmt } from './common.js';
import type { ModelReport } from './bench-model.js';
import { describeAgreement } from './llama-cpp-agreement.js';

export function table(reports: ModelReport[]): string {
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
    'llama.cpp: node-llama-cpp, the graph\'s weights as GGUF (tools/gguf.ts); the sequences in lock step, one decode per step for all;',
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
    ['ortserve 1 client / llama.cpp q4_0 batch 1', 'ortserve1VsLlamaCppQ4B1'],
    ['ortserve 16 clients / llama.cpp q4_0 batch 16', 'ortserve16VsLlamaCppQ4B16'],
    ['ortserve 16 clients / llama.cpp f32 flash-attn batch 16', 'ortserve16VsLlamaCppF32FlashB16'],
  ];
  const labelWidth = Math.max(...ratioRows.map(([label]) => label.length)) + 2;
  out.push('ratios'.padEnd(labelWidth + 2) + reports.map((r) => r.model.padStart(9)).join(''));
  for (const [label, key] of ratioRows) out.push(`  ${label.padEnd(labelWidth)}${reports.map((r) => fmt(r.ratios[key], 2).padStart(9)).join('')}`);
  return out.join('\n');
}
