// The host model: what the kernel shows of PCI devices, IOMMU groups and the
// IOMMU, whether VFIO can take a group, moving groups to vfio-pci and back,
// the rules that keep the host alive, and the locked-memory budget.
export * from './seam';
export * from './errors';
export * from './address';
export * from './pci-ids';
export * from './config-space';
export * from './model';
export * from './discover';
export * from './msi-isolation';
export * from './viability';
export * from './probe';
export * from './safety';
export * from './process';
export * from './state';
export * from './bind';
export * from './memlock';
export * from './vfio-mock';
export * from './reset';
export * from './persist';
