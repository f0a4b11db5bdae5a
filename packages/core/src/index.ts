// The one entry point of @vfiokit/core. Each area owns its own index.
export * from './errors';
export * from './vfio/index';
export * from './fdpass/index';
export * from './host/index';
export * from './dma/index';
export * from './plan/index';
