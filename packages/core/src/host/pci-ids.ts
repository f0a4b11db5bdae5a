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

/** Parse pci.ids text. Lines it does not understand are skipped, as lspci does. */
export function parsePciIds(text: string, source: string | undefined): PciIds {
  const vendors = new Map<string, string>();
  const devices = new Map<string, string>();
  const subsystems = new Map<string, string>();
  const classes = new Map<string, string>();
  let vendor: number | undefined;
  let device: number | undefined;
  let cls: number | undefined;
  let sub: number | undefined;
  let inClasses = false;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    let m: RegExpExecArray | null;
    if ((m = /^C ([0-9a-fA-F]{2})\s+(.*)$/.exec(line))) {
      inClasses = true;
      cls = parseInt(m[1]!, 16);
      classes.set(key(cls), m[2]!);
    } else if ((m = /^([0-9a-fA-F]{4})\s+(.*)$/.exec(line))) {
      inClasses = false;
      vendor = parseInt(m[1]!, 16);
      vendors.set(key(vendor), m[2]!);
    } else if (inClasses && cls !== undefined && (m = /^\t([0-9a-fA-F]{2})\s+(.*)$/.exec(line))) {
      sub = parseInt(m[1]!, 16);
      classes.set(key(cls, sub), m[2]!);
    } else if (inClasses && cls !== undefined && sub !== undefined && (m = /^\t\t([0-9a-fA-F]{2})\s+(.*)$/.exec(line))) {
      classes.set(key(cls, sub, parseInt(m[1]!, 16)), m[2]!);
    } else if (!inClasses && vendor !== undefined && (m = /^\t([0-9a-fA-F]{4})\s+(.*)$/.exec(line))) {
      device = parseInt(m[1]!, 16);
      devices.set(key(vendor, device), m[2]!);
    } else if (
      !inClasses &&
      vendor !== undefined &&
      device !== undefined &&
      (m = /^\t\t([0-9a-fA-F]{4}) ([0-9a-fA-F]{4})\s+(.*)$/.exec(line))
    ) {
      subsystems.set(key(vendor, device, parseInt(m[1]!, 16), parseInt(m[2]!, 16)), m[3]!);
    }
  }
  return {
    source,
    namesFor(ids) {
      const base = (ids.classCode >> 16) & 0xff;
      const subclass = (ids.classCode >> 8) & 0xff;
      // lspci names a device by its subclass ("VGA compatible controller"),
      // falling back to the base class; the programming interface is a detail it shows only with -v.
      const className = classes.get(key(base, subclass)) ?? classes.get(key(base));
      const subsystem =
        ids.subsystemVendorId !== undefined && ids.subsystemDeviceId !== undefined
          ? subsystems.get(key(ids.vendorId, ids.deviceId, ids.subsystemVendorId, ids.subsystemDeviceId))
          : undefined;
      return omitUndefined({
        vendor: vendors.get(key(ids.vendorId)),
        device: devices.get(key(ids.vendorId, ids.deviceId)),
        subsystem,
        className,
      });
    },
  };
}

function omitUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
