//! The sPAPR TCE IOMMU (POWER): a PE's DMA goes through windows of TCEs, not a
//! flat map. [`TceContainer`] drives one container of one PE and checks in user
//! space, before any ioctl, the rules whose violation the kernel does not
//! report well or at all:
//! - a map's whole range lies inside one window (`tce_iommu_ioctl` checks only
//!   the first TCE, `iommu_tce_put_param_check(.., 1)`, and 6.12 oopses in
//!   `tce_iommu_unuse_page_v2` when a map runs past the table's end);
//! - memory is unmapped before it is unregistered (`tce_iommu_unregister_pages`
//!   returns 0 while mappings exist and leaks the registration);
//! - one PE per container (a second group attaches, then every window or map
//!   fails with EPERM in `spapr_tce_set_window`);
//! - a positive ioctl value from map/unmap is a failure (the driver returns
//!   `iommu_tce_*_param_check`'s boolean as is).

mod container;
mod ops;
mod window;

pub use container::{Mapping, TceContainer, TceVersion};
pub use ops::{DmaDirection, SpaprOps};
pub use window::{initial_levels, max_levels, DdwInfo, TceInfo, Window};
