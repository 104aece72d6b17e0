import { pino } from 'pino';
import { ConfigError, parseCli, type PullCommand } from './config.js';
import { ModelLoadError } from './model/errors.js';
import { hubAccess } from './model/hub/access.js';
import { hubCacheDir } from './model/hub/cache.js';
import { pullEvents, type PullLog } from './model/hub/progress.js';
import { pullModel } from './model/hub/pull.js';
import { startServer } from './server.js';

// onnxruntime's native library records usage telemetry under ~/.cache unless told not to; a server
// has no business doing that. Set before the engine thread loads the runtime; ORT_DISABLE_TELEMETRY=0 keeps it.
process.env.ORT_DISABLE_TELEMETRY ??= '1';

/** A second signal this soon after the first is taken as a copy of it, not as a request to exit at once. */
const SAME_SIGNAL_WINDOW_MS = 1000;

/** A failure to start, in a sentence: a port in use, an address that is not this machine's. */
function startFailure(err: unknown, config: { host: string; port: number }): string {
  const { code, message } = err as NodeJS.ErrnoException;
  const where = `${config.host}:${config.port}`;
  switch (code) {
    case 'EADDRINUSE':
      return `cannot listen on ${where}: the port is in use (choose another with --port or PORT)`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${where}: the address is not one of this machine's (set --host)`;
    case 'EACCES':
      return `cannot listen on ${where}: permission denied (ports below 1024 need privileges)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot listen on ${where}: the host name does not resolve (set --host)`;
    default:
      return message || String(err);
  }
}

/** Log lines as text for a person at a terminal: the message, then its fields. */
function terminalLog(stream: NodeJS.WriteStream): PullLog {
  const line = (fields: object, message: string) =>
    stream.write(`${message}${Object.keys(fields).length > 0 ? ` (${Object.entries(fields).map(([key, value]) => `${key} ${String(value)}`).join(', ')})` : ''}\n`);
  return { info: line, warn: (fields, message) => line(fields, `warning: ${message}`) };
}

/** `ortserve pull`: the model's files into the Hugging Face cache, with a progress bar on a terminal and log lines otherwise. */
async function pull(command: PullCommand): Promise<number> {
  const terminal = process.stderr.isTTY ? process.stderr : undefined;
  const log: PullLog = terminal ? terminalLog(terminal) : pino({ level: command.logLevel });
  try {
    const result = await pullModel({
      id: command.id,
      revision: command.revision,
      dtype: command.dtype,
      modelFile: command.modelFile,
      cacheDir: hubCacheDir(),
      access: hubAccess(),
      events: pullEvents(log, terminal),
    });
    if (terminal) process.stdout.write(`${result.dir}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ModelLoadError) {
      process.stderr.write(`ortserve pull: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

async function main(): Promise<number> {
  let command;
  try {
    command = parseCli(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ortserve: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (command.kind === 'help') {
    process.stdout.write(`${command.text}\n`);
    return 0;
  }
  if (command.kind === 'pull') return pull(command);
  let server;
  try {
    server = await startServer(command.config);
  } catch (err) {
    if (err instanceof ModelLoadError) {
      process.stderr.write(`ortserve: cannot load the model: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`ortserve: cannot start: ${startFailure(err, command.config)}\n`);
    return 1;
  }
  const running = server;
  let stoppingSince: number | undefined;
  let forced = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stoppingSince !== undefined) {
      // A signal sent to the process group reaches a server started by `npm start` twice, a few
      // milliseconds apart: npm passes its own copy on. Within the window it is the same signal.
      if (performance.now() - stoppingSince < SAME_SIGNAL_WINDOW_MS) return;
      // In-flight requests are cut off; the engine still ends its step under way, because a
      // thread stopped inside a forward pass takes the whole process down.
      running.app.log.warn({ signal }, 'second signal: exiting at once');
      forced = true;
      void running.close().finally(() => process.exit(1));
      return;
    }
    stoppingSince = performance.now();
    running.app.log.info({ signal, graceSeconds: command.config.shutdownGraceMs / 1000, drainDelaySeconds: command.config.drainDelayMs / 1000 }, 'shutting down');
    void running.shutdown(command.config.shutdownGraceMs, command.config.drainDelayMs).then(
      () => process.exit(forced ? 1 : 0),
      (err: unknown) => {
        running.app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return -1;
}

const code = await main();
if (code >= 0) process.exit(code);
