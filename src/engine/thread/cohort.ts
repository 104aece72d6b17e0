import type { KvCache } from './kv-cache.js';
import type { PromptEntry } from './waiting-queue.js';

/**
 * Prompts prefilled together, one chunk of each per step, before their sequences join the batch:
 * one row of `cache` per prompt, holding its `done` tokens. In a padded cache every row holds the
 * same number; in slots each row holds its own.
 */
export interface Cohort {
  rows: PromptEntry[];
  cache: KvCache;
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
