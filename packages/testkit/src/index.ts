// The one entry point of @vfiokit/testkit. Each area owns its own index.
// The fixture hosts live in their own published package (the installed
// command's --mock and demo use them); testkit's users still find them here.
export * from '@vfiokit/fixture-hosts';
export * from './qmp/index';
export * from './lab/index';
export * from './kube/index';
export * from './processes/index';
