//! The crate's one error type: every failure names the errno, the ioctl (or
//! syscall) and the object it concerns, and `Display` says what to do next.

use std::fmt;

pub type Result<T> = std::result::Result<T, Error>;

/// A failed VFIO operation.
///
/// `errno` is what the kernel (or the mock, which mirrors it) answered;
/// `ioctl` names the call (`VFIO_IOMMU_MAP_DMA`, `open`, `mmap`, ...);
/// `object` names what it was issued on (`container fd 5`, `group 12`,
/// `device 0000:00:03.0`). Batch operations also say which entry failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub errno: i32,
    pub ioctl: &'static str,
    pub object: String,
    /// For `map_batch` / `unmap_batch`: the index of the entry that failed.
    pub entry: Option<usize>,
    /// Extra context a caller can act on (what was being asked).
    pub detail: Option<String>,
    /// The IOMMU model the call went to: `VFIO_IOMMU_MAP_DMA` fails for
    /// different reasons in vfio_iommu_type1 and vfio_iommu_spapr_tce, so the
    /// hint depends on it.
    pub iommu: IommuModel,
}

/// Which VFIO IOMMU driver answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IommuModel {
    /// vfio_iommu_type1 (x86, Arm, s390 ...), and every call made before an
    /// IOMMU type is set.
    #[default]
    Type1,
    /// vfio_iommu_spapr_tce (POWER): DMA windows of TCEs, preregistered memory.
    Spapr,
}

impl Error {
    pub fn new(errno: i32, ioctl: &'static str, object: impl Into<String>) -> Self {
        Self { errno, ioctl, object: object.into(), entry: None, detail: None, iommu: IommuModel::Type1 }
    }

    /// Marks the error as an answer of the sPAPR TCE IOMMU, for its hints.
    pub fn on_spapr(mut self) -> Self {
        self.iommu = IommuModel::Spapr;
        self
    }

    pub fn with_entry(mut self, entry: usize) -> Self {
        self.entry = Some(entry);
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The symbolic errno name (`EEXIST`), the stable code JavaScript sees.
    pub fn code(&self) -> &'static str {
        errno_name(self.errno)
    }

