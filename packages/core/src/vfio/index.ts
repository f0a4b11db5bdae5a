// The TypeScript face of vfio-core: thin typed wrappers over the napi addon,
// so callers never import the addon directly and every failure arrives as a
// VfioError (a VfiokitError with the errno's name as its stable code).
import * as native from '@vfiokit/vfio-core';
import { VfiokitError } from '../errors';

/** IOMMU types and features as `VFIO_CHECK_EXTENSION` numbers them (linux/vfio.h). */
export enum IommuType {
  Type1 = 1,
  SpaprTce = 2,
  Type1v2 = 3,
  DmaCc = 4,
  Eeh = 5,
  Type1Nesting = 6,
  SpaprTceV2 = 7,
  NoIommu = 8,
  UnmapAll = 9,
  UpdateVaddr = 10,
}

/** `VFIO_DMA_MAP_FLAG_*`: what the device may do to the mapped memory. */
export const DmaFlags = { Read: 1, Write: 2, ReadWrite: 3 } as const;

/** vfio-pci's fixed region indexes. */
export const PciRegion = { Bar0: 0, Bar1: 1, Bar2: 2, Bar3: 3, Bar4: 4, Bar5: 5, Rom: 6, Config: 7, Vga: 8 } as const;

export type MockHostConfig = native.MockHostConfig;
export type MockGroupConfig = native.MockGroupConfig;
export type MockDeviceConfig = native.MockDeviceConfig;
export type MockDeviceModel = native.MockDeviceModel;
export type IommuInfo = native.IommuInfo;
export type IovaRange = native.IovaRange;
export type BatchReport = native.BatchReport;
export type GroupStatus = native.GroupStatus;
export type DeviceInfo = native.DeviceInfo;
export type RegionInfo = native.RegionInfo;
export type IrqInfo = native.IrqInfo;
export type DependentDevice = native.DependentDevice;
export type IoasRanges = native.IoasRanges;

/**
 * A VFIO call failed. `code` is the errno's name (`EEXIST`, `EINVAL`, ...),
 * `ioctl` the call, `object` what it was issued on; a batch also names the
 * failing `entryIndex`. The message says what to do about it.
 */
export class VfioError extends VfiokitError {
  constructor(
    code: string,
    message: string,
    readonly errno: number,
    readonly ioctl: string,
    readonly object: string,
    readonly entryIndex?: number,
    readonly detail?: string,
    hint?: string,
  ) {
    super(code, message, hint === undefined ? {} : { hint });
  }
}

interface NativeErrorShape {
  message: string;
  code?: unknown;
  errno?: unknown;
  ioctl?: unknown;
  object?: unknown;
  entryIndex?: unknown;
  detail?: unknown;
  hint?: unknown;
}

function toVfioError(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const e = err as unknown as NativeErrorShape;
  if (typeof e.code !== 'string' || typeof e.errno !== 'number' || typeof e.ioctl !== 'string') return err;
  return new VfioError(
    e.code,
    e.message,
    e.errno,
    e.ioctl,
    typeof e.object === 'string' ? e.object : '',
    typeof e.entryIndex === 'number' ? e.entryIndex : undefined,
    typeof e.detail === 'string' ? e.detail : undefined,
    typeof e.hint === 'string' ? e.hint : undefined,
  );
}

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw toVfioError(err);
  }
}

/** `call` for the binding's promises: a rejection becomes a VfioError too. */
async function callAsync<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw toVfioError(err);
  }
}

/** A VFIO system: the kernel's /dev/vfio or an in-process mock host. */
export class VfioHost {
  private constructor(private readonly backend: native.VfioBackend) {}

  /** The kernel's VFIO at /dev/vfio (or `devDir`). */
  static kernel(devDir?: string): VfioHost {
    return new VfioHost(native.VfioBackend.kernel(devDir));
  }

  /** A mock host that answers as the kernel does; see MockHostConfig for the defaults. */
  static mock(config?: MockHostConfig): VfioHost {
    return new VfioHost(call(() => native.VfioBackend.mock(config)));
  }

  get kind(): 'kernel' | 'mock' {
    return this.backend.kind as 'kernel' | 'mock';
  }

