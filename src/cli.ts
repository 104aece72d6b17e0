import { ConfigError, parseCli } from './config.js';
import { ModelLoadError } from './model/errors.js';
import { startServer } from './server.js';

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
  const stop = (signal: NodeJS.Signals) => {
    running.app.log.info({ signal }, 'shutting down');
    void running.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return -1;
}

const code = await main();
if (code >= 0) process.exit(code);
