/** What a pull tells as it goes. */
export interface PullEvents {
  resolved(info: { id: string; revision: string; commit: string }): void;
  planned(info: { graph: string; files: { path: string; size: number }[] }): void;
  /** Already in the cache: nothing fetched. */
  cached(path: string, size: number): void;
  /** A transfer starts, at `offset` when it resumes. */
  started(path: string, size: number, offset: number): void;
  progress(path: string, done: number, size: number): void;
  finished(path: string, size: number): void;
  retrying(path: string, reason: string, attempt: number): void;
  done(info: { id: string; commit: string; dir: string; fetchedBytes: number; files: number }): void;
}

/** The part of a pino logger a pull writes to. */
export interface PullLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/** Progress lines at most this often per file, when no terminal shows a bar. */
const LOG_EVERY_MS = 5000;

const megabytes = (bytes: number) => (bytes / 1e6).toFixed(1);

/**
 * Pull events as log lines, and as a progress bar on `terminal` when one is given (a TTY): the bar
 * then stands for the periodic progress lines.
 */
export function pullEvents(log: PullLog, terminal?: NodeJS.WriteStream): PullEvents {
  let lastLine = 0;
  let transfer: { path: string; size: number; since: number; from: number } | undefined;
  const bar = (path: string, done: number, size: number) => {
    if (!terminal || !transfer) return;
    const seconds = (performance.now() - transfer.since) / 1000;
    const rate = seconds > 0 ? (done - transfer.from) / 1e6 / seconds : 0;
    const share = size > 0 ? done / size : 1;
    const width = 24;
    const filled = Math.round(share * width);
    const line = `${path} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(share * 100).toFixed(0).padStart(3)}% ${megabytes(done)}/${megabytes(size)} MB ${rate.toFixed(1)} MB/s`;
    terminal.write(`\r${line.slice(0, Math.max(20, (terminal.columns || 100) - 1)).padEnd(Math.min(terminal.columns || 100, 120) - 1)}`);
  };
  return {
    resolved: ({ id, revision, commit }) => log.info({ model: id, revision, commit }, 'hub revision resolved'),
    planned: ({ graph, files }) => log.info({ graph, files: files.length, bytes: files.reduce((sum, file) => sum + file.size, 0) }, 'graph chosen'),
    cached: (path, size) => log.info({ file: path, bytes: size }, 'in the cache'),
    started: (path, size, offset) => {
      transfer = { path, size, since: performance.now(), from: offset };
      lastLine = performance.now();
      log.info({ file: path, bytes: size, ...(offset > 0 && { resumingAt: offset }) }, offset > 0 ? 'resuming download' : 'downloading');
      bar(path, offset, size);
    },
    progress: (path, done, size) => {
      if (terminal) {
        bar(path, done, size);
        return;
      }
      const now = performance.now();
      if (now - lastLine < LOG_EVERY_MS) return;
      lastLine = now;
      log.info({ file: path, bytes: done, of: size, percent: Math.floor((done / size) * 100) }, 'downloading');
    },
    finished: (path, size) => {
      if (terminal && transfer) {
        bar(path, size, size);
        terminal.write('\n');
      }
      transfer = undefined;
      log.info({ file: path, bytes: size }, 'downloaded and checked');
    },
    retrying: (path, reason, attempt) => {
      if (terminal && transfer) terminal.write('\n');
      transfer = undefined;
      log.warn({ file: path, attempt }, `download failed: ${reason}`);
    },
    done: ({ id, commit, dir, fetchedBytes, files }) => log.info({ model: id, commit, dir, files, fetchedBytes }, 'model in the cache'),
  };
}
