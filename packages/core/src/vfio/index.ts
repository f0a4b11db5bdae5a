// The TypeScript face of vfio-core: thin typed wrappers over the napi-generated
// declarations, so callers never import the addon directly.
import * as native from '@vfiokit/vfio-core';

/** IOMMU types and features as `VFIO_CHECK_EXTENSION` numbers them (linux/vfio.h). */
export enum IommuType {
  Type1 = 1,
  SpaprTce = 2,
  Type1v2 = 3,
  DmaCc = 4,
  Eeh = 5,
  Type1Nesting = 6,
  SpaprTceV2 = 7,
  NoIommu = 8,
  UnmapAll = 9,
  UpdateVaddr = 10,
}

export type Container = native.Container;

/** Open a container on vfio-core's in-process model of the kernel. */
export function openMockContainer(): Container {
  return native.Container.openMock();
}
