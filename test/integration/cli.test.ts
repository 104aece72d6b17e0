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

  it('refuses a bad flag value with exit code 2', () => {
    const result = spawnSync(process.execPath, [BIN, '--port', 'eighty'], { cwd: ROOT, encoding: 'utf8' });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('--port');
  });
});
