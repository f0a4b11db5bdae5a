//! vfio-core: the whole VFIO user API behind one backend seam.
//!
//! - [`uapi`]: the kernel ABI (`linux/vfio.h`), checked against the system header;
//! - [`backend`]: the seam ([`Backend`]) with [`KernelBackend`] and [`MockBackend`];
//! - [`Container`], [`Group`], [`Device`]: safe types owning their descriptors;
//! - [`Iommufd`], [`Ioas`], [`Hwpt`], [`CdevDevice`]: iommufd and the VFIO device cdev;
//! - [`Type1Container`]: a type1 container that owns its groups (what the binding hands out);
//! - batched DMA: [`Container::map_batch`] / [`Container::unmap_batch`];
//! - [`HostMemory`]: memory with a stable address to map for DMA;
//! - [`live`]: handing a running container, its devices and guest memory to a new process.
//!
//! The pure core is usable from Rust alone; the Node binding lives in
//! `binding` behind the `napi` cargo feature.

pub mod backend;
pub mod batch;
pub mod container;
pub mod device;
pub mod error;
pub mod fdpass;
pub mod group;
pub mod live;
pub mod iommufd;
pub mod memory;
pub mod spapr;
pub mod type1;
pub mod uapi;

#[cfg(feature = "napi")]
mod binding;

pub use backend::{Backend, BackendKind, KernelBackend, MockBackend, MockConfig};
pub use batch::{BatchFlags, BatchReport};
pub use container::{dma_flags, Container, IommuInfo, IovaRange, MigrationCap};
pub use device::{DependentDevice, Device, DeviceInfo, IrqAction, IrqData, IrqInfo, MappedRegion, RegionInfo, SparseArea};
pub use error::{Error, IommuModel, Result};
pub use group::{Group, GroupStatus};
pub use iommufd::{CdevDevice, DirtyBitmap, HwInfo, Hwpt, Ioas, IoasRanges, Iommufd, IommufdSpace};
pub use memory::HostMemory;
pub use type1::Type1Container;
