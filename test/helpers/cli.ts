import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = fileURLToPath(new URL('../../bin/ortserve.js', import.meta.url));

/** How the server is started: as the README's quick start does, or as the container does. */
export type Launcher = 'npm start' | 'bin/ortserve.js';

export interface CliOptions {
  launcher?: Launcher;
  /** In a process group of its own (as a terminal or a supervisor starts it), so that the group can be signalled. */
  detached?: boolean;
}

/** Starts the CLI and resolves with the URL from its "model ready" log line. */
export function startCli(args: string[], env: Record<string, string> = {}, options: CliOptions = {}): Promise<{ child: ChildProcessWithoutNullStreams; url: string; logs: string[] }> {
  const [command, commandArgs] = options.launcher === 'npm start' ? ['npm', ['start', '--silent', '--', ...args]] : [process.execPath, [BIN, ...args]];
  const child = spawn(command, commandArgs, { cwd: ROOT, env: { ...process.env, ...env }, detached: options.detached ?? false });
  const logs: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "model ready" line; logs:\n${logs.join('\n')}`)), 30000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if ((entry.msg === 'model ready' || entry.msg === 'ready to load models on request') && entry.url) {
          clearTimeout(timer);
          resolve({ child, url: entry.url, logs });
        }
      } catch {
        // not a log line
      }
    });
    child.stderr.on('data', (data: Buffer) => logs.push(data.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code}; logs:\n${logs.join('\n')}`));
    });
  });
}

export const exited = (child: ChildProcessWithoutNullStreams) => new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

