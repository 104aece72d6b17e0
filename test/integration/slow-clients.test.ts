import net from 'node:net';
import type { RunningServer } from '../../src/server.js';
import { request, startTestServer } from '../helpers/server.js';

/**
 * Slow and hostile clients: a body trickled a byte at a time, a stream nobody reads, idle
 * connections, requests abandoned halfway, malformed HTTP. None of them may hold up the requests
 * of other clients, and the server cleans up after them.
 */

const MODEL = 'tinystories-gpt2';
const completion = { model: MODEL, prompt: 'Once upon a time', max_tokens: 4 };
const chat = { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 };
/** A normal request takes tens of milliseconds here; this much means something held it up. */
const PROMPTLY_MS = 2000;
/** Set to run the tests that wait for the server's own timeouts (a minute or more). */

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(10);
  }
}

/** The request line and headers of a raw HTTP/1.1 request with a JSON body. */
const rawHead = (path: string, body: string) =>
  `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;

interface RawResponse {
  status: number;
  headers: string;
  body: string;
}

function parseResponse(text: string): RawResponse {
  const end = text.indexOf('\r\n\r\n');
  const head = end === -1 ? text : text.slice(0, end);
  const status = /^HTTP\/1\.1 (\d{3})/.exec(head);
  if (!status) throw new Error(`not an HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  return { status: Number(status[1]), headers: head, body: end === -1 ? '' : text.slice(end + 4) };
}

/** OpenAI's error shape: `{ error: { message, type, param, code } }`. */
function expectOpenAIError(text: string) {
  let body: unknown;
  expect(() => (body = JSON.parse(text))).not.toThrow();
  expect(body).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: expect.any(String) } });
  expect((body as { error: { message: string } }).error.message).not.toBe('');
}

