/** How llama.cpp's greedy ids compare with the raw loop's, and where they part, how close a call it was. */
import type * as ort from 'onnxruntime-node';
import type { ModelInfo, Prompt } from './model-sets.js';
import { lastLogits } from './raw.js';

/** How many greedy ids of a llama.cpp run equal the raw loop's, position by position. */
export interface IdAgreement {
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

export function idAgreement(tokens: number[][], reference: number[][]): IdAgreement {
  const agreement: IdAgreement = { batch: tokens.length, equalIds: 0, ids: 0, equalRows: 0, rows: tokens.length, differences: [] };
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
export async function rankDifferences(session: ort.InferenceSession, model: ModelInfo, prompts: Prompt[], reference: number[][], agreement: IdAgreement): Promise<void> {
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

export const describeAgreement = (a: IdAgreement): string => {
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
