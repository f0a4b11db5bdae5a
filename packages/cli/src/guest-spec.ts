// Reading a guest spec from YAML: the yaml package parses, a zod schema checks
// the shape and names the field that is wrong, and core's guestSpecProblems
// checks the rules that span fields. The result is core's GuestSpec.
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { guestSpecProblems, type DeviceSelector, type GuestSpec } from '@vfiokit/core';
import { CliError, invalidInput, notFound } from './errors';
import { ExitCode } from './exit-codes';

const PCI_ADDRESS = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-1][0-9a-fA-F])\.([0-7])$/;
const PCI_ID = /^([0-9a-fA-F]{4}):([0-9a-fA-F]{4})$/;
const SIZE = /^(\d+)\s*([KMGT])(?:i?B)?$/i;
const UNIT: Readonly<Record<string, bigint>> = { K: 1n << 10n, M: 1n << 20n, G: 1n << 30n, T: 1n << 40n };

/** `01:00.0` or `0000:01:00.0` -> `0000:01:00.0` (lower case, as sysfs names devices). */
export function normalizePciAddress(text: string): string | undefined {
  const m = PCI_ADDRESS.exec(text.trim());
  if (!m) return undefined;
  return `${(m[1] ?? '0000').toLowerCase()}:${m[2]!.toLowerCase()}:${m[3]!.toLowerCase()}.${m[4]}`;
}

const memory = z
  .union([z.number().int().positive(), z.string()], { error: 'expected a size such as 8G, 512M or a number of MiB' })
  .transform((value, ctx): bigint => {
    // A bare number is MiB, as for QEMU's -m; suffixes are binary (8G = 8 GiB), as QEMU reads them.
    if (typeof value === 'number') return BigInt(value) << 20n;
    const m = SIZE.exec(value.trim());
    if (!m) {
      ctx.addIssue({ code: 'custom', message: `"${value}" is not a size; write it as 8G, 8GiB, 512M or a number of MiB` });
      return z.NEVER;
    }
    return BigInt(m[1]!) * UNIT[m[2]!.toUpperCase()]!;
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

/** Parse and check a guest spec; `source` names it in messages. */
export function parseGuestSpec(text: string, source: string): GuestSpec {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, lineCounter });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const pos = lineCounter.linePos(e.pos[0]);
    const where = `line ${pos.line}, column ${pos.col}`;
    throw new CliError('SPEC_MALFORMED_YAML', `${source} is not valid YAML (${where}): ${e.message.split('\n')[0]}`, ExitCode.InvalidInput, 'fix the YAML syntax; see packages/cli/examples/*.yaml');
  }
  const result = guestSpecSchema.safeParse(doc.toJS());
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${fieldPath(i.path)}: ${i.message}`);
    throw new CliError(
      'SPEC_INVALID',
      `${source} is not a valid guest spec:\n${lines.join('\n')}`,
      ExitCode.InvalidInput,
      'see packages/cli/examples/*.yaml for the fields a guest spec takes',
    );
  }
  const problems = guestSpecProblems(result.data);
  if (problems.length > 0) {
    throw new CliError(
      'SPEC_INVALID',
      `${source} is not a valid guest spec:\n${problems.map((p) => `  ${p.field}: ${p.message}`).join('\n')}`,
      ExitCode.InvalidInput,
      'see packages/cli/examples/*.yaml for the fields a guest spec takes',
    );
  }
  return result.data;
}

export function readGuestSpec(file: string): GuestSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw notFound(`guest spec ${file} does not exist`, 'give the path of a YAML guest spec, e.g. packages/cli/examples/gpu-passthrough.yaml');
    throw invalidInput(`cannot read guest spec ${file}: ${(err as Error).message}`, 'check the path and its permissions');
  }
  return parseGuestSpec(text, file);
}
