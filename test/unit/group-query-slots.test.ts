import { addGroupQuerySlots } from '../../src/engine/thread/graph/group-query-slots.js';
import { attentionGraph, type GroupQueryCheck, type Layout } from '../helpers/group-query-slots-check.js';
import { runInWorker } from '../helpers/worker.js';

/**
 * GroupQueryAttention after group-query-slots.ts's edit, rows of different past lengths together
 * over slots that hold garbage past each row's length, against ORT's kernel run on each row alone
 * (see group-query-slots-check.ts).
 */

const HEAD_DIM = 32;
const check = (layout: Layout, pastLengths: number[], step: number) =>
  runInWorker<GroupQueryCheck>(new URL('../helpers/group-query-slots-check.ts', import.meta.url), { layout, pastLengths, step });

describe('GroupQueryAttention rewritten to read slots gives what the kernel gives each row alone', () => {
  it.each<[string, Layout]>([
    ['plain', {}],
    ['rotary fused', { rotary: { dim: HEAD_DIM, interleaved: false } }],
    ['rotary fused, interleaved', { rotary: { dim: HEAD_DIM, interleaved: true } }],
    ['rotary on half of each head', { rotary: { dim: HEAD_DIM / 2, interleaved: false } }],
    ['rotary on half of each head, interleaved', { rotary: { dim: HEAD_DIM / 2, interleaved: true } }],
    ['a local window', { rotary: { dim: HEAD_DIM, interleaved: false }, window: 3 }],
    ['a softcap and a scale', { softcap: 2, scale: 0.7 }],
    ['packed QKV', { packed: true, rotary: { dim: HEAD_DIM, interleaved: false } }],
  ])('%s: rows of pasts 5, 0, 11 and 2 with steps of 3, and of 1', async (_name, layout) => {
    for (const [pastLengths, step] of [
      [[5, 0, 11, 2], 3],
      [[5, 1, 11, 2], 1],
    ] as const) {
      const result = await check(layout, [...pastLengths], step);
      expect(result.outputs).toEqual(['attention_output', 'new_key_values.0.key', 'new_key_values.0.value']);
      expect(result.largest).toBeGreaterThan(0.1);
      expect(result.output).toBeLessThan(1e-5);
      expect(result.newKeyValues).toBeLessThan(1e-5);
    }
  });

  it('says why it leaves a layer as it is, and leaves a graph without one alone', () => {
    expect(addGroupQuerySlots(attentionGraph({ smoothSoftmax: true }), HEAD_DIM)).toBe('GroupQueryAttention attention_output: it uses smooth_softmax');
    expect(addGroupQuerySlots(attentionGraph({ opset: 12 }), HEAD_DIM)).toBe('the graph imports an opset before 13');
    expect(addGroupQuerySlots(new Uint8Array(0), HEAD_DIM)).toBeUndefined();
  });
});
