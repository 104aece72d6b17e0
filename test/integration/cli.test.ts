import { spawnSync } from 'node:child_process';
import { BIN, ROOT, exited, startCli } from '../helpers/cli.js';

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
    for (const flag of [
      '--model',
      '--model-file',
      '--served-model-name',
      '--host',
      '--port',
      '--device',
      '--threads',
      '--max-batch',
      '--api-key',
      '--request-timeout',
      '--receive-timeout',
      '--shutdown-grace',
      '--max-body-bytes',
      '--max-n',
      '--max-tokens-limit',
      '--max-prompts',
      '--max-stop',
      '--max-stop-length',
      '--max-messages',
      '--log-level',
    ]) {
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

  it.each([
    [['--api-key', 'a b'], {}],
    [['--api-key', ' k1'], {}],
    [[], { ORTSERVE_API_KEYS: ',' }],
    [[], { ORTSERVE_API_KEYS: '  ' }],
    [[], { ORTSERVE_API_KEYS: ' , ,' }],
  ])('refuses key settings that cannot work (%j %j) with exit code 2, without echoing them', (args, env) => {
    const result = spawnSync(process.execPath, [BIN, ...args, '--port', '0'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env } });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/ortserve: invalid (--api-key|ORTSERVE_API_KEYS)/);
    expect(result.stderr).not.toContain('a b');
  });

  it('says what is wrong with a negative number, not that the argument is ambiguous', () => {
    const result = spawnSync(process.execPath, [BIN, '--threads', '-1'], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('invalid --threads');
    expect(result.stderr).not.toContain('ambiguous');
  });

  it('a port in use and an address not of this machine: a sentence and exit code 1, not a stack trace', async () => {
    const { child, url } = await startCli(['--port', '0', '--host', '127.0.0.1'], { ORTSERVE_THREADS: '1' });
    try {
      const inUse = spawnSync(process.execPath, [BIN, '--host', '127.0.0.1', '--port', new URL(url).port], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ORTSERVE_THREADS: '1' } });
      expect(inUse.status).toBe(1);
      expect(inUse.stderr).toContain('the port is in use');
      expect(inUse.stderr).not.toMatch(/\n\s+at /);
    } finally {
      const code = exited(child);
      child.kill('SIGTERM');
      await code;
    }
    // 192.0.2.0/24 is reserved for documentation: no machine has such an address.
    const foreign = spawnSync(process.execPath, [BIN, '--host', '192.0.2.1', '--port', '0'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ORTSERVE_THREADS: '1' } });
    expect(foreign.status).toBe(1);
    expect(foreign.stderr).toContain("not one of this machine's");
    expect(foreign.stderr).not.toMatch(/\n\s+at /);
  });

  it('refuses a bad flag value with exit code 2', () => {
    const result = spawnSync(process.execPath, [BIN, '--port', 'eighty'], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--port');
  });
});
