//! The x86 (type1v2) conformance suite. Every case names the kernel rule it
//! exercises; the lab runner holds the mock's steps to the kernel's.
//!
//! Roles are those of the lab topology (packages/testkit/src/lab/x86/topology.ts):
//! `solo` (a group of its own), `bridge-a`/`bridge-b` (one group behind a
//! pcie-pci-bridge, `bridge-b` not bound to vfio-pci), `mf-0`/`mf-1` (two
//! functions, one group), `blocked` (bound, but its group has a device
//! driven by a host driver).

mod device;
mod dma;
mod edu;
mod group;
mod live;
mod pin;
pub mod util;

use crate::case::Case;

pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(group::cases());
    // Before dma's cases: on AMD-Vi those leave pages charged for good
    // (maps of the aperture's last page), which an absolute RLIMIT_MEMLOCK
    // would count.
    all.extend(pin::cases());
    all.extend(dma::cases());
    all.extend(device::cases());
    all.extend(edu::cases());
    all.extend(live::cases());
    all
}