  /**
   * A type1 container holding `groups`, attached in order, its IOMMU set
   * (type1v2 unless `options.iommu` says otherwise). It owns its groups:
   * nothing can drop one under it, so its mappings live exactly as long as
   * it does. `close()` ends it at once; otherwise collection of the last
   * handle (it, or a device or BAR mapping opened from it) closes it.
   */
  openType1(groups: readonly number[], options: { iommu?: IommuType } = {}): Type1Container {
    return new Type1Container(call(() => this.backend.openType1([...groups], options.iommu)));
  }

  /**
   * The iommufd way to hold devices: the device cdevs `cdevs` (the N of
   * /dev/vfio/devices/vfioN, from a device's `vfio-dev/vfioN` in sysfs)
   * bound to a new /dev/iommu and attached to one IOAS. Per device, not per
   * group; a bound device's group cannot be opened the legacy way until
   * this is closed. Needs a kernel with CONFIG_IOMMUFD and
   * CONFIG_VFIO_DEVICE_CDEV (ENOENT otherwise: /dev/iommu is missing).
   */
  openIommufd(cdevs: readonly number[]): IommufdSpace {
    return new IommufdSpace(call(() => this.backend.openIommufd([...cdevs])));
  }

  /** `VFIO_GROUP_GET_STATUS` of group `id` (its file opened for the question and closed). */
  groupStatus(id: number): GroupStatus {
    return call(() => this.backend.groupStatus(id));
  }

  /** Whether any IOMMU driver offers `extension` (`VFIO_CHECK_EXTENSION` on a fresh container). */
  checkExtension(extension: IommuType | number): boolean {
    return call(() => this.backend.checkExtension(extension));
  }

  /** `VFIO_GET_API_VERSION`. */
  apiVersion(): number {
    return call(() => this.backend.apiVersion());
  }

  /** Mock only: bind a device to `driver` (null unbinds). */
  bind(address: string, driver: string | null): void {
    call(() => this.backend.bind(address, driver));
  }

  /** An sPAPR TCE container owning group `id`'s PE, its IOMMU set (v2 unless `v2` is false). */
  openTceContainer(id: number, v2 = true): TceContainer {
    return new TceContainer(call(() => native.TceContainer.open(this.backend, id, v2)));
  }

  /** Mock only: ioctls served so far. */
  ioctlCount(): number {
    return call(() => this.backend.ioctlCount());
  }

  /**
   * The new process's side of a live update (see `Type1Container.handOver`):
   * reads the hand-over on the connected UNIX socket `socketFd`, adopts the
   * container, groups, devices, guest memory and eventfds, and gives every
   * mapping this process's address, all or nothing, before telling the old
   * process. The kernel's descriptors only: a mock host's live in one process.
   */
  async takeOver(socketFd: number): Promise<TakenOver> {
    const t = await callAsync(() => this.backend.takeOver(socketFd));
    return { container: new Type1Container(t.container), devices: t.devices.map((d) => new Device(d)), memory: GuestMemory.wrap(t.memory), irqs: t.irqs };
  }
}

/** What a new process owns after `VfioHost.takeOver`. */
export interface TakenOver {
  readonly container: Type1Container;
  /** The handed-over devices, opened from `container`. */
  readonly devices: readonly Device[];
  readonly memory: GuestMemory;
  /** Eventfds of the interrupts the old process had enabled; this process owns (and closes) them. */
  readonly irqs: readonly LiveIrq[];
}

export type LiveIrq = native.LiveIrq;
export type HandOverOutcome = native.HandOverOutcome;

/** A type1 container with its groups, from `VfioHost.openType1`. */
export class Type1Container {
  /** @internal */
  constructor(private readonly native: native.Type1Container) {}

