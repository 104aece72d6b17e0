import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Three replicas behind a real load balancer (Debian's HAProxy, health-checking `/ready`), one of
 * them stopped with SIGTERM while 32 streams run: every stream completes, no request is refused,
 * and the stopping replica's `/ready` says 503 while it still serves, so the balancer takes it out
 * before it refuses anything.
 */

const BIN = fileURLToPath(new URL('../../bin/ortserve.js', import.meta.url));
const REPLICAS = 3;
const STREAMS = 32;
/** Above the balancer's check interval (0.5 s). */
const DRAIN_DELAY_SECONDS = 2;
/** Debian's haproxy package (installed by .ci/run), or HAPROXY_PATH. */
const HAPROXY = process.env.HAPROXY_PATH ?? (existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(url: string, ok: (status: number) => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (ok((await fetch(url)).status)) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${url} did not come up in ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));

/** A streamed chat completion: its text events, ending with [DONE] when the stream completed. */
async function stream(url: string): Promise<{ status: number; events: string[] }> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tinystories-gpt2', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 48, temperature: 0, stream: true }),
  });
  const text = await response.text();
  return { status: response.status, events: text.split('\n\n').filter((event) => event.startsWith('data: ')) };
}

describe('a fleet behind HAProxy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ortserve-fleet-'));
  const replicas: { port: number; child: ChildProcess }[] = [];
  let balancer: ChildProcess;
  let front: string;

  beforeAll(async () => {
    for (let i = 0; i < REPLICAS; i++) {
      const port = await freePort();
      const child = spawn(process.execPath, [BIN, '--port', String(port), '--host', '127.0.0.1', '--threads', '1', '--drain-delay', String(DRAIN_DELAY_SECONDS), '--log-level', 'warn'], {
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      replicas.push({ port, child });
    }
    await Promise.all(replicas.map(({ port }) => waitFor(`http://127.0.0.1:${port}/ready`, (status) => status === 200)));
    const frontPort = await freePort();
    const config = [
      'defaults',
      '  mode http',
      '  timeout connect 2s',
      '  timeout client 120s',
      '  timeout server 120s',
      '  option http-buffer-request',
      '  retries 3',
      '  option redispatch 1',
      '  retry-on conn-failure empty-response 503',
      'frontend api',
      `  bind 127.0.0.1:${frontPort}`,
      '  default_backend replicas',
      'backend replicas',
      '  balance roundrobin',
      '  option httpchk GET /ready',
      '  http-check expect status 200',
      // The balancer notices a replica leaving only at its next check: up to half a second on.
      '  default-server check inter 500ms fall 1 rise 2',
      ...replicas.map(({ port }, i) => `  server r${i} 127.0.0.1:${port}`),
      '',
    ].join('\n');
    const configPath = join(dir, 'haproxy.cfg');
    writeFileSync(configPath, config);
    balancer = spawn(HAPROXY, ['-f', configPath, '-db'], { stdio: ['ignore', 'ignore', 'inherit'] });
    balancer.once('error', (err) => {
      throw new Error(`HAProxy could not be started (Debian's haproxy package is needed): ${err.message}`);
    });
    front = `http://127.0.0.1:${frontPort}`;
    await waitFor(`${front}/v1/models`, (status) => status === 200);
  });

  afterAll(async () => {
    balancer?.kill('SIGKILL');
    for (const { child } of replicas) if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses no stream and refuses no request while a replica drains', async () => {
    const leaving = replicas[0]!;
    const streams = Array.from({ length: STREAMS }, () => stream(front));
    // Once streams are running everywhere, the first replica is told to stop.
    await new Promise((resolve) => setTimeout(resolve, 300));
    leaving.child.kill('SIGTERM');
    const leavingExit = exited(leaving.child);
    await waitFor(`http://127.0.0.1:${leaving.port}/ready`, (status) => status === 503, 5_000);
    // Requests keep arriving through the balancer from the moment it says it is not ready (before
    // the balancer's next check), through its drain delay, and after it refuses.
    const completion = (url: string) =>
      fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tinystories-gpt2', prompt: 'Once upon a time', max_tokens: 4 }),
      }).then((response) => response.status);
    const during: Promise<number>[] = [];
    const wave = () => {
      for (let i = 0; i < 6; i++) during.push(completion(front));
    };
    wave();
    // Not ready, yet still serving: what reaches it before the balancer notices is answered.
    expect(await completion(`http://127.0.0.1:${leaving.port}`)).toBe(200);
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, (DRAIN_DELAY_SECONDS * 1000) / 3));
      wave();
    }
    const results = await Promise.all(streams);
    for (const { status, events } of results) {
      expect(status).toBe(200);
      expect(events.at(-1)).toBe('data: [DONE]');
    }
    expect(await Promise.all(during)).toEqual(during.map(() => 200));
    expect(await leavingExit).toBe(0);
  });
});
