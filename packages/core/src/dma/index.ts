// The DMA policy engine: which guest memory the host IOMMU must map, and when.
export * from './guest';
export * from './errors';
export * from './layout';
export * from './target';
