import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Sends bytes as they are over a new connection and reads the answer until the server closes it.
 * For what no HTTP client sends: odd request targets, missing or odd headers.
 */
export function rawRequest(url: string, bytes: string, timeoutMs = 10_000): Promise<RawResponse> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms to ${JSON.stringify(bytes.slice(0, 120))}`));
    }, timeoutMs);
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      // Interim answers (100 Continue) come before the one that counts.
      const text = Buffer.concat(chunks).toString('utf8').replace(/^(HTTP\/1\.[01] 1\d\d [^\r]*\r\n\r\n)+/, '');
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of headerLines) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status, headers, body: rest.join('\r\n\r\n') });
    });
    socket.write(bytes);
  });
}

/** A request with a JSON body (when given), `Connection: close`, and the headers given. */
export function rawJsonRequest(url: string, method: string, target: string, body?: unknown, headers: Record<string, string> = { host: new URL(url).host }): Promise<RawResponse> {
  const payload = body === undefined ? '' : JSON.stringify(body);
  const lines = [`${method} ${target} HTTP/1.1`, ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`), 'Connection: close'];
  if (body !== undefined) lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(payload)}`);
  return rawRequest(url, `${lines.join('\r\n')}\r\n\r\n${payload}`);
}
