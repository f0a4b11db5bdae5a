// What the host model reads from a device's PCI configuration space (the
// sysfs `config` file). Unprivileged readers get only the first 64 bytes
// (pci_read_config in drivers/pci/pci-sysfs.c), so everything past the header
// is optional: absent means "not visible", not "not there".

/** Header layouts (PCI_HEADER_TYPE, config offset 0x0e, low 7 bits). */
export type HeaderType = 'normal' | 'bridge' | 'cardbus' | 'unknown';

/** PCI Express device/port type (PCI_EXP_FLAGS_TYPE of the PCIe capability). */
export type PcieType =
  | 'endpoint'
  | 'legacy-endpoint'
  | 'root-port'
  | 'upstream-port'
  | 'downstream-port'
  | 'pcie-to-pci-bridge'
  | 'pci-to-pcie-bridge'
  | 'rc-integrated-endpoint'
  | 'rc-event-collector';

/**
 * Access Control Services (PCIe extended capability 0x000d). The kernel's
 * pci_acs_enabled() decides groups from these bits: a downstream port that
 * lacks SV/RR/CR/UF lets peer-to-peer traffic bypass the IOMMU, so devices
 * below it share a group.
 */
export interface AcsInfo {
  /** ACS Capability register (offset 4). */
  readonly capabilities: number;
  /** ACS Control register (offset 6). */
  readonly control: number;
  /** Control bits that are on, by name (`SV`, `TB`, `RR`, `CR`, `UF`, `EC`, `DT`). */
  readonly enabled: readonly string[];
}

/** What the config space shows, as far as it is readable. */
export interface ConfigSpaceInfo {
  readonly headerType: HeaderType;
  readonly multifunction: boolean;
  /** PCI_INTERRUPT_PIN (0x3d): 0 without INTx, 1-4 for INTA-INTD. */
  readonly interruptPin: number;
  /** Whether the capability list (when readable) has MSI (id 0x05) and MSI-X (id 0x11). */
  readonly msi?: boolean;
  readonly msix?: boolean;
  readonly pcieType?: PcieType;
  readonly acs?: AcsInfo;
}

const PCIE_TYPES: Readonly<Record<number, PcieType>> = {
  0x0: 'endpoint',
  0x1: 'legacy-endpoint',
  0x4: 'root-port',
  0x5: 'upstream-port',
  0x6: 'downstream-port',
  0x7: 'pcie-to-pci-bridge',
  0x8: 'pci-to-pcie-bridge',
  0x9: 'rc-integrated-endpoint',
  0xa: 'rc-event-collector',
};

const ACS_BITS: readonly string[] = ['SV', 'TB', 'RR', 'CR', 'UF', 'EC', 'DT'];

const PCI_CAP_ID_EXP = 0x10;
const PCI_CAP_ID_MSI = 0x05;
const PCI_CAP_ID_MSIX = 0x11;
const PCI_EXT_CAP_ID_ACS = 0x0d;

/** Parse the readable part of a config space; undefined when even the header is missing. */
export function parseConfigSpace(config: Uint8Array | undefined): ConfigSpaceInfo | undefined {
  if (config === undefined || config.length < 0x40) return undefined;
  const u8 = (o: number) => config[o]!;
  const u16 = (o: number) => u8(o) | (u8(o + 1) << 8);
  const u32 = (o: number) => (u16(o) | (u16(o + 2) << 16)) >>> 0;

  const rawHeader = u8(0x0e);
  const headerType: HeaderType = (['normal', 'bridge', 'cardbus'] as const)[rawHeader & 0x7f] ?? 'unknown';

  // Standard capability list (PCI_CAPABILITY_LIST at 0x34 when PCI_STATUS_CAP_LIST is set).
  let pcieType: PcieType | undefined;
  let caps: { msi: boolean; msix: boolean } | undefined;
  if (config.length >= 0x100) {
    caps = { msi: false, msix: false };
    let pos = u16(0x06) & 0x10 ? u8(0x34) & 0xfc : 0;
    for (let hops = 0; pos >= 0x40 && hops < 48; hops++) {
      const id = u8(pos);
      if (id === PCI_CAP_ID_EXP && pcieType === undefined) pcieType = PCIE_TYPES[(u16(pos + 2) >> 4) & 0xf];
      if (id === PCI_CAP_ID_MSI) caps.msi = true;
      if (id === PCI_CAP_ID_MSIX) caps.msix = true;
      pos = u8(pos + 1) & 0xfc;
    }
  }

  // Extended capabilities start at 0x100 and exist only on PCIe devices.
  let acs: AcsInfo | undefined;
  if (pcieType !== undefined && config.length >= 0x104) {
    let pos = 0x100;
    for (let hops = 0; pos >= 0x100 && pos + 8 <= config.length && hops < 512; hops++) {
      const header = u32(pos);
      if (header === 0 || header === 0xffffffff) break;
      if ((header & 0xffff) === PCI_EXT_CAP_ID_ACS) {
        const control = u16(pos + 6);
        acs = {
          capabilities: u16(pos + 4),
          control,
          enabled: ACS_BITS.filter((_, bit) => control & (1 << bit)),
        };
        break;
      }
      pos = (header >>> 20) & 0xffc;
    }
  }

  return {
    headerType,
    multifunction: (rawHeader & 0x80) !== 0,
    interruptPin: u8(0x3d),
    ...(caps === undefined ? {} : caps),
    ...(pcieType === undefined ? {} : { pcieType }),
    ...(acs === undefined ? {} : { acs }),
  };
}
