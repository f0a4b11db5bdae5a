// Reading a guest spec from YAML: the yaml package parses, a zod schema checks
// the shape and names the field that is wrong, and core's guestSpecProblems
// checks the rules that span fields. The result is core's GuestSpec.
import { readFileSync } from 'node:fs';
import { isMap, isNode, LineCounter, parseDocument, type Document } from 'yaml';
import { z } from 'zod';
import { guestSpecProblems, normalizePciAddress as canonicalAddress, type DeviceSelector, type GuestSpec } from '@vfiokit/core';
import { CliError, invalidInput, notFound } from './errors';
import { ExitCode } from './exit-codes';
import { readSize, SIZE_GRAMMAR } from './sizes';
import { closest } from './did-you-mean';

const PCI_ID = /^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$/;

/** `01:00.0` or `0000:01:00.0` -> `0000:01:00.0`, by core's one address grammar; undefined if it is not an address. */
export function normalizePciAddress(text: string): string | undefined {
  try {
    return canonicalAddress(text);
  } catch {
    return undefined;
  }
}

/** Less RAM than this is a unit slip (`memory: 4096` is bytes, not MiB), not a guest. */
const SMALLEST_GUEST = 1n << 20n;

const memory = z
  .union([z.number().int().positive(), z.string()], { error: `expected ${SIZE_GRAMMAR}` })
  .transform((value, ctx): bigint => {
    // The command line's grammar exactly (sizes.ts): a bare number is bytes, suffixes are binary.
    const r = readSize(String(value));
    if ('problem' in r) {
      ctx.addIssue({ code: 'custom', message: r.problem });
      return z.NEVER;
    }
    if (r.bytes < SMALLEST_GUEST) {
      ctx.addIssue({ code: 'custom', message: `${value} bytes is too little for a guest (a bare number is bytes); did you mean ${value}M or ${value}G?` });
      return z.NEVER;
    }
    return r.bytes;
  });