  get backendKind(): string {
    return this.native.backendKind;
  }
  /** The groups it holds, in attach order. */
  get groups(): readonly number[] {
    return this.native.groups;
  }
  /** False once closed. */
  get isOpen(): boolean {
    return this.native.isOpen;
  }
  /** Closes BAR mappings, devices, groups and the container, in that order; idempotent. */
  close(): void {
    this.native.close();
  }
  /** The device `name` (a PCI address) of whichever group holds it. */
  device(name: string): Device {
    return new Device(call(() => this.native.device(name)));
  }
  /** Asks the container's IOMMU driver (set at open). */
  checkExtension(extension: IommuType | number): boolean {
    return call(() => this.native.checkExtension(extension));
  }
  iommuInfo(): IommuInfo {
    return call(() => this.native.iommuInfo());
  }
  mapDma(iova: bigint, vaddr: bigint, size: bigint, flags: number = DmaFlags.ReadWrite): void {
    call(() => this.native.mapDma(iova, vaddr, size, flags));
  }
  /** Returns the bytes the kernel unmapped. */
  unmapDma(iova: bigint, size: bigint): bigint {
    return call(() => this.native.unmapDma(iova, size));
  }
  unmapAll(): bigint {
    return call(() => this.native.unmapAll());
  }
  /** Live update: mappings stay, their host addresses are invalid until updateVaddr. */
  invalidateVaddr(iova: bigint, size: bigint): bigint {
    return call(() => this.native.invalidateVaddr(iova, size));
  }
  /** Live update: the new host address of an invalidated mapping of exactly this extent. */
  updateVaddr(iova: bigint, vaddr: bigint, size: bigint): void {
    call(() => this.native.updateVaddr(iova, vaddr, size));
  }
  /**
   * Live update, the old process's side: hands this container, its groups,
   * every device open from it, `memory` and `irqs`' eventfds to the process
   * at the other end of the connected UNIX socket `socketFd`, without
   * stopping DMA. `mappings` are every mapping's iova, vaddr, size triples
   * (`packTriples`), exactly as the kernel holds them (after `mapBatch`, one
   * per coalesced run: `coalesceRuns`), all inside `memory`: the kernel
   * lists none, and updates only a mapping's exact extent. Rejects with a
   * VfioError, changing nothing, where it cannot work (no VFIO_UPDATE_VADDR,
   * e.g. an mdev in the container; memory that is not `memory`). Resolves
   * `handedOver: true` once the new process owns everything (close this and
   * exit), or `handedOver: false` with the reason after the new process
   * failed or died: every mapping has this process's address again.
   */
  handOver(socketFd: number, memory: GuestMemory, mappings: BigUint64Array, irqs: readonly LiveIrq[] = []): Promise<HandOverOutcome> {
    return callAsync(() => this.native.handOver(socketFd, memory.native, mappings, irqs.map((i) => ({ ...i, eventfds: [...i.eventfds] }))));
  }
  startDirtyTracking(): void {
    call(() => this.native.startDirtyTracking());
  }
  stopDirtyTracking(): void {
    call(() => this.native.stopDirtyTracking());
  }
  /** One bit per page of `pageSize` over [iova, iova + size); tracking must be started. */
  dirtyBitmap(iova: bigint, size: bigint, pageSize: bigint = 0x1000n): BigUint64Array {
    return call(() => this.native.dirtyBitmap(iova, size, pageSize));
  }
  /**
   * Maps `entries` (iova, vaddr, size triples) in one call, coalescing
   * contiguous entries; all or nothing (a failure's `entryIndex` names the entry).
   */
  mapBatch(entries: BigUint64Array, flags: number | Uint32Array = DmaFlags.ReadWrite): BatchReport {
    return call(() => this.native.mapBatch(entries, flags));
  }
  /** Unmaps `entries` (iova, size pairs); entries before a failing one stay unmapped. */
  unmapBatch(entries: BigUint64Array): BatchReport {
    return call(() => this.native.unmapBatch(entries));
  }
}

/** Device cdevs bound to an iommufd and attached to one IOAS, from `VfioHost.openIommufd`. */
export class IommufdSpace {
  /** @internal */
  constructor(private readonly native: native.IommufdSpace) {}

