// PCI addresses as sysfs names them: DOMAIN:BUS:DEVICE.FUNCTION, lower-case
// hex, domain 4 digits (the kernel's "%04x:%02x:%02x.%d" in pci_setup_device;
// domains above 0xffff, as VMD makes, print wider).
import { InvalidAddressError } from './errors';

const ADDRESS = /^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/;

/** The parts of a PCI address. */
export interface PciAddressParts {
  readonly domain: number;
  readonly bus: number;
  readonly device: number;
  readonly function: number;
}

/** Parse `0000:01:00.0` (or `01:00.0`, domain 0); throws InvalidAddressError. */
export function parsePciAddress(input: string): PciAddressParts {
  const m = ADDRESS.exec(input.trim());
  if (!m) throw new InvalidAddressError(input);
  const parts = {
    domain: m[1] === undefined ? 0 : parseInt(m[1], 16),
    bus: parseInt(m[2]!, 16),
    device: parseInt(m[3]!, 16),
    function: parseInt(m[4]!, 10),
  };
  // A device number is 5 bits: 0x20 and up cannot exist on a PCI bus.
  if (parts.device > 0x1f) throw new InvalidAddressError(input);
  return parts;
}

/** The sysfs spelling of an address. */
export function formatPciAddress(p: PciAddressParts): string {
  const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
  return `${hex(p.domain, 4)}:${hex(p.bus, 2)}:${hex(p.device, 2)}.${p.function}`;
}

/** Any accepted spelling of an address, in the one spelling sysfs uses. */
export function normalizePciAddress(input: string): string {
  return formatPciAddress(parsePciAddress(input));
}

/** True if `s` is already a canonical sysfs PCI device name. */
export function isPciAddress(s: string): boolean {
  return /^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/.test(s);
}
