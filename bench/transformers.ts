/**
 * The transformers.js runner: `generate` in a child process (transformers-child.ts), one per round,
 * on a linked copy of the model in transformers.js's layout.
 */
import { existsSync, linkSync, mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NEW_TOKENS, runChild, summarize, THREADS, type Summary, type TransformersBatchResult, type TransformersChildResult, type TransformersJob } from './common.js';
import { BATCHES, BENCH, type ModelInfo, type Prompt } from './model-sets.js';

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

export type TransformersReport =
  | { measured: false; reason: string }
  | {
      measured: true;
      loadMs: number;
      tokenizerMatches: boolean;
      inputsFrom: string;
      externalData: string;
      batches: Summary<TransformersBatchResult>[];
    };

/** transformers.js's runs of one model, round by round, until a round fails; what went amiss goes to `notes`. */
export class TransformersRounds {
  private readonly runs = new Map<number, TransformersBatchResult[]>(BATCHES.map((batch) => [batch, []]));
  private info: TransformersChildResult | undefined;

  constructor(
    readonly skipped: boolean,
    private readonly model: ModelInfo,
    private readonly prompts: Prompt[],
    private readonly notes: string[],
  ) {}

  async round(round: number): Promise<void> {
    if (this.skipped || (this.info !== undefined && !this.info.ok)) return;
    this.info = await runTransformers(this.model, this.prompts);
    for (const t of this.info.results) {
      this.runs.get(t.batch)!.push(t);
      if (t.newTokensPerRow !== NEW_TOKENS || t.rowsWithEos > 0) this.notes.push(`round ${round}, transformers.js batch ${t.batch}: ${t.newTokensPerRow} new tokens per row, ${t.rowsWithEos} row(s) with EOS`);
    }
  }

  /** The median round (by e2e tokens/s) of each batch size, or why there is none. */
  report(): TransformersReport {
    const info = this.info;
    if (this.skipped || !info) return { measured: false, reason: 'skipped (--skip-transformers)' };
    if (!info.ok) {
      const reason = info.error ?? 'unknown error';
      this.notes.push(`transformers.js not measured: ${reason.split('\n')[0]}`);
      return { measured: false, reason };
    }
    const report: TransformersReport = {
      measured: true,
      loadMs: info.loadMs ?? NaN,
      tokenizerMatches: info.tokenizerMatches ?? false,
      inputsFrom: info.inputsFrom ?? '?',
      externalData: info.externalData ?? '?',
      batches: BATCHES.map((batch) => summarize(this.runs.get(batch)!, (t) => t.endToEndTokensPerSecond)),
    };
    if (!report.tokenizerMatches) this.notes.push('transformers.js tokenizer gave other ids than ours; tensors from our ids were used');
    return report;
  }
}
