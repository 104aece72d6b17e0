import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { isDirectory, isFile } from '../../util/fs.js';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';

/**
 * The Hugging Face cache as `huggingface_hub` lays it out, so that Python tools and ortserve share
 * downloads: `models--ORG--NAME/blobs/ETAG` holds each file once, `snapshots/COMMIT/PATH` links to
 * its blob, and `refs/REVISION` names the commit a branch or tag was last seen at.
 */

/** `HF_HUB_CACHE`, else `HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`, as huggingface_hub reads them. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const set = (name: string) => (env[name] === '' ? undefined : env[name]);
  return (
    set('HF_HUB_CACHE') ??
    set('HUGGINGFACE_HUB_CACHE') ??
    join(set('HF_HOME') ?? join(set('XDG_CACHE_HOME') ?? join(homedir(), '.cache'), 'huggingface'), 'hub')
  );
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** Whether a `--model` value has the shape of a hub id (`org/name`); a directory of that name wins over it. */
export const isHubId = (value: string) => HUB_ID.test(value) && !value.includes('..');

const COMMIT = /^[0-9a-f]{40}$/;

export const isCommit = (revision: string) => COMMIT.test(revision);

/** One repository's folder in a cache. */
export class CachedRepo {
  readonly folder: string;

  constructor(
    readonly cache: string,
    readonly id: string,
  ) {
    this.folder = join(cache, `models--${id.replaceAll('/', '--')}`);
  }

  snapshot(commit: string): string {
    return join(this.folder, 'snapshots', commit);
  }

  blob(etag: string): string {
    return join(this.folder, 'blobs', etag);
  }

  /** The commit a revision names: itself if it is one, else what `refs/REVISION` says, if the snapshot is there. */
  commitOf(revision: string): string | undefined {
    if (isCommit(revision)) return isDirectory(this.snapshot(revision)) ? revision : undefined;
    const ref = join(this.folder, 'refs', revision);
    if (!isFile(ref)) return undefined;
    const commit = readFileSync(ref, 'utf8').trim();
    return isDirectory(this.snapshot(commit)) ? commit : undefined;
  }

  /** The snapshot a revision names; for `main` without a ref, the only snapshot there is (a cache written by hand). */
  cachedSnapshot(revision: string): string | undefined {
    const commit = this.commitOf(revision);
    if (commit) return this.snapshot(commit);
    if (revision !== 'main') return undefined;
    const snapshots = join(this.folder, 'snapshots');
    if (!isDirectory(snapshots)) return undefined;
    const commits = readdirSync(snapshots).filter((name) => isDirectory(join(snapshots, name)));
    return commits.length === 1 ? this.snapshot(commits[0]!) : undefined;
  }

  writeRef(revision: string, commit: string): void {
    if (revision === commit) return;
    const ref = join(this.folder, 'refs', revision);
    mkdirSync(dirname(ref), { recursive: true });
    writeFileSync(ref, commit);
  }

  /** Whether the snapshot has `path`, and it leads to a whole file of `size` bytes. */
  hasFile(commit: string, path: string, size: number): boolean {
    const file = join(this.snapshot(commit), path);
    return isFile(file) && statSync(file).size === size;
  }

  /** Links `snapshots/COMMIT/PATH` to its blob with a relative link, as huggingface_hub does (a copy where links cannot be made). */
  link(commit: string, path: string, etag: string): void {
    const pointer = join(this.snapshot(commit), path);
    mkdirSync(dirname(pointer), { recursive: true });
    if (existsSync(pointer) || isLink(pointer)) unlinkSync(pointer);
    const blob = this.blob(etag);
    try {
      symlinkSync(relative(dirname(pointer), blob), pointer);
    } catch {
      const copy = `${pointer}.copying`;
      writeFileSync(copy, readFileSync(blob));
      renameSync(copy, pointer);
    }
  }
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}
