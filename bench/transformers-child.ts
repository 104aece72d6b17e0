/**
 * transformers.js `generate` on one model, run by bench/run.ts as a child process:
 * @huggingface/transformers loads its own onnxruntime-node (1.30), whose libonnxruntime.so.1 has the
 * same soname as the server's 1.29, so the two must not share a process.
 *
 *   node --import tsx bench/transformers-child.ts '<TransformersJob as JSON>'
 * Prints one line `BENCH_RESULT {TransformersChildResult}` on stdout.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { AutoModelForCausalLM, AutoTokenizer, Tensor, env } from '@huggingface/transformers';
import { RESULT_PREFIX, medianRun, type TransformersBatchResult, type TransformersChildResult, type TransformersJob } from './common.js';

function tensorRows(tensor: Tensor): number[][] {
  const [rows, cols] = tensor.dims as [number, number];
  const data = tensor.data as BigInt64Array;
  return Array.from({ length: rows }, (_, r) => Array.from(data.subarray(r * cols, (r + 1) * cols), Number));
}

async function main(job: TransformersJob): Promise<TransformersChildResult> {
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = job.localModelPath;
  const modelDir = join(job.localModelPath, job.modelName);
  const externalData = existsSync(join(modelDir, 'onnx/model.onnx.data'))
    ? 'onnx/model.onnx.data (the name inside the graph; onnxruntime resolves it next to onnx/model.onnx, which transformers.js opens by path in Node)'
    : 'none';

  const loadStart = performance.now();
  const model = await AutoModelForCausalLM.from_pretrained(job.modelName, {
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: job.threads, interOpNumThreads: 1, graphOptimizationLevel: 'all' },
  });
  const loadMs = performance.now() - loadStart;
  const tokenizer = await AutoTokenizer.from_pretrained(job.modelName);
  tokenizer.padding_side = 'left';
  const eosIds = new Set<number>();
  const eosConfig: unknown = (model.generation_config as { eos_token_id?: unknown } | null)?.eos_token_id ?? (model.config as { eos_token_id?: unknown }).eos_token_id;
  for (const id of [eosConfig].flat()) if (typeof id === 'number') eosIds.add(id);

  let tokenizerMatches = true;
  let inputsFrom = 'transformers.js tokenizer, padding_side left';
  const results: TransformersBatchResult[] = [];
  for (const batch of job.batches) {
    const prompts = job.prompts.slice(0, batch);
    let inputIds: Tensor;
    let attentionMask: Tensor;
    try {
      const encoded = tokenizer(job.texts.slice(0, batch), { padding: true, add_special_tokens: true }) as { input_ids: Tensor; attention_mask: Tensor };
      inputIds = encoded.input_ids;
      attentionMask = encoded.attention_mask;
      if (JSON.stringify(tensorRows(inputIds)) !== JSON.stringify(prompts)) {
        tokenizerMatches = false;
        throw new Error('ids differ from the bench tokenizer');
      }
    } catch (err) {
      // Same prompts from our ids: all 32 long, so no padding is needed.
      inputsFrom = `tensors from the bench's ids (${(err as Error).message})`;
      inputIds = new Tensor('int64', BigInt64Array.from(prompts.flat(), BigInt), [batch, prompts[0]!.length]);
      attentionMask = new Tensor('int64', new BigInt64Array(batch * prompts[0]!.length).fill(1n), [batch, prompts[0]!.length]);
    }
    const generate = async (maxNewTokens: number) => {
      const started = performance.now();
      const output = (await model.generate({ inputs: inputIds, attention_mask: attentionMask, max_new_tokens: maxNewTokens, do_sample: false })) as Tensor;
      return { ms: performance.now() - started, rows: tensorRows(output).map((row) => row.slice(inputIds.dims[1]!)) };
    };
    await generate(4); // warm-up
    const runs: TransformersBatchResult[] = [];
    for (let i = 0; i < job.repeats; i++) {
      const prefill = await generate(1);
      const full = await generate(job.newTokens);
      const newTokensPerRow = full.rows[0]!.length;
      runs.push({
        batch,
        prefillMs: prefill.ms,
        generateMs: full.ms,
        newTokensPerRow,
        rowsWithEos: full.rows.filter((row) => row.some((id) => eosIds.has(id))).length,
        endToEndTokensPerSecond: (batch * newTokensPerRow) / (full.ms / 1000),
        decodeTokensPerSecond: (batch * (newTokensPerRow - 1)) / ((full.ms - prefill.ms) / 1000),
      });
    }
    results.push(medianRun(runs, (r) => r.endToEndTokensPerSecond));
  }
  await model.dispose();
  return { ok: true, loadMs, tokenizerMatches, inputsFrom, externalData, results };
}

let result: TransformersChildResult;
try {
  result = await main(JSON.parse(process.argv[2] ?? '') as TransformersJob);
} catch (err) {
  result = { ok: false, error: (err as Error).stack ?? String(err), results: [] };
}
process.stdout.write(`\n${RESULT_PREFIX}${JSON.stringify(result)}\n`);
