export * from './builder';
export { defaultDeviceId, formatBdf, layoutSlots, parseBdf } from './layout';
export type { PciAddress, PlacedFunction, SlotLayout, VfioDeviceSpec } from './layout';
