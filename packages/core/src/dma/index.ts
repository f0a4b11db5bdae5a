// The DMA policy engine: which guest memory the host IOMMU must map, and when.
export * from './guest';
export * from './errors';
export * from './layout';
export * from './target';
export * from './ops';
export * from './collisions';
export { ContainerMappings, type HostEntry, type MappingStats } from './mappings';
export * from './identity';
export * from './shadow';
export { Type1Model, type ModelMapping } from './type1-model';
export * from './spapr';
export * from './trace-format';
export * from './trace-linux';
export * from './replay';
export * from './generate';
export * from './topology';
export * from './compat';
export * from './vfio-target';
