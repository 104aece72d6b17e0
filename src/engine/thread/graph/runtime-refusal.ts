/**
 * Why the runtime refused to load a graph, in a sentence that names the operator, from the
 * message onnxruntime throws (which carries source paths and C++ signatures).
 */
export function runtimeRefusal(message: string, device: string): string {
  const firstLine = message.split('\n')[0]!.trim();
  const noKernel = /Could not find an implementation for (\w+)\((\d+)\) node with name '([^']*)'/.exec(firstLine);
  if (noKernel) {
    const [, op, version, node] = noKernel;
    return `the operator ${op} (version ${version}, node '${node}') has no ${device} kernel in onnxruntime ${RUNTIME_VERSION}`;
  }
  const unknown = /([\w.]*):(\w+)\((-?\d+)\) is not a registered function\/op/.exec(firstLine);
  if (unknown) {
    const [, domain, op] = unknown;
    return `the operator ${op}${domain ? ` of domain ${domain}` : ''} is not one onnxruntime ${RUNTIME_VERSION} knows`;
  }
  // A kernel that refused its node's attributes or inputs: "<file>:<line> onnxruntime::contrib::Op<T>::Op(...) [with …] <check> was false. <why>".
  const kernel = /onnxruntime::(?:\w+::)*?(\w+)(?:<[^>]*>)?::\1\(/.exec(firstLine);
  if (kernel) {
    const why = /was false\.\s*(.+)$/.exec(firstLine)?.[1] ?? firstLine.slice(kernel.index + kernel[0].length).replace(/^[^)]*\)\s*/, '');
    return `the operator ${kernel[1]} refused its node: ${why.trim()}`;
  }
  return firstLine;
}

const RUNTIME_VERSION = '1.29';