    /// What a user can do about this error, from the IOMMU model, the call
    /// and the errno. The causes are the kernel's (vfio_dma_do_map,
    /// tce_iommu_ioctl, vfio_group_ioctl_*).
    pub fn hint(&self) -> &'static str {
        let specific = match self.iommu {
            IommuModel::Type1 => type1_hint(self.ioctl, self.errno),
            IommuModel::Spapr => spapr_hint(self.ioctl, self.errno),
        };
        specific.or_else(|| shared_hint(self.ioctl, self.errno)).unwrap_or("")
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.ioctl, self.object)?;
        if let Some(entry) = self.entry {
            write!(f, " (batch entry {entry})")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, " [{detail}]")?;
        }
        write!(f, " failed with {}", self.code())?;
        let hint = self.hint();
        if !hint.is_empty() {
            write!(f, ": {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// vfio_iommu_type1's causes (vfio_dma_do_map, vfio_dma_do_unmap, vfio_iommu_type1_attach_group).
fn type1_hint(ioctl: &str, errno: i32) -> Option<&'static str> {
    Some(match (ioctl, errno) {
        ("VFIO_IOMMU_MAP_DMA", libc::EEXIST) => {
            "the IOVA range overlaps an existing mapping; unmap it first or pick a free IOVA"
        }
        ("VFIO_IOMMU_MAP_DMA", libc::EINVAL) => {
            "the IOVA, host address and size must be non-zero multiples of the smallest IOMMU page size, the flags must include READ or WRITE, and the range must lie inside one of the container's IOVA ranges"
        }
        ("VFIO_IOMMU_MAP_DMA", libc::ENOSPC) => {
            "the container has no DMA entries left (dma_entry_limit); coalesce mappings or raise vfio_iommu_type1's dma_entry_limit"
        }
        ("VFIO_IOMMU_MAP_DMA", libc::ENOMEM) => {
            "pinning the memory exceeded RLIMIT_MEMLOCK; raise the locked-memory limit of the process"
        }
        ("VFIO_IOMMU_MAP_DMA", libc::EFAULT) => "the host address range is not mapped in this process",
        ("VFIO_IOMMU_UNMAP_DMA", libc::EINVAL) => {
            "with type1v2 an unmap must cover whole mappings: use the IOVA and size the range was mapped with"
        }
        ("VFIO_SET_IOMMU", libc::ENODEV) => {
            "no IOMMU driver offers this type; check VFIO_CHECK_EXTENSION and load vfio_iommu_type1"
        }
        _ => return None,
    })
}

/// vfio_iommu_spapr_tce's causes (tce_iommu_ioctl, iommu_tce_put_param_check,
/// tce_iommu_build_v2, tce_iommu_create_window, tce_iommu_register_pages).
/// A DMA call it does not explain gets no hint: type1's would mislead.
fn spapr_hint(ioctl: &str, errno: i32) -> Option<&'static str> {
    Some(match (ioctl, errno) {
        ("VFIO_IOMMU_MAP_DMA", libc::EINVAL) => {
            "on sPAPR the host address and size must be multiples of the window's TCE page size, the flags must include READ or WRITE, and (v2) the whole host range must be preregistered with VFIO_IOMMU_SPAPR_REGISTER_MEMORY"
        }
        ("VFIO_IOMMU_MAP_DMA", libc::EEXIST) => {
            "the IOVA range overlaps an existing mapping in its window; unmap it first or pick a free IOVA"
        }
        ("VFIO_IOMMU_MAP_DMA", libc::EPERM) => {
            "the window's TCE page size is larger than the host pages backing the memory (tce_page_is_contained): back it with pages at least that large (hugepages) or map into a window with smaller TCE pages; or the container is not enabled yet (v1: VFIO_IOMMU_ENABLE, v2: register memory first)"
        }
        ("VFIO_IOMMU_MAP_DMA" | "VFIO_IOMMU_UNMAP_DMA", libc::ENXIO) => {
            "no DMA window holds this IOVA: use an address inside the default 32-bit window or a window made with VFIO_IOMMU_SPAPR_TCE_CREATE"
        }
        ("VFIO_IOMMU_UNMAP_DMA", libc::EINVAL) => {
            "on sPAPR the IOVA and size of an unmap must be multiples of the window's TCE page size and lie inside one window"
        }
        ("VFIO_IOMMU_MAP_DMA" | "VFIO_IOMMU_UNMAP_DMA", _) => return Some(""),
        ("VFIO_IOMMU_SPAPR_TCE_CREATE", libc::EINVAL) => {
            "the TCE page size must be one the PE offers (ddw.pgsizes of VFIO_IOMMU_SPAPR_TCE_GET_INFO), the levels within ddw.levels, and the window large enough for one TCE table page yet no larger than the PE's largest free block: try a smaller window"
        }
        ("VFIO_IOMMU_SPAPR_TCE_CREATE", libc::ENOSPC) => {
            "the PE has no free DMA window (ddw.max_dynamic_windows_supported): remove one with VFIO_IOMMU_SPAPR_TCE_REMOVE first"
        }
        ("VFIO_IOMMU_SPAPR_TCE_CREATE", libc::EPERM) => {
            "the platform refused the window (spapr_tce_set_window): put one PE's group per container, and create windows only after the group is attached"
        }
        ("VFIO_IOMMU_SPAPR_TCE_CREATE" | "VFIO_IOMMU_SPAPR_TCE_REMOVE", libc::ENXIO) => {
            "attach a group to the container before creating or removing windows"
        }
        ("VFIO_IOMMU_SPAPR_TCE_REMOVE", libc::EINVAL) => {
            "no window starts at that bus address: pass the start address VFIO_IOMMU_SPAPR_TCE_CREATE returned"
        }
        ("VFIO_IOMMU_SPAPR_REGISTER_MEMORY", libc::EINVAL) => {
            "the host address and size must be multiples of the host page size, and the range must not partly overlap a region registered before"
        }
        ("VFIO_IOMMU_SPAPR_REGISTER_MEMORY", libc::EBUSY) => "this exact region is already registered in this container",
        ("VFIO_IOMMU_SPAPR_REGISTER_MEMORY", libc::ENOMEM) => {
            "pinning the memory exceeded RLIMIT_MEMLOCK (sPAPR v2 pins at registration); raise the locked-memory limit of the process"
        }
        ("VFIO_IOMMU_SPAPR_REGISTER_MEMORY" | "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY" | "VFIO_IOMMU_SPAPR_TCE_CREATE" | "VFIO_IOMMU_SPAPR_TCE_REMOVE", libc::ENOTTY) => {
            "memory registration and dynamic windows are sPAPR v2 calls: set the container's IOMMU to VFIO_SPAPR_TCE_v2_IOMMU"
        }
        ("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", libc::ENOENT) => {
            "no region of exactly this address and size is registered: pass what was registered"
        }
        ("VFIO_SET_IOMMU", libc::ENODEV) => {
            "no IOMMU driver offers this type; check VFIO_CHECK_EXTENSION and load vfio_iommu_spapr_tce"
        }
        _ => return None,
    })
}

