interface Visit {
  value: unknown;
  depth: number;
  key: string | number | undefined;
  parent: Visit | undefined;
}

/**
 * How deep a JSON value nests, found without recursion (so that no depth can overflow the stack):
 * the path of the first container nested deeper than `maxDepth`, or undefined when none is. The
 * value itself counts as depth 1 when it is an array or an object.
 */
export function tooDeepPath(value: unknown, maxDepth: number): (string | number)[] | undefined {
  const stack: Visit[] = [{ value, depth: 1, key: undefined, parent: undefined }];
  while (stack.length > 0) {
    const visit = stack.pop()!;
    const current = visit.value;
    if (typeof current !== 'object' || current === null) continue;
    if (visit.depth > maxDepth) return pathOf(visit);
    const entries: [string | number, unknown][] = Array.isArray(current) ? current.map((item, index) => [index, item]) : Object.entries(current);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, item] = entries[i]!;
      if (typeof item === 'object' && item !== null) stack.push({ value: item, depth: visit.depth + 1, key, parent: visit });
    }
  }
  return undefined;
}

function pathOf(visit: Visit): (string | number)[] {
  const path: (string | number)[] = [];
  for (let at: Visit | undefined = visit; at?.key !== undefined; at = at.parent) path.unshift(at.key);
  return path;
}
