// Planning: from a guest spec and a host to a plan of groups, guest PCI
// domains, DMA policy and pinned memory, or a refusal with reasons.
export * from './spec';
export * from './domains';
export * from './plan';
export * from './backend';
