import { runtimeRefusal } from '../../src/engine/thread/graph/runtime-refusal.js';

/** What onnxruntime 1.29 throws when it cannot load a graph, as a sentence naming the operator. */
describe('runtimeRefusal', () => {
  it('an operator the runtime does not know', () => {
    expect(runtimeRefusal('Fatal error: com.microsoft:MatMulNBitz(-1) is not a registered function/op', 'cpu')).toBe(
      'the operator MatMulNBitz of domain com.microsoft is not one onnxruntime 1.29 knows',
    );
  });

  it('an operator without a kernel on the device', () => {
    expect(runtimeRefusal("Could not find an implementation for ConvInteger(10) node with name 'conv_0'", 'cuda')).toBe(
      "the operator ConvInteger (version 10, node 'conv_0') has no cuda kernel in onnxruntime 1.29",
    );
  });

  it('a kernel that refuses its attributes: its reason, without the source path and signature', () => {
    const thrown =
      'Exception during initialization: /onnxruntime_src/onnxruntime/contrib_ops/cpu/quantization/matmul_nbits.cc:130 onnxruntime::contrib::MatMulNBits<T1>::MatMulNBits(const onnxruntime::OpKernelInfo&) [with T1 = float] nbits_ == 2 || nbits_ == 4 || nbits_ == 8 was false. Only 2b, 4b and 8b quantization is supported for MatMulNBits op, additional bits support is planned.\n';
    expect(runtimeRefusal(thrown, 'cpu')).toBe('the operator MatMulNBits refused its node: Only 2b, 4b and 8b quantization is supported for MatMulNBits op, additional bits support is planned.');
  });

  it('anything else: its first line', () => {
    expect(runtimeRefusal('Load model from x failed: Protobuf parsing failed.\nmore', 'cpu')).toBe('Load model from x failed: Protobuf parsing failed.');
  });
});
