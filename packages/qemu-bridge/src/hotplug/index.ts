// Hot-plug into a running VM: one engine (engine.ts) that checks a request,
// plugs slot by slot with function 0 last, takes back what it added when a
// device_add fails and checks the result through QOM; a placement per kind
// of machine (root-ports.ts for q35, host-bridges.ts for pseries); and
// unplug with a bounded wait for the guest's consent (detach.ts).
export type { PlugFunction, PlugOptions } from './engine';
export { attachGroup, attachSlots, listRootPorts, type AttachOptions, type PlacedDevice, type RootPortInfo } from './root-ports';
export {
  attachGroupToHostBridge,
  attachSlotsToHostBridge,
  listHostBridges,
  type HostBridgeAttachOptions,
  type HostBridgeInfo,
  type PlacedOnHostBridge,
} from './host-bridges';
export { detachDevices, type DetachOptions } from './detach';
