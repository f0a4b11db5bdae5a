export { openMockContainer, IommuType } from './vfio';
export type { Container } from './vfio';