  get backendKind(): string {
    return this.native.backendKind;
  }
  /** The cdev numbers attached, in order. */
  get cdevs(): readonly number[] {
    return this.native.cdevs;
  }
  /** The HWPT (hardware page table) each device was attached to. */
  get hwpts(): readonly number[] {
    return this.native.hwpts;
  }
  get ioasId(): number {
    return this.native.ioasId;
  }
  get isOpen(): boolean {
    return this.native.isOpen;
  }
  /** Closes the device cdevs, the IOAS and /dev/iommu; idempotent. */
  close(): void {
    this.native.close();
  }
  /** Where the IOAS can map, and the alignment every map must keep. */
  iovaRanges(): IoasRanges {
    return call(() => this.native.iovaRanges());
  }
  /** Maps at `iova`, or where the kernel chooses (`null`); returns the IOVA. */
  mapDma(iova: bigint | null, vaddr: bigint, size: bigint, flags: number = DmaFlags.ReadWrite): bigint {
    return call(() => this.native.mapDma(iova ?? undefined, vaddr, size, flags));
  }
  /** Unmaps whole mappings; returns the bytes unmapped. */
  unmapDma(iova: bigint, size: bigint): bigint {
    return call(() => this.native.unmapDma(iova, size));
  }
  unmapAll(): bigint {
    return call(() => this.native.unmapAll());
  }
  /** As `Type1Container.mapBatch`: all or nothing, coalescing contiguous entries. */
  mapBatch(entries: BigUint64Array, flags: number | Uint32Array = DmaFlags.ReadWrite): BatchReport {
    return call(() => this.native.mapBatch(entries, flags));
  }
  /** As `Type1Container.unmapBatch`. */
  unmapBatch(entries: BigUint64Array): BatchReport {
    return call(() => this.native.unmapBatch(entries));
  }
}

export type TceInfo = native.TceInfo;
/** A window as the host container reports it (`TceWindow` is the guest model's, in dma). */
export type HostTceWindow = native.TceWindow;

/** The sPAPR TCE container of one PE; every call checked in user space before its ioctl. */
export class TceContainer {
  /** @internal */
  constructor(private readonly native: native.TceContainer) {}

  get group(): number {
    return this.native.group;
  }
  info(): TceInfo {
    return call(() => this.native.info());
  }
  windows(): HostTceWindow[] {
    return call(() => this.native.windows());
  }
  createWindow(pageShift: number, size: bigint): HostTceWindow {
    return call(() => this.native.createWindow(pageShift, size));
  }
  removeWindow(start: bigint): void {
    call(() => this.native.removeWindow(start));
  }
  register(vaddr: bigint, size: bigint): void {
    call(() => this.native.register(vaddr, size));
  }
  unregister(vaddr: bigint, size: bigint): void {
    call(() => this.native.unregister(vaddr, size));
  }
  map(iova: bigint, vaddr: bigint, size: bigint, flags: number = DmaFlags.ReadWrite): void {
    call(() => this.native.map(iova, vaddr, size, flags));
  }
  unmap(iova: bigint, size: bigint): void {
    call(() => this.native.unmap(iova, size));
  }
  /** Unmaps everything, then unregisters everything. */
  release(): void {
    call(() => this.native.release());
  }
}

/** A VFIO device fd. */
export class Device {
  /** @internal */
  constructor(private readonly native: native.Device) {}

  get name(): string {
    return this.native.name;
  }
  info(): DeviceInfo {
    return call(() => this.native.info());
  }
  regionInfo(index: number): RegionInfo {
    return call(() => this.native.regionInfo(index));
  }
  irqInfo(index: number): IrqInfo {
    return call(() => this.native.irqInfo(index));
  }
  /** Wire eventfds to vectors `start..`; an empty list disables the index. */
  setIrqEventfds(index: number, start: number, fds: readonly number[]): void {
    call(() => this.native.setIrqEventfds(index, start, [...fds]));
  }
  setIrqsNone(index: number, start: number, count: number, action: 'mask' | 'unmask' | 'trigger'): void {
    call(() => this.native.setIrqsNone(index, start, count, action));
  }
  reset(): void {
    call(() => this.native.reset());
  }
  /** Resets every device on this one's bus or slot; the container's groups must hold all of them. */
  pciHotReset(): void {
    call(() => this.native.pciHotReset());
  }
  /** Closes this device fd and its BAR mappings; idempotent. The container stays open. */
  close(): void {
    this.native.close();
  }
  /** The devices a bus or slot reset of this one also resets (ENODEV: no such reset). */
  pciHotResetInfo(): DependentDevice[] {
    return call(() => this.native.pciHotResetInfo());
  }
  readRegion(index: number, offset: number, length: number): Buffer {
    return call(() => this.native.readRegion(index, offset, length));
  }
  writeRegion(index: number, offset: number, data: Uint8Array): void {
    call(() => this.native.writeRegion(index, offset, data));
  }
  readConfig16(offset: number): number {
    return this.readRegion(PciRegion.Config, offset, 2).readUInt16LE(0);
  }
  writeConfig16(offset: number, value: number): void {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(value, 0);
    this.writeRegion(PciRegion.Config, offset, b);
  }
  mapRegion(index: number, offset: number, length: number): MappedRegion {
    return new MappedRegion(call(() => this.native.mapRegion(index, offset, length)));
  }
}

