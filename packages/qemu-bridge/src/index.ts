// The one entry point of @vfiokit/qemu-bridge.
export * from './errors';
export * from './qmp/index';
export * from './commands/index';
export * from './hotplug/index';
export * from './cmdline/index';
export * from './memory/index';
export * from './process/index';
