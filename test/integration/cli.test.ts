import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/ortserve.js', import.meta.url));

/** Starts the CLI and resolves with the URL from its "model ready" log line. */
function startCli(args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcessWithoutNullStreams; url: string; logs: string[] }> {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
  const logs: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "model ready" line; logs:\n${logs.join('\n')}`)), 30000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      logs.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === 'model ready' && entry.url) {
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

const exited = (child: ChildProcessWithoutNullStreams) => new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

describe('the ortserve command', () => {
  it('serves the default model, completes a request, logs JSON without the prompt, and exits 0 on SIGTERM', async () => {
    const { child, url, logs } = await startCli(['--port', '0', '--host', '127.0.0.1'], { ORTSERVE_THREADS: '1' });
    try {
      const response = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': 'cli-test-1' },
        body: JSON.stringify({ model: 'tinystories-gpt2', prompt: 'A secret prompt about a cat', max_tokens: 8 }),
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('x-request-id')).toBe('cli-test-1');
      const body = (await response.json()) as { choices: { text: string }[]; usage: { completion_tokens: number } };
      expect(body.usage.completion_tokens).toBeGreaterThan(0);
    } finally {
      const code = exited(child);
      child.kill('SIGTERM');
      expect(await code).toBe(0);
    }
    const entries = logs.flatMap((line) => {
      try {
        return [JSON.parse(line) as { reqId?: string; level: number }];
      } catch {
        return [];
      }
    });
    expect(entries.some((entry) => entry.reqId === 'cli-test-1')).toBe(true);
    expect(logs.join('\n')).not.toContain('A secret prompt');
  });

  it('takes its settings from the environment', async () => {
    const { child, url } = await startCli([], { PORT: '0', ORTSERVE_HOST: '127.0.0.1', ORTSERVE_SERVED_MODEL_NAME: 'story-teller', ORTSERVE_THREADS: '1' });
    try {
      const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id)).toEqual(['story-teller']);
    } finally {
      const code = exited(child);
      child.kill('SIGINT');
      expect(await code).toBe(0);
    }
  });

  it('prints every flag with --help', () => {
    const result = spawnSync(process.execPath, [BIN, '--help'], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(0);
    for (const flag of ['--model', '--model-file', '--served-model-name', '--host', '--port', '--device', '--threads', '--max-batch', '--log-level']) {
      expect(result.stdout).toContain(flag);
    }
    expect(result.stdout).toContain('ORTSERVE_MODEL');
    expect(result.stdout).toContain('PORT');
  });

  it('refuses a directory that is not a model, naming what is missing', () => {
    const result = spawnSync(process.execPath, [BIN, '--model', ROOT + 'test', '--port', '0'], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('model.onnx');
  });

  it('refuses a bad flag value with exit code 2', () => {
    const result = spawnSync(process.execPath, [BIN, '--port', 'eighty'], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--port');
  });
});
