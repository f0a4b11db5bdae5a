// The one entry point of @vfiokit/testkit. Each area owns its own index.
export * from './fixtures/index';
export * from './qmp/index';
export * from './lab/index';
export * from './kube/index';
export * from './processes/index';
