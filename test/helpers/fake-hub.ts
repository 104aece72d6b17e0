import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';

/**
 * A Hugging Face hub on 127.0.0.1 that answers what the hub's JavaScript client asks, from folders
 * on disk: `/api/models/{id}/revision/{rev}` (the commit), `/api/models/{id}/tree/{rev}` (files with
 * their git ids and LFS sha256), `/{id}/resolve/{rev}/{path}` (LFS files redirected to a file store
 * with `X-Linked-Etag`, `X-Linked-Size` and `X-Repo-Commit`, as the hub does), ranges honoured.
 * Faults can be set per file: a transfer cut after some bytes, or bytes corrupted.
 */

export interface HubRepo {
  /** A folder whose files (and subfolders) are the repository's. */
  dir: string;
  /** Its files need `Authorization: Bearer TOKEN`; without, 401 as the hub answers for a gated repository. */
  gatedToken?: string;
}

export interface HubFile {
  path: string;
  bytes: Buffer;
  gitId: string;
  /** sha256, for files the hub keeps in LFS (graphs and their data). */
  lfs?: string;
}

export interface HubRequest {
  method: string;
  url: string;
  /** The repository file it is for: resolved at the hub, or sent by the file store. */
  file?: string;
  kind: 'api' | 'resolve' | 'store' | 'other';
  range?: string;
  authorized: boolean;
}

export interface FileFault {
  /** The transfer is cut after this many bytes (the socket destroyed). */
  cutAfter?: number;
  /** The bytes sent are corrupted. */
  corrupt?: boolean;
  /** How many transfers the fault hits (default 1); then the file is served whole. */
  times?: number;
}

const LFS_SIZE = 100 * 1024;

const sha = (algorithm: 'sha1' | 'sha256', data: Buffer | string) => createHash(algorithm).update(data).digest('hex');

function listFolder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((path) => statSync(join(dir, path)).isFile())
    .map((path) => relative(dir, join(dir, path)).split('\\').join('/'))
    .sort();
}

export class FakeHub {
  readonly requests: HubRequest[] = [];
  readonly faults = new Map<string, FileFault>();
  private readonly repos = new Map<string, { repo: HubRepo; commit: string; files: Map<string, HubFile> }>();
  private server!: Server;
  url = '';

  add(id: string, repo: HubRepo): { commit: string; files: Map<string, HubFile> } {
    const files = new Map<string, HubFile>();
    for (const path of listFolder(repo.dir)) {
      const bytes = readFileSync(join(repo.dir, path));
      const gitId = sha('sha1', Buffer.concat([Buffer.from(`blob ${bytes.length}\0`), bytes]));
      const lfs = bytes.length >= LFS_SIZE || path.endsWith('.onnx') || path.includes('.onnx_data') ? sha('sha256', bytes) : undefined;
      files.set(path, { path, bytes, gitId, ...(lfs && { lfs }) });
    }
    const commit = sha('sha1', [...files.values()].map((file) => `${file.path} ${file.gitId}`).join('\n'));
    const entry = { repo, commit, files };
    this.repos.set(id, entry);
    return entry;
  }

  /** Requests that sent a file's bytes (not the client's size probes): from the file store for LFS files, from the hub otherwise. */
  transfers(path: string): HubRequest[] {
    return this.requests.filter((request) => request.file === path && request.range !== 'bytes=0-0' && (request.kind === 'store' || (request.kind === 'resolve' && !this.isLfs(path))));
  }

