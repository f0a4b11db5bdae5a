// A real Kubernetes control plane and the kubelet's side of DRA, for the DRA driver's tests.
export * from './cluster';
export * from './kubelet-sim';
