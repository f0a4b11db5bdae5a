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
}

impl Error {
    pub fn new(errno: i32, ioctl: &'static str, object: impl Into<String>) -> Self {
        Self { errno, ioctl, object: object.into(), entry: None, detail: None }
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

    /// What a user can do about this error, from the call and the errno.
    /// The causes are the kernel's (vfio_dma_do_map, vfio_group_ioctl_*).
    pub fn hint(&self) -> &'static str {
        hint(self.ioctl, self.errno)
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

fn hint(ioctl: &str, errno: i32) -> &'static str {
    match (ioctl, errno) {
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
        ("VFIO_SET_IOMMU", libc::EINVAL) => {
            "attach a group with VFIO_GROUP_SET_CONTAINER first, and set the IOMMU only once per container"
        }
        ("VFIO_SET_IOMMU", libc::ENODEV) => {
            "no IOMMU driver offers this type; check VFIO_CHECK_EXTENSION and load vfio_iommu_type1"
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
        _ => "",
    }
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
    fn code_is_the_symbolic_errno() {
        assert_eq!(Error::new(libc::ENOSPC, "x", "y").code(), "ENOSPC");
    }
}
