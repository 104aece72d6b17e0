/** Reading a graph's external data files, which lie beside it in its folder. */
import { closeSync, openSync, readSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { ExternalDataReader } from './weight-quantization.js';

/** Runs `read` with a reader of the external data files in `dir`, each opened once, and closes them. */
export function withExternalData<T>(dir: string, read: (reader: ExternalDataReader) => T): T {
  const files = new Map<string, number>();
  const reader: ExternalDataReader = (location, offset, length) => {
    const path = join(dir, location);
    if (relative(dir, path).startsWith('..')) throw new Error(`external data ${location} is outside the model's folder`);
    let fd = files.get(location);
    if (fd === undefined) files.set(location, (fd = openSync(path, 'r')));
    const bytes = new Uint8Array(length);
    if (readSync(fd, bytes, 0, length, offset) !== length) throw new Error(`external data ${location} ends before byte ${offset + length}`);
    return bytes;
  };
  try {
    return read(reader);
  } finally {
    for (const fd of files.values()) closeSync(fd);
  }
}
