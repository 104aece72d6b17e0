import { pullEvents } from '../../src/model/hub/progress.js';

/** What a pull shows: a bar on a terminal, log lines otherwise. */

function logger() {
  const lines: { level: string; fields: Record<string, unknown>; message: string }[] = [];
  return {
    lines,
    log: {
      info: (fields: object, message: string) => lines.push({ level: 'info', fields: fields as Record<string, unknown>, message }),
      warn: (fields: object, message: string) => lines.push({ level: 'warn', fields: fields as Record<string, unknown>, message }),
    },
  };
}

describe('pull progress', () => {
  it('on a terminal, a bar that is redrawn in place and ends with the file', () => {
    const { log, lines } = logger();
    let shown = '';
    const terminal = { columns: 100, write: (text: string) => ((shown += text), true) } as unknown as NodeJS.WriteStream;
    const events = pullEvents(log, terminal);
    events.started('onnx/model_q4.onnx', 2_000_000, 0);
    events.progress('onnx/model_q4.onnx', 500_000, 2_000_000);
    events.finished('onnx/model_q4.onnx', 2_000_000);
    const frames = shown.split('\r').filter(Boolean);
    expect(frames[1]).toMatch(/^onnx\/model_q4.onnx \[#{6}-{18}\]  25% 0.5\/2.0 MB/);
    expect(frames.at(-1)).toMatch(/\[#{24}\] 100% 2.0\/2.0 MB .*\n$/);
    // The bar stands for the periodic progress lines.
    expect(lines.map((line) => line.message)).toEqual(['downloading', 'downloaded and checked']);
  });

  it('without one, a line when a file starts, resumes, fails and ends', () => {
    const { log, lines } = logger();
    const events = pullEvents(log);
    events.started('model.onnx_data', 1000, 0);
    events.retrying('model.onnx_data', 'the transfer failed (terminated); 400 of 1000 bytes kept, resuming from there', 1);
    events.started('model.onnx_data', 1000, 400);
    events.finished('model.onnx_data', 1000);
    expect(lines).toEqual([
      { level: 'info', fields: { file: 'model.onnx_data', bytes: 1000 }, message: 'downloading' },
      { level: 'warn', fields: { file: 'model.onnx_data', attempt: 1 }, message: 'download failed: the transfer failed (terminated); 400 of 1000 bytes kept, resuming from there' },
      { level: 'info', fields: { file: 'model.onnx_data', bytes: 1000, resumingAt: 400 }, message: 'resuming download' },
      { level: 'info', fields: { file: 'model.onnx_data', bytes: 1000 }, message: 'downloaded and checked' },
    ]);
  });
});
