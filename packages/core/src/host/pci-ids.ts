// Human names for PCI ids from the pci.ids database (pciutils' format: a
// vendor line, tab-indented device lines, double-tab subsystem lines; `C`
// lines for classes with tab-indented subclasses and programming interfaces).
// A host without the file still works: names are simply absent.
import type { HostFs } from './seam';

/** Where distributions install pci.ids (Debian's `pci.ids` package, hwdata on Fedora). */
export const PCI_IDS_PATHS: readonly string[] = ['/usr/share/misc/pci.ids', '/usr/share/hwdata/pci.ids', '/usr/share/pci.ids'];

/** Names for one device's ids; each absent when the database does not know it. */
export interface PciNames {
  readonly vendor?: string;
  readonly device?: string;
  readonly subsystem?: string;
  readonly className?: string;
}

/** A parsed pci.ids database. */
export interface PciIds {
  /** The file it came from, or undefined when the host has none. */
  readonly source: string | undefined;
  namesFor(ids: {
    vendorId: number;
    deviceId: number;
    subsystemVendorId?: number;
    subsystemDeviceId?: number;
    classCode: number;
  }): PciNames;
}

/** Read the first pci.ids found on the host; an empty database when there is none. */
export function loadPciIds(host: HostFs, paths: readonly string[] = PCI_IDS_PATHS): PciIds {
  for (const p of paths) {
    const text = host.readText(p);
    if (text !== undefined) return parsePciIds(text, p);
  }
  return parsePciIds('', undefined);
}

const key = (...parts: number[]) => parts.map((n) => n.toString(16)).join(':');

/** Split on the first run of whitespace: `id  name`. */
function idAndName(line: string, from: number): [string, string] | undefined {
  const m = /^([0-9a-fA-F]+)\s+(.*)$/.exec(line.slice(from));
  return m ? [m[1]!.toLowerCase(), m[2]!] : undefined;
}

/**
 * Parse pci.ids text. Lines it does not understand are skipped, as lspci
 * does. The file is large (1.3 MB, 40,000 lines) and a host has a few dozen
 * devices, so only vendor lines are indexed up front; a vendor's devices are
 * read the first time one of its ids is asked for.
 */
export function parsePciIds(text: string, source: string | undefined): PciIds {
  const lines = text.split('\n');
  const vendorLine = new Map<string, number>();
  const classes = new Map<string, string>();
  let cls: number | undefined;
  let sub: number | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const c = line.charCodeAt(0);
    if (c === 0x23 /* # */ || line === '') continue;
    if (c === 0x43 /* C */ && line.charCodeAt(1) === 0x20) {
      const p = idAndName(line, 2);
      if (p) classes.set(key((cls = parseInt(p[0], 16))), p[1]);
      sub = undefined;
    } else if (c !== 0x09 /* tab */) {
      cls = undefined;
      const p = idAndName(line, 0);
      if (p && p[0].length === 4) vendorLine.set(p[0], i);
    } else if (cls !== undefined) {
      if (line.charCodeAt(1) === 0x09) {
        const p = idAndName(line, 2);
        if (p && sub !== undefined) classes.set(key(cls, sub, parseInt(p[0], 16)), p[1]);
      } else {
        const p = idAndName(line, 1);
        if (p) classes.set(key(cls, (sub = parseInt(p[0], 16))), p[1]);
      }
    }
  }

  /** A vendor's devices and subsystems, read on first use. */
  const vendors = new Map<number, { name: string; devices: Map<string, string>; subsystems: Map<string, string> } | undefined>();
  const vendor = (id: number) => {
    if (vendors.has(id)) return vendors.get(id);
    const at = vendorLine.get(id.toString(16).padStart(4, '0'));
    let entry: { name: string; devices: Map<string, string>; subsystems: Map<string, string> } | undefined;
    if (at !== undefined) {
      entry = { name: idAndName(lines[at]!, 0)![1], devices: new Map(), subsystems: new Map() };
      let device: string | undefined;
      for (let i = at + 1; i < lines.length; i++) {
        const line = lines[i]!;
        if (line.startsWith('#') || line === '') continue;
        if (line.charCodeAt(0) !== 0x09) break;
        if (line.charCodeAt(1) === 0x09) {
          const m = /^\t\t([0-9a-fA-F]{4}) ([0-9a-fA-F]{4})\s+(.*)$/.exec(line);
          if (m && device !== undefined) entry.subsystems.set(`${device}:${m[1]!.toLowerCase()}:${m[2]!.toLowerCase()}`, m[3]!);
        } else {
          const p = idAndName(line, 1);
          if (p) entry.devices.set((device = p[0]), p[1]);
        }
      }
    }
    vendors.set(id, entry);
    return entry;
  };
  const hex4 = (n: number) => n.toString(16).padStart(4, '0');

  return {
    source,
    namesFor(ids) {
      const base = (ids.classCode >> 16) & 0xff;
      const subclass = (ids.classCode >> 8) & 0xff;
      // lspci names a device by its subclass ("VGA compatible controller"),
      // falling back to the base class; the programming interface is a detail it shows only with -v.
      const className = classes.get(key(base, subclass)) ?? classes.get(key(base));
      const v = vendor(ids.vendorId);
      const subsystem =
        ids.subsystemVendorId !== undefined && ids.subsystemDeviceId !== undefined
          ? v?.subsystems.get(`${hex4(ids.deviceId)}:${hex4(ids.subsystemVendorId)}:${hex4(ids.subsystemDeviceId)}`)
          : undefined;
      return omitUndefined({
        vendor: v?.name,
        device: v?.devices.get(hex4(ids.deviceId)),
        subsystem,
        className,
      });
    },
  };
}

function omitUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
