import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A throw-away copy of a model directory, with some JSON files changed. */
export function copyModel(source: string, edits: Record<string, (json: Record<string, unknown>) => void> = {}): { dir: string; remove(): void } {
  const root = mkdtempSync(join(tmpdir(), 'ortserve-model-'));
  const dir = join(root, 'model');
  cpSync(source, dir, { recursive: true });
  for (const [file, edit] of Object.entries(edits)) {
    const path = join(dir, file);
    const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    edit(json);
    writeFileSync(path, JSON.stringify(json));
  }
  return { dir, remove: () => rmSync(root, { recursive: true, force: true }) };
}