/** An mmap of part of a device region (MMIO accessors, little-endian). */
export class MappedRegion {
  /** @internal */
  constructor(private readonly native: native.MappedRegion) {}

  get length(): number {
    return this.native.length;
  }
  read32(offset: number): number {
    return call(() => this.native.read32(offset));
  }
  write32(offset: number, value: number): void {
    call(() => this.native.write32(offset, value));
  }
  read64(offset: number): bigint {
    return call(() => this.native.read64(offset));
  }
  write64(offset: number, value: bigint): void {
    call(() => this.native.write64(offset, value));
  }
}

/**
 * Page-aligned memory of this process with a stable address, to map for DMA
 * and to read what a device wrote. Keep it alive while a mapping refers to
 * it; `free()` releases it at once. A map pins it (on the mock as on the
 * kernel): an address not mapped in this process fails with EFAULT.
 */
export class HostMemory {
  private readonly native: native.HostMemory;

  /**
   * `size` bytes, zero-filled. `'reserve'` takes address space without
   * committing memory (MAP_NORESERVE), as a VMM reserves guest RAM it
   * populates on demand; pages are committed as they are touched.
   */
  constructor(size: number, how: 'commit' | 'reserve' = 'commit') {
    this.native = call(() => (how === 'reserve' ? native.HostMemory.reserve(BigInt(size)) : new native.HostMemory(size)));
  }

  /** The virtual address to give mapDma/mapBatch. */
  get address(): bigint {
    return call(() => this.native.address);
  }
  get size(): number {
    return call(() => this.native.size);
  }
  read(offset: number, length: number): Buffer {
    return call(() => this.native.read(offset, length));
  }
  write(offset: number, data: Uint8Array): void {
    call(() => this.native.write(offset, data));
  }
  free(): void {
    this.native.free();
  }
}

/**
 * Guest RAM in a memfd, mapped shared: the memory a live update can hand to
 * another process (QEMU's memory-backend-memfd). Map DMA from `address`.
 */
export class GuestMemory {
  /** @internal */
  readonly native: native.GuestMemory;

  constructor(size: number) {
    this.native = call(() => new native.GuestMemory(size));
  }

  /** @internal */
  static wrap(n: native.GuestMemory): GuestMemory {
    const g = Object.create(GuestMemory.prototype) as { native: native.GuestMemory };
    g.native = n;
    return g as GuestMemory;
  }

  /** This process's address of the first byte. */
  get address(): bigint {
    return this.native.address;
  }
  get size(): number {
    return this.native.size;
  }
  /** The memfd (closed when this object is collected). */
  get fd(): number {
    return this.native.fd;
  }
  read(offset: number, length: number): Buffer {
    return call(() => this.native.read(offset, length));
  }
  write(offset: number, data: Uint8Array): void {
    call(() => this.native.write(offset, data));
  }
}

/**
 * Where each run that one `mapBatch` of `entries` (iova, vaddr, size
 * triples) with per-entry `flags` coalesces into one VFIO_IOMMU_MAP_DMA
 * starts: vfio-core's coalescing rule itself (batch.rs), so no layer above
 * restates it.
 */
export function coalesceRuns(entries: BigUint64Array, flags: Uint32Array): Uint32Array {
  return call(() => native.coalesceRuns(entries, flags));
}

/** Packs iova, vaddr, size triples into the typed array mapBatch takes. */
export function packTriples(entries: readonly (readonly [bigint, bigint, bigint])[]): BigUint64Array {
  const out = new BigUint64Array(entries.length * 3);
  entries.forEach(([iova, vaddr, size], i) => {
    out[3 * i] = iova;
    out[3 * i + 1] = vaddr;
    out[3 * i + 2] = size;
  });
  return out;
}
