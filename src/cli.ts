import { ConfigError, parseCli } from './config.js';
import { ModelLoadError } from './model/errors.js';
import { startServer } from './server.js';

// onnxruntime's native library records usage telemetry under ~/.cache unless told not to; a server
// has no business doing that. Set before the engine thread loads the runtime; ORT_DISABLE_TELEMETRY=0 keeps it.
process.env.ORT_DISABLE_TELEMETRY ??= '1';

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
  let server;
  try {
    server = await startServer(command.config);
  } catch (err) {
    if (err instanceof ModelLoadError) {
      process.stderr.write(`ortserve: cannot load the model: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  const running = server;
  let stopping = false;
  let forced = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      // In-flight requests are cut off; the engine still ends its step under way, because a
      // thread stopped inside a forward pass takes the whole process down.
      running.app.log.warn({ signal }, 'second signal: exiting at once');
      forced = true;
      void running.close().finally(() => process.exit(1));
      return;
    }
    stopping = true;
    running.app.log.info({ signal, graceSeconds: command.config.shutdownGraceMs / 1000 }, 'shutting down');
    void running.shutdown(command.config.shutdownGraceMs).then(
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