describe('slow and hostile clients do not stall other requests', () => {
  let server: RunningServer;
  const sockets = new Set<net.Socket>();
  /** The server's side of each connection, by the client's port. */
  const connections = new Map<number, net.Socket>();

  /** A raw connection; whatever the server sends is collected in `received`, and `closed` resolves when it closes. */
  async function connect(target: RunningServer = server): Promise<{ socket: net.Socket; received: () => string; closed: Promise<number> }> {
    const socket = net.connect(Number(new URL(target.url).port), '127.0.0.1');
    sockets.add(socket);
    const chunks: Buffer[] = [];
    const opened = Date.now();
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', () => undefined); // a reset once the server cuts it off
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return { socket, received: () => Buffer.concat(chunks).toString(), closed };
  }

  /** Normal requests on both endpoints, side by side: each must be answered, and promptly. */
  async function othersAreServedPromptly(count = 4): Promise<void> {
    const elapsed = await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const started = performance.now();
        const response = i % 2 === 0 ? await request(server, 'POST', '/v1/completions', completion) : await request(server, 'POST', '/v1/chat/completions', chat);
        expect(response.status).toBe(200);
        return performance.now() - started;
      }),
    );
    for (const ms of elapsed) expect(ms).toBeLessThan(PROMPTLY_MS);
  }

  beforeAll(async () => {
    server = await startTestServer();
    server.app.server.on('connection', (socket: net.Socket) => connections.set(socket.remotePort!, socket));
  });
  afterEach(() => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
  });
  afterAll(async () => {
    await server.close();
  });

  it('clients trickling their headers or their body a byte every 100 ms hold nobody up, and are answered once they finish', async () => {
    const body = JSON.stringify({ model: MODEL, prompt: 'Hi', max_tokens: 1 });
    const head = rawHead('/v1/completions', body);
    const bySlowHead = await connect();
    const bySlowBody = await connect();
    bySlowBody.socket.write(head);
    const whole = head + body;
    let headSent = 0;
    let bodySent = 0;
    const trickle = setInterval(() => {
      if (headSent < head.length) bySlowHead.socket.write(whole[headSent++]!);
      if (bodySent < body.length) bySlowBody.socket.write(body[bodySent++]!);
    }, 100);
    try {
      await until(() => bodySent >= 3, 'the trickle has begun');
      await othersAreServedPromptly();
      await othersAreServedPromptly();
      // Both are still trickling: the requests above were served meanwhile.
      expect(headSent).toBeLessThan(head.length);
      expect(bodySent).toBeLessThan(body.length);
      expect(bySlowHead.received()).toBe('');
      expect(bySlowBody.received()).toBe('');
    } finally {
      clearInterval(trickle);
    }
    bySlowHead.socket.write(whole.slice(headSent));
    bySlowBody.socket.write(body.slice(bodySent));
    await Promise.all([bySlowHead.closed, bySlowBody.closed]);
    for (const client of [bySlowHead, bySlowBody]) {
      const response = parseResponse(client.received());
      expect(response.status).toBe(200);
      expect(JSON.parse(response.body).object).toBe('text_completion');
    }
  });

  it('a streaming client that never reads holds nobody up, and its generation stops when it leaves', async () => {
    // Eight long choices with the end-of-text token banned, so that the stream outlasts the requests below.
    const body = JSON.stringify({ model: MODEL, prompt: 'Once upon a time', max_tokens: 500, n: 8, stream: true, logit_bias: { 0: -100 } });
    const head = rawHead('/v1/completions', body);
    const reader = await connect();
    reader.socket.pause(); // never reads
    reader.socket.write(head + body);
    // 50 tokens into each choice: by now the client has left tens of kilobytes unread.
    await until(() => server.engine.stats.kvTokens >= 8 * 50, 'the stream is well under way');
    const unread = connections.get(reader.socket.localPort!)!;
    expect(unread.bytesWritten).toBeGreaterThan(10_000);
    await othersAreServedPromptly();
    await othersAreServedPromptly();
    expect(server.engine.load).toBeGreaterThanOrEqual(8); // the stream is still generating
    reader.socket.destroy();
    await until(() => server.engine.load === 0, 'the abandoned generation is cancelled');
    await until(() => server.lifecycle.requestsInFlight === 0, 'no request is left in flight');
  });

  it('fifty idle connections that never send anything hold nobody up', async () => {
    const idle = await Promise.all(Array.from({ length: 50 }, () => connect()));
    await othersAreServedPromptly(8);
    const health = await request(server, 'GET', '/health');
    expect(health.status).toBe(200);
    expect(idle.every((client) => !client.socket.destroyed && client.received() === '')).toBe(true);
  });

  describe('clients that stop halfway through a request', () => {
    const body = JSON.stringify(completion);
    const head = rawHead('/v1/completions', body);
    const halfway = {
      'part of the request line': head.slice(0, 10),
      'part of the headers': head.slice(0, head.indexOf('Content-Length')),
      'the headers and no body': head,
      'the headers and part of the body': head + body.slice(0, 10),
    };

    it('hold nobody up, twenty of each kind at once', async () => {
      const stalled = await Promise.all(
        Object.values(halfway).flatMap((sent) =>
          Array.from({ length: 20 }, async () => {
            const client = await connect();
            client.socket.write(sent);
            return client;
          }),
        ),
      );
      await othersAreServedPromptly(8);
      expect(stalled.every((client) => !client.socket.destroyed)).toBe(true);
      for (const client of stalled) client.socket.destroy();
      await until(() => server.lifecycle.requestsInFlight === 0, 'the abandoned requests are no longer in flight');
    });

    it('are cut off within 35 s: the request timeout is at most 30 s, headers get no longer, and both are checked every few seconds', () => {
      // Node closes a connection whose request is incomplete `requestTimeout` after it began, or whose
      // headers are incomplete after `headersTimeout`; it looks every `connectionsCheckingInterval`.
      const http = server.app.server as typeof server.app.server & { connectionsCheckingInterval: number };
      expect(http.requestTimeout).toBeGreaterThan(0);
      expect(http.requestTimeout).toBeLessThanOrEqual(30_000);
      expect(http.headersTimeout).toBeGreaterThan(0);
      expect(http.headersTimeout).toBeLessThanOrEqual(http.requestTimeout);
      expect(http.connectionsCheckingInterval).toBeLessThanOrEqual(5_000);
    });

    it('are cut off with a 408 in the error shape once the receive timeout has passed', async () => {
      const impatient = await startTestServer({ receiveTimeoutMs: 1500 });
      try {
        const http = impatient.app.server as typeof impatient.app.server & { connectionsCheckingInterval: number };
        const clients = await Promise.all(
          Object.values(halfway).map(async (sent) => {
            const client = await connect(impatient);
            client.socket.write(sent);
            return client;
          }),
        );
        for (const client of clients) {
          const closedAfter = await client.closed;
          expect(closedAfter).toBeGreaterThanOrEqual(1000);
          expect(closedAfter).toBeLessThanOrEqual(http.requestTimeout + http.connectionsCheckingInterval + 2000);
          const response = parseResponse(client.received());
          expect(response.status).toBe(408);
          expectOpenAIError(response.body);
        }
      } finally {
        await impatient.close();
      }
    });
  });

  describe('malformed HTTP → a 4xx in the error shape, and the connection closed', () => {
    it.each([
      { what: 'a request line that is not HTTP', sent: 'GARBAGE\r\n\r\n', status: 400 },
      { what: 'a header name with a space', sent: 'POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n', status: 400 },
      { what: 'headers over 16 KiB', sent: `POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nX-Padding: ${'a'.repeat(20_000)}\r\n\r\n`, status: 431 },
      { what: 'a content-length that is not a number', sent: 'POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: many\r\n\r\n', status: 400 },
      {
        what: 'both content-length and chunked encoding',
        sent: 'POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        status: 400,
      },
      {
        what: 'a chunk size that is not hexadecimal',
        sent: 'POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
        status: 400,
      },
    ])('$what → $status', async ({ sent, status }) => {
      const client = await connect();
      client.socket.write(sent);
      await client.closed;
      const response = parseResponse(client.received());
      expect(response.status).toBe(status);
      expectOpenAIError(response.body);
    });
  });

  it('the server is healthy afterwards, with nothing left in flight', async () => {
    for (const socket of sockets) socket.destroy();
    await othersAreServedPromptly();
    await until(() => server.engine.load === 0 && server.lifecycle.requestsInFlight === 0, 'the server is idle');
  });
});
