import { exited, startCli } from '../helpers/cli.js';

/** What the logs say of requests: no secrets, and errors only for what went wrong. */

const MODEL = 'tinystories-gpt2';
const post = (url: string, path: string, body: unknown) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

interface LogLine {
  level: number;
  msg: string;
  err?: { stack?: string };
  req?: { url?: string };
}

describe('logging', () => {
  it('a 504 is a warning without a stack, a drain 503 no error at all, and no query string reaches the log', async () => {
    // 64 choices of 500 tokens run in four batches of 16, one after another: well past the 3 s deadline.
    const { child, url, logs } = await startCli(['--port', '0', '--host', '127.0.0.1', '--request-timeout', '3', '--max-n', '64'], { ORTSERVE_THREADS: '1' });
    const code = exited(child);
    try {
      expect((await fetch(`${url}/v1/models?api_key=sk-in-the-query`)).status).toBe(200);
      const timedOut = await post(url, '/v1/completions', { model: MODEL, prompt: 'Once', max_tokens: 500, n: 64, logit_bias: { 0: -100 } });
      expect(timedOut.status).toBe(504);
      const stream = await post(url, '/v1/completions', { model: MODEL, prompt: 'Once', max_tokens: 500, n: 64, stream: true, logit_bias: { 0: -100 } });
      expect(stream.status).toBe(200);
      expect(await stream.text()).toContain('"code":"timeout"');
      // Long enough to be still running while the drain refuses new work.
      const running = post(url, '/v1/completions', { model: MODEL, prompt: 'Once', max_tokens: 120, n: 4, logit_bias: { 0: -100 } });
      await new Promise((resolve) => setTimeout(resolve, 100));
      child.kill('SIGTERM');
      let refused = 0;
      for (let i = 0; i < 50 && refused !== 503; i++) {
        const response = await post(url, '/v1/completions', { model: MODEL, prompt: 'Hi', max_tokens: 1 });
        refused = response.status;
        await response.text();
      }
      expect(refused).toBe(503);
      expect((await running).status).toBe(200);
      expect(await code).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    const lines = logs.flatMap((line) => {
      try {
        return [JSON.parse(line) as LogLine];
      } catch {
        return [];
      }
    });
    expect(lines.filter((line) => line.level >= 50)).toEqual([]);
    const warnings = lines.filter((line) => line.level === 40);
    // The default model has no chat template: start-up says so, once.
    expect(warnings.map((line) => line.msg).sort()).toEqual([expect.stringContaining('no chat template in the folder'), 'request failed', 'stream failed']);
    for (const line of warnings) expect(line.err).toBeUndefined();
    expect(lines.some((line) => line.req?.url === '/v1/models')).toBe(true);
    // Start-up says which graph edits were made: both suit the default model's plain export.
    const edits = lines.find((line) => line.msg === 'graph edits at load') as (LogLine & { rewrites?: string[] }) | undefined;
    expect(edits?.rewrites).toEqual([expect.stringMatching(/^logits_positions: logits computed/), expect.stringMatching(/^new_key_values: /), expect.stringMatching(/^slot_attention: attention to a past held in slots/)]);
    expect(logs.join('\n')).not.toContain('sk-in-the-query');
  });
});
