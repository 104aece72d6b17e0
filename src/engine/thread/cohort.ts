import type { KvCache } from './kv-cache.js';
import type { PromptEntry } from './waiting-queue.js';

/**
 * Prompts prefilled together, one chunk per step, before their sequences join the batch. Every
 * row (one per prompt) has the same `done` prompt tokens in `cache`.
 */
export interface Cohort {
  rows: PromptEntry[];
  cache: KvCache;
  done: number;
}

/** The indexes of the rows that pass `test`, and of those that do not. */
export function partitionRows<Row>(rows: readonly Row[], test: (row: Row) => boolean): [number[], number[]] {
  const pass: number[] = [];
  const fail: number[] = [];
  rows.forEach((item, row) => (test(item) ? pass : fail).push(row));
  return [pass, fail];
}

/** Narrows a cohort to `rows`, in that order, cache included. */
export function keepRows(cohort: Cohort, rows: readonly number[]): void {
  cohort.rows = rows.map((row) => cohort.rows[row]!);
  cohort.cache = cohort.cache.retain(rows);
}
