//! `Type1Container`: a type1 container that owns its groups, the way
//! rust-vmm's vfio-ioctls `VfioContainer` and [`crate::spapr::PeContainer`] do.
//!
//! The kernel keeps a container's IOMMU (and every mapping in it) only while
//! a group is attached, and a group stays attached only while its file is
//! open (vfio_group_fops_release -> vfio_group_detach_container; the last
//! group out frees the IOMMU in __vfio_group_unset_container). A container
//! handed out without its groups therefore loses its mappings the moment the
//! caller drops a group it did not know it had to keep. Here the groups live
//! inside the container: one value, opened in one call, closed in one drop.

use std::ops::Deref;
use std::sync::Arc;

use crate::backend::Backend;
use crate::container::{Container, Extension};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::group::Group;

/// A type1 container with its groups attached and its IOMMU set.
///
/// Dropping it closes the groups first (each detaches from the container),
/// then the container: fields drop in declaration order. Devices opened
/// from it hold their own reference on their group in the kernel
/// (vfio_device_fops_release drops it), so close them first for the
/// container to be released at once; the napi binding enforces that order.
#[derive(Debug)]
pub struct Type1Container {
    groups: Vec<Group>,
    container: Container,
}

impl Type1Container {
    /// Opens a container on `backend`, attaches `groups` in order
    /// (`VFIO_GROUP_SET_CONTAINER`), then sets `iommu` (`VFIO_SET_IOMMU`,
    /// which the kernel refuses before a group is attached). On any failure
    /// everything opened so far is closed again, groups first.
    pub fn open(backend: Arc<dyn Backend>, groups: &[u32], iommu: Extension) -> Result<Self> {
        if groups.is_empty() {
            return Err(Error::new(libc::EINVAL, "VFIO_SET_IOMMU", format!("{} type1 container", backend.kind()))
                .with_detail("a type1 container needs at least one group: the kernel sets no IOMMU without one"));
        }
        for (i, g) in groups.iter().enumerate() {
            if groups[..i].contains(g) {
                return Err(Error::new(libc::EBUSY, "open", format!("{} group {g} (/dev/vfio/{g})", backend.kind()))
                    .with_detail("named twice: a group can be open once (vfio_group_fops_open)"));
            }
        }
        let container = Container::open(backend.clone())?;
        let mut this = Self { groups: Vec::with_capacity(groups.len()), container };
        for &id in groups {
            let group = Group::open(backend.clone(), id)?;
            group.set_container(&this.container)?;
            this.groups.push(group);
        }
        this.container.set_iommu(iommu)?;
        Ok(this)
    }

    /// A container and its attached groups, adopted whole from another
    /// process (a live hand-over); closed in the same order as one opened here.
    pub fn from_parts(container: Container, groups: Vec<Group>) -> Self {
        Self { groups, container }
    }

    /// The container, for its DMA calls (also reached through `Deref`).
    pub fn container(&self) -> &Container {
        &self.container
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn group_ids(&self) -> Vec<u32> {
        self.groups.iter().map(Group::id).collect()
    }

    /// What this container is, for error messages: "mock type1 container of groups 1, 2".
    pub fn object(&self) -> String {
        let ids: Vec<String> = self.groups.iter().map(|g| g.id().to_string()).collect();
        format!(
            "{} type1 container of group{} {}",
            self.container.backend_kind(),
            if ids.len() > 1 { "s" } else { "" },
            ids.join(", ")
        )
    }

    /// `VFIO_GROUP_GET_DEVICE_FD` for `name` (a PCI address) on whichever
    /// of the groups holds it. Groups are asked in order; ENODEV from every
    /// group means none holds a vfio-bound device of that name.
    pub fn device(&self, name: &str) -> Result<Device> {
        let mut last = None;
        for g in &self.groups {
            match g.device(name) {
                Ok(d) => return Ok(d),
                Err(e) if e.errno == libc::ENODEV => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one group").with_detail(format!(
            "no group of the {} holds {name} bound to vfio-pci",
            self.object()
        )))
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET` of `device` with every group of this
    /// container as the proof of ownership the kernel asks for.
    pub fn pci_hot_reset(&self, device: &Device) -> Result<()> {
        let groups: Vec<&Group> = self.groups.iter().collect();
        device.pci_hot_reset(&groups)
    }
}

impl Deref for Type1Container {
    type Target = Container;

    fn deref(&self) -> &Container {
        &self.container
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{MockBackend, MockConfig, MockDeviceConfig, MockGroupConfig};
    use crate::uapi::VFIO_TYPE1V2_IOMMU;

    fn host() -> Arc<MockBackend> {
        Arc::new(MockBackend::new(
            MockConfig::empty()
                .with_group(MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0")))
                .with_group(MockGroupConfig::new(2).with_device(MockDeviceConfig::edu("0000:00:04.0"))),
        ))
    }

    #[test]
    fn a_container_keeps_its_mappings_while_it_lives() {
        let c = Type1Container::open(host(), &[1, 2], VFIO_TYPE1V2_IOMMU).unwrap();
        c.map_dma(0x1000, crate::memory::test_va(), 0x1000, 3).unwrap();
        assert_eq!(c.map_dma(0x1000, crate::memory::test_va(), 0x1000, 3).unwrap_err().errno, libc::EEXIST);
        assert_eq!(c.group_ids(), vec![1, 2]);
    }

    #[test]
    fn dropping_the_container_detaches_its_groups_so_they_open_again() {
        let h = host();
        drop(Type1Container::open(h.clone(), &[1], VFIO_TYPE1V2_IOMMU).unwrap());
        let again = Type1Container::open(h, &[1], VFIO_TYPE1V2_IOMMU).unwrap();
        again.map_dma(0x1000, crate::memory::test_va(), 0x1000, 3).unwrap();
    }

    #[test]
    fn a_failed_open_closes_every_group_it_opened() {
        let h = host();
        assert_eq!(Type1Container::open(h.clone(), &[1, 9], VFIO_TYPE1V2_IOMMU).unwrap_err().errno, libc::ENOENT);
        Type1Container::open(h, &[1], VFIO_TYPE1V2_IOMMU).unwrap();
    }

    #[test]
    fn a_container_without_groups_is_refused_with_einval() {
        assert_eq!(Type1Container::open(host(), &[], VFIO_TYPE1V2_IOMMU).unwrap_err().errno, libc::EINVAL);
    }

    #[test]
    fn a_group_named_twice_is_refused_with_ebusy_before_any_open() {
        assert_eq!(Type1Container::open(host(), &[1, 1], VFIO_TYPE1V2_IOMMU).unwrap_err().errno, libc::EBUSY);
    }

    #[test]
    fn a_device_is_found_in_whichever_group_holds_it() {
        let c = Type1Container::open(host(), &[1, 2], VFIO_TYPE1V2_IOMMU).unwrap();
        assert_eq!(c.device("0000:00:04.0").unwrap().name(), "0000:00:04.0");
        assert_eq!(c.device("0000:00:09.0").unwrap_err().errno, libc::ENODEV);
    }
}
