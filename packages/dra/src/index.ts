// The one entry point of @vfiokit/dra: vfiokit as a Kubernetes DRA driver.
export * from './errors';
export * from './kube';
export * from './inventory';
export * from './slices';
export * from './checkpoint';
export * from './cdi';
export * from './node-service';
export * from './grpc';
export * from './driver';