/// Causes common to every IOMMU model: groups, devices, opening.
fn shared_hint(ioctl: &str, errno: i32) -> Option<&'static str> {
    Some(match (ioctl, errno) {
        ("VFIO_SET_IOMMU", libc::EINVAL) => {
            "attach a group with VFIO_GROUP_SET_CONTAINER first, and set the IOMMU only once per container"
        }
        ("VFIO_GROUP_SET_CONTAINER", libc::EPERM) => {
            "the group is not viable: a device in it is bound to a host driver; bind every device of the group to vfio-pci or unbind it"
        }
        ("VFIO_GROUP_SET_CONTAINER", libc::EINVAL) => {
            "the group is already attached to a container; unset it first"
        }
        ("VFIO_GROUP_UNSET_CONTAINER", libc::EINVAL) => "the group is not attached to a container",
        ("VFIO_GROUP_UNSET_CONTAINER", libc::EBUSY) => "close the group's device fds first",
        ("VFIO_GROUP_GET_DEVICE_FD", libc::EINVAL) => {
            "attach the group to a container and set the container's IOMMU before opening devices"
        }
        ("VFIO_GROUP_GET_DEVICE_FD", libc::ENODEV) => {
            "no device of that name in the group is bound to vfio-pci; bind it, and use its full PCI address (0000:00:03.0)"
        }
        ("open", libc::ENOENT) => {
            "no such VFIO group: bind a device of the group to vfio-pci so /dev/vfio/N appears"
        }
        ("open", libc::EBUSY) => "the group is already open (by this or another process); a group can be opened once",
        ("open", libc::EACCES) | ("open", libc::EPERM) => "run as root or give the user access to /dev/vfio",
        ("VFIO_DEVICE_RESET", libc::EINVAL) => "the device has no reset method (no FLR, PM or bus reset)",
        (_, libc::ENOTTY) => "the backend does not support this call",
        _ => return None,
    })
}

pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTTY => "ENOTTY",
        libc::ENXIO => "ENXIO",
        libc::ERANGE => "ERANGE",
        libc::ENOSYS => "ENOSYS",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EBADFD => "EBADFD",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPROTO => "EPROTO",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EMSGSIZE => "EMSGSIZE",
        _ => "EUNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_call_object_code_and_fix() {
        let e = Error::new(libc::EEXIST, "VFIO_IOMMU_MAP_DMA", "container fd 3")
            .with_entry(7)
            .with_detail("iova 0x1000 size 0x1000");
        assert_eq!(
            e.to_string(),
            "VFIO_IOMMU_MAP_DMA on container fd 3 (batch entry 7) [iova 0x1000 size 0x1000] failed with EEXIST: the IOVA range overlaps an existing mapping; unmap it first or pick a free IOVA"
        );
    }

    #[test]
    fn spapr_map_einval_hints_tce_page_size_and_registration_not_type1_ranges() {
        let e = Error::new(libc::EINVAL, "VFIO_IOMMU_MAP_DMA", "sPAPR container fd 3").on_spapr();
        assert_eq!(
            e.hint(),
            "on sPAPR the host address and size must be multiples of the window's TCE page size, the flags must include READ or WRITE, and (v2) the whole host range must be preregistered with VFIO_IOMMU_SPAPR_REGISTER_MEMORY"
        );
    }

    #[test]
    fn spapr_map_eperm_hints_tce_pages_larger_than_backing_pages() {
        let e = Error::new(libc::EPERM, "VFIO_IOMMU_MAP_DMA", "sPAPR container fd 3").on_spapr();
        assert!(e.hint().starts_with("the window's TCE page size is larger than the host pages backing the memory"));
    }

    #[test]
    fn spapr_map_errno_without_an_spapr_cause_gets_no_type1_hint() {
        let e = Error::new(libc::ENOSPC, "VFIO_IOMMU_MAP_DMA", "sPAPR container fd 3").on_spapr();
        assert_eq!(e.hint(), "");
        assert_eq!(e.to_string(), "VFIO_IOMMU_MAP_DMA on sPAPR container fd 3 failed with ENOSPC");
    }

    #[test]
    fn spapr_tce_create_einval_hints_page_sizes_levels_and_window_size() {
        let e = Error::new(libc::EINVAL, "VFIO_IOMMU_SPAPR_TCE_CREATE", "sPAPR container fd 3").on_spapr();
        assert!(e.hint().starts_with("the TCE page size must be one the PE offers (ddw.pgsizes"));
    }

    #[test]
    fn spapr_register_memory_einval_hints_host_page_alignment_and_overlap() {
        let e = Error::new(libc::EINVAL, "VFIO_IOMMU_SPAPR_REGISTER_MEMORY", "sPAPR container fd 3").on_spapr();
        assert_eq!(
            e.hint(),
            "the host address and size must be multiples of the host page size, and the range must not partly overlap a region registered before"
        );
    }

    #[test]
    fn the_mock_spapr_map_of_unregistered_memory_carries_the_spapr_hint() {
        use crate::backend::mock::spapr::{MockSpapr, SpaprProfile};
        use crate::spapr::SpaprOps;
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
        m.attach_group(1).unwrap();
        m.register_memory(crate::memory::test_va(), 0x1000, 0).unwrap();
        let rw = crate::uapi::VFIO_DMA_MAP_FLAG_READ | crate::uapi::VFIO_DMA_MAP_FLAG_WRITE;
        let e = m.map_dma(0, 0x7f00_0001_0000, 0x1000, rw).unwrap_err();
        assert_eq!((e.errno, e.iommu), (libc::EINVAL, IommuModel::Spapr));
        assert!(e.hint().starts_with("on sPAPR the host address and size must be multiples of the window's TCE page size"));
    }

    #[test]
    fn a_tce_container_refusal_carries_the_spapr_hint() {
        use crate::backend::mock::spapr::{MockSpapr, SpaprProfile};
        use crate::spapr::{DmaDirection, TceContainer, TceVersion};
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
        m.attach_group(1).unwrap();
        let mut c = TceContainer::new(m, TceVersion::V2, 1, 12).unwrap();
        let e = c.map(1 << 40, crate::memory::test_va(), 0x1000, DmaDirection::ToDevice).unwrap_err();
        assert_eq!((e.errno, e.iommu), (libc::ENXIO, IommuModel::Spapr));
        assert!(e.hint().starts_with("no DMA window holds this IOVA"));
    }

    #[test]
    fn spapr_errors_share_the_group_hints() {
        let e = Error::new(libc::EPERM, "VFIO_GROUP_SET_CONTAINER", "group 1").on_spapr();
        assert!(e.hint().starts_with("the group is not viable"));
    }

    #[test]
    fn type1_map_einval_keeps_its_iova_range_hint() {
        let e = Error::new(libc::EINVAL, "VFIO_IOMMU_MAP_DMA", "container fd 3");
        assert!(e.hint().ends_with("the range must lie inside one of the container's IOVA ranges"));
    }

    #[test]
    fn code_is_the_symbolic_errno() {
        assert_eq!(Error::new(libc::ENOSPC, "x", "y").code(), "ENOSPC");
    }
}