const idSelector = (text: string, index: number, ctx: z.RefinementCtx): DeviceSelector => {
  const m = PCI_ID.exec(text.trim());
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is neither a PCI address (0000:01:00.0) nor vendor:device IDs (10de:1b80)` });
    return z.NEVER;
  }
  return { vendor: parseInt(m[1]!, 16), device: parseInt(m[2]!, 16), index };
};

// Both spellings parse to the same raw shape first, so a bad entry gets the
// message of the spelling it used rather than zod's "Invalid input" for a union.
const deviceObject = z.strictObject({
  address: z.string().optional(),
  id: z.string().optional(),
  index: z.number().int().nonnegative().optional(),
});

const device = z.union([z.string(), deviceObject], { error: 'expected a PCI address, vendor:device IDs, or {address:} / {id:, index:}' }).transform(
  (d, ctx): DeviceSelector => {
    if (typeof d === 'string') {
      const address = normalizePciAddress(d);
      return address !== undefined ? { address } : idSelector(d, 0, ctx);
    }
    if ((d.address === undefined) === (d.id === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of address: or id:' });
      return z.NEVER;
    }
    if (d.address !== undefined) {
      if (d.index !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['index'], message: 'index: goes with id:, not with address:' });
        return z.NEVER;
      }
      const address = normalizePciAddress(d.address);
      if (address === undefined) {
        ctx.addIssue({ code: 'custom', path: ['address'], message: `"${d.address}" is not a PCI address such as 0000:01:00.0` });
        return z.NEVER;
      }
      return { address };
    }
    return idSelector(d.id!, d.index ?? 0, ctx);
  },
);

export const guestSpecSchema = z
  .strictObject({
    name: z
      .string({ error: 'expected the guest name, a string' })
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'use letters, digits, ".", "_" and "-", starting with a letter or digit'),
    memory,
    cpus: z.number({ error: 'expected a number of vCPUs' }).int().min(1).max(4096).default(1),
    machine: z.enum(['q35', 'pseries']).default('q35'),
    iommu: z.enum(['none', 'intel-iommu', 'virtio-iommu', 'spapr-tce']).optional(),
    devices: z.array(device).min(1, 'list at least one device to assign'),
  })
  .transform(
    (s): GuestSpec => ({
      name: s.name,
      memoryBytes: s.memory,
      cpus: s.cpus,
      machine: s.machine,
      // pseries has TCE translation whether asked or not; q35 has none unless asked.
      iommu: s.iommu ?? (s.machine === 'pseries' ? 'spapr-tce' : 'none'),
      devices: s.devices,
    }),
  );

/** `devices[1].address`, the way a person finds it in the file. */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out || '(top level)';
}

/** The keys each mapping of a spec takes, for "did you mean". */
const TOP_KEYS = ['name', 'memory', 'cpus', 'machine', 'iommu', 'devices'];
const DEVICE_KEYS = ['address', 'id', 'index'];

/** One problem of a spec, placed in the file. */
interface Placed {
  readonly line: number;
  readonly col: number;
  readonly field: string;
  readonly message: string;
}

/** Where in the file `path` (and, for an unknown key, that key) sits: the nearest node that exists. */
function positionOf(doc: Document, lines: LineCounter, path: readonly PropertyKey[], key?: string): { line: number; col: number } {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n) as unknown[], true);
    if (!isNode(node) || !node.range) continue;
    let offset = node.range[0];
    if (n === path.length && key !== undefined && isMap(node)) {
      const pair = node.items.find((p) => isNode(p.key) && (p.key as { value?: unknown }).value === key);
      if (pair && isNode(pair.key) && pair.key.range) offset = pair.key.range[0];
    }
    return lines.linePos(offset);
  }
  return { line: 1, col: 1 };
}

/** zod's issues as placed problems, with a did-you-mean where a name was misspelt. */
function placeIssues(doc: Document, lines: LineCounter, issues: readonly z.core.$ZodIssue[]): Placed[] {
  const out: Placed[] = [];
  for (const i of issues) {
    if (i.code === 'unrecognized_keys') {
      const known = i.path.length === 0 ? TOP_KEYS : DEVICE_KEYS;
      for (const key of i.keys) {
        const near = closest(key, known);
        out.push({
          ...positionOf(doc, lines, i.path, key),
          field: fieldPath([...i.path, key]),
          message: `unknown field${near ? `; did you mean ${near}?` : `; the fields are ${known.join(', ')}`}`,
        });
      }
      continue;
    }
    let message = i.message;
    if (i.code === 'invalid_value') {
      const values = i.values.map(String);
      const got = doc.getIn(i.path as unknown[]);
      const near = typeof got === 'string' ? closest(got, values) : undefined;
      message = `${JSON.stringify(got)} is not one of ${values.join(', ')}${near ? `; did you mean ${near}?` : ''}`;
    }
    out.push({ ...positionOf(doc, lines, i.path), field: fieldPath(i.path), message });
  }
  return out;
}

/** A spec's problems as one error: the first on the summary line, all of them in the details. */
function specError(source: string, problems: readonly Placed[]): CliError {
  const at = (p: Placed) => `${source}:${p.line}:${p.col}: ${p.field}: ${p.message}`;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
  return new CliError('SPEC_INVALID', `${at(problems[0]!)}${more}`, ExitCode.InvalidInput, 'see packages/cli/examples/*.yaml for the fields a guest spec takes', {
    details: problems.length > 1 ? problems.map(at) : [],
  });
}

/** Parse and check a guest spec; `source` names it in messages. */
export function parseGuestSpec(text: string, source: string): GuestSpec {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, lineCounter });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = lineCounter.linePos(e.pos[0]);
    throw new CliError(
      'SPEC_MALFORMED_YAML',
      `${source}:${pos.line}:${pos.col}: not valid YAML: ${e.message.split('\n')[0]}`,
      ExitCode.InvalidInput,
      'fix the YAML syntax; see packages/cli/examples/*.yaml',
    );
  }
  const result = guestSpecSchema.safeParse(doc.toJS());
  if (!result.success) throw specError(source, placeIssues(doc, lineCounter, result.error.issues));
  const problems = guestSpecProblems(result.data);
  if (problems.length > 0) {
    // core names fields as `devices[1]`: back to a path to find them in the file.
    const pathOf = (field: string) => field.split(/[.[\]]/).filter(Boolean).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    throw specError(
      source,
      problems.map((p) => ({ ...positionOf(doc, lineCounter, pathOf(p.field)), field: p.field, message: p.message })),
    );
  }
  return result.data;
}

export function readGuestSpec(file: string): GuestSpec {
  let text: string;
  try {
    text = file === '-' ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw notFound(`guest spec ${file} does not exist`, 'give the path of a YAML guest spec, e.g. packages/cli/examples/gpu-passthrough.yaml');
    throw invalidInput(`cannot read guest spec ${file}: ${(err as Error).message}`, 'check the path and its permissions');
  }
  return parseGuestSpec(text, file === '-' ? '(stdin)' : file);
}
