//! `Group`: one `/dev/vfio/N` file, owning its descriptor.

use std::ffi::CString;
use std::sync::Arc;

use crate::backend::{Backend, RawFd};
use crate::container::Container;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::uapi;

/// `VFIO_GROUP_GET_STATUS`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStatus {
    /// `VFIO_GROUP_FLAGS_VIABLE`: no device of the group is driven by a
    /// host driver that does DMA, so the group may be given to user space.
    pub viable: bool,
    /// `VFIO_GROUP_FLAGS_CONTAINER_SET`.
    pub container_set: bool,
    pub flags: u32,
}

/// An open VFIO group. Dropping it closes the descriptor, which detaches
/// the group from its container once no device of it is open.
#[derive(Debug)]
pub struct Group {
    backend: Arc<dyn Backend>,
    fd: RawFd,
    id: u32,
}

impl Group {
    /// Opens IOMMU group `id` (`open("/dev/vfio/<id>")`).
    pub fn open(backend: Arc<dyn Backend>, id: u32) -> Result<Self> {
        let fd = backend
            .open_group(id)
            .map_err(|e| Error::new(e.0, "open", format!("{} group {id} (/dev/vfio/{id})", backend.kind())))?;
        Ok(Self { backend, fd, id })
    }

    /// Adopts a descriptor of group `id` received from another process (a
    /// live hand-over). Dropping the value closes it; the kernel detaches
    /// the group only when the last descriptor of its file closes.
    pub fn from_raw(backend: Arc<dyn Backend>, id: u32, fd: RawFd) -> Self {
        Self { backend, fd, id }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn err(&self, errno: i32, ioctl: &'static str) -> Error {
        Error::new(errno, ioctl, format!("{} group {}", self.backend.kind(), self.id))
    }

    /// `VFIO_GROUP_GET_STATUS`.
    pub fn status(&self) -> Result<GroupStatus> {
        let mut st = uapi::vfio_group_status {
            argsz: std::mem::size_of::<uapi::vfio_group_status>() as u32,
            flags: 0,
        };
        self.backend.group_get_status(self.fd, &mut st).map_err(|e| self.err(e.0, "VFIO_GROUP_GET_STATUS"))?;
        Ok(GroupStatus {
            viable: st.flags & uapi::VFIO_GROUP_FLAGS_VIABLE != 0,
            container_set: st.flags & uapi::VFIO_GROUP_FLAGS_CONTAINER_SET != 0,
            flags: st.flags,
        })
    }

    /// `VFIO_GROUP_SET_CONTAINER`: attach this group to `container`. Both
    /// must come from the same backend.
    pub fn set_container(&self, container: &Container) -> Result<()> {
        if !same_backend(&self.backend, container.backend()) {
            return Err(self.err(libc::EBADF, "VFIO_GROUP_SET_CONTAINER").with_detail(format!(
                "the container is on the {} backend, the group on the {} backend",
                container.backend().kind(),
                self.backend.kind()
            )));
        }
        self.backend
            .group_set_container(self.fd, container.raw_fd())
            .map_err(|e| self.err(e.0, "VFIO_GROUP_SET_CONTAINER").with_detail(container.object()))
    }

    /// `VFIO_GROUP_UNSET_CONTAINER`.
    pub fn unset_container(&self) -> Result<()> {
        self.backend.group_unset_container(self.fd).map_err(|e| self.err(e.0, "VFIO_GROUP_UNSET_CONTAINER"))
    }

    /// `VFIO_GROUP_GET_DEVICE_FD` for the device named `name` (its PCI
    /// address, `0000:00:03.0`).
    pub fn device(&self, name: &str) -> Result<Device> {
        let c = CString::new(name)
            .map_err(|_| self.err(libc::EINVAL, "VFIO_GROUP_GET_DEVICE_FD").with_detail("name contains NUL"))?;
        let fd = self
            .backend
            .group_get_device_fd(self.fd, &c)
            .map_err(|e| self.err(e.0, "VFIO_GROUP_GET_DEVICE_FD").with_detail(format!("device {name}")))?;
        Ok(Device::from_raw(self.backend.clone(), fd, name.to_string()))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.backend.close(self.fd);
    }
}

/// Two handles share a backend when they point at the same object.
/// Every kernel backend talks to the same kernel; a mock host is one object.
pub(crate) fn same_backend(a: &Arc<dyn Backend>, b: &Arc<dyn Backend>) -> bool {
    (a.kind() == crate::backend::BackendKind::Kernel && b.kind() == crate::backend::BackendKind::Kernel)
        || std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}