  private isLfs(path: string): boolean {
    return [...this.repos.values()].some((repo) => repo.files.get(path)?.lfs !== undefined);
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.answer(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private answer(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    const authorization = req.headers.authorization;
    const kind = url.pathname.startsWith('/api/') ? 'api' : url.pathname.startsWith('/store/') ? 'store' : url.pathname.includes('/resolve/') ? 'resolve' : 'other';
    const asked = kind === 'store' ? (url.searchParams.get('path') ?? undefined) : kind === 'resolve' ? url.pathname.split('/').slice(5).join('/') : undefined;
    this.requests.push({ method: req.method ?? 'GET', url: url.pathname, kind, ...(asked && { file: asked }), range: req.headers.range, authorized: authorization !== undefined });
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    };
    if (url.pathname.startsWith('/store/')) return this.store(req, res, url);
    const api = /^\/api\/models\/([^/]+\/[^/]+)\/(revision|tree)\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const id = decodeURIComponent((api ?? resolve)?.[1] ?? '');
    const known = this.repos.get(id);
    if (!api && !resolve) return json(404, { error: 'Not found' });
    if (!known) return json(401, { error: 'Invalid username or password.' }, { 'x-error-code': 'RepoNotFound' });
    const revision = decodeURIComponent((api?.[3] ?? resolve?.[2])!);
    if (revision !== 'main' && revision !== known.commit) return json(404, { error: `Invalid rev id: ${revision}` }, { 'x-error-code': 'RevisionNotFound' });
    if (api?.[2] === 'revision') {
      return json(200, {
        _id: known.commit.slice(0, 24),
        id,
        sha: known.commit,
        private: false,
        gated: known.repo.gatedToken ? 'manual' : false,
        downloads: 0,
        likes: 0,
        pipeline_tag: 'text-generation',
        lastModified: '2026-01-01T00:00:00.000Z',
        siblings: [...known.files.keys()].map((rfilename) => ({ rfilename })),
      });
    }
    if (api?.[2] === 'tree') {
      return json(
        200,
        [...known.files.values()].map((file) => ({
          type: 'file',
          oid: file.gitId,
          size: file.bytes.length,
          path: file.path,
          ...(file.lfs && { lfs: { oid: file.lfs, size: file.bytes.length, pointerSize: 134 } }),
        })),
      );
    }
    const file = known.files.get(resolve![3]!);
    if (known.repo.gatedToken && authorization !== `Bearer ${known.repo.gatedToken}`) {
      return json(401, { error: `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.` }, { 'x-error-code': 'GatedRepo' });
    }
    if (!file) return json(404, { error: 'Entry not found' }, { 'x-error-code': 'EntryNotFound' });
    // The hub answers for a file at its commit: LFS files through a redirect to a file store.
    const headers = { 'x-repo-commit': known.commit, etag: `"${file.lfs ?? file.gitId}"` };
    if (file.lfs) {
      res.writeHead(302, { ...headers, location: `/store/${file.lfs}?path=${encodeURIComponent(file.path)}&repo=${encodeURIComponent(id)}`, 'x-linked-etag': `"${file.lfs}"`, 'x-linked-size': String(file.bytes.length) });
      res.end();
      return;
    }
    this.send(req, res, file, headers);
  }

  /** Sends a file, or the range asked for, with the fault set for it. */
  private send(req: IncomingMessage, res: ServerResponse, file: HubFile, headers: Record<string, string>): void {
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = range ? Number(range[1]) : 0;
    const end = range && range[2] ? Number(range[2]) + 1 : file.bytes.length;
    let body = file.bytes.subarray(start, end);
    // The client's probe for the size (`Range: bytes=0-0`) is answered whole; faults hit transfers.
    const fault = req.headers.range === 'bytes=0-0' ? undefined : this.faults.get(file.path);
    const faulty = fault !== undefined && (fault.times ?? 1) > 0;
    if (faulty) fault.times = (fault.times ?? 1) - 1;
    if (faulty && fault.corrupt) body = Buffer.from(body.map((byte) => byte ^ 0x5a));
    res.writeHead(range ? 206 : 200, {
      ...headers,
      'content-type': 'application/octet-stream',
      'content-length': String(body.length),
      'accept-ranges': 'bytes',
      ...(range && { 'content-range': `bytes ${start}-${end - 1}/${file.bytes.length}` }),
    });
    if (faulty && fault.cutAfter !== undefined && fault.cutAfter < body.length) {
      res.write(body.subarray(0, fault.cutAfter), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(body);
  }

  /** The file store the hub redirects LFS files to. */
  private store(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const known = this.repos.get(url.searchParams.get('repo') ?? '');
    const file = known?.files.get(url.searchParams.get('path') ?? '');
    if (!known || !file) {
      res.writeHead(404).end();
      return;
    }
    this.send(req, res, file, { etag: `"${file.lfs}"` });
  }
}
