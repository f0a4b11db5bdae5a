//! The backend seam. [`Backend`] is the whole VFIO system-call surface, one
//! method per ioctl (plus open/close/pread/pwrite/mmap), with raw `uapi`
//! arguments and bare errnos. Two implementations exist, chosen when the
//! caller opens something:
//!
//! - [`KernelBackend`]: real syscalls on `/dev/vfio`;
//! - [`MockBackend`]: an in-process model of the kernel, configured per
//!   fixture by [`MockConfig`], following the kernel's rules errno for errno.
//!
//! The safe types ([`crate::Container`], [`crate::Group`], [`crate::Device`])
//! hold an `Arc<dyn Backend>` and a descriptor and never ask which one they
//! have. Arguments pass through unchanged, invalid ones included, so a
//! conformance run can hold the mock to the kernel call by call.
//!
//! sPAPR: the TCE ioctls are [`Backend::spapr`], one [`SpaprOps`] per
//! container; `crate::spapr` adds the safety rules above them. A mock container's IOMMU is a [`mock::IommuOps`] opened by an
//! [`mock::IommuDriverOps`]: type1 is [`mock::type1`], sPAPR is [`mock::spapr`].

pub mod kernel;
pub mod mock;
pub mod spapr_kernel;

use std::ffi::CStr;
use std::fmt;
use std::ptr::NonNull;

use crate::spapr::SpaprOps;
use crate::uapi::iommufd as fd;
use crate::uapi::{
    vfio_group_status, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_irq_info,
};

pub use kernel::KernelBackend;
pub use mock::{MemlockPolicy, MockBackend};
pub use mock::config::*;
pub use mock::profiles::{HostIommuProfile, AMD_HT_HOLE, AMD_VI, SMMUV3, SMMU_MSI_WINDOW, VIRTIO_IOMMU, VTD, X86_MSI_WINDOW};

/// A descriptor a backend hands out: a real file descriptor for the kernel,
/// an entry of the mock's descriptor table for the mock.
pub type RawFd = i32;

/// A bare errno from a backend; the safe layer adds the call and object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's `errno` after a failed libc call.
    pub fn last() -> Self {
        Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
    }
}

pub type SysResult<T> = std::result::Result<T, Errno>;

/// Which implementation a backend is, for reports only: code above the seam
/// must not branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Kernel,
    Mock,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Kernel => "kernel",
            BackendKind::Mock => "mock",
        })
    }
}

/// A mapping of part of a device region, made by [`Backend::mmap`].
#[derive(Debug)]
pub enum Mmap {
    /// Host memory: a real `mmap` of the device fd; accessed with volatile
    /// loads and stores, released with `munmap`.
    Host { ptr: NonNull<u8>, len: usize },
    /// The mock cannot give a process real MMIO pages that run a device
    /// model on every access, so an emulated mapping forwards each access to
    /// the device model at `fd_offset + offset`, after the same checks the
    /// kernel makes at mmap time (vfio_pci_core_mmap).
    Emulated { device: RawFd, fd_offset: u64, len: usize },
}

// SAFETY: `Host` is a shared MMIO mapping of a device fd; the pointer is only
// dereferenced through volatile accesses bounds-checked against `len`, which
// is sound from any thread (the device, not Rust, serialises MMIO).
unsafe impl Send for Mmap {}
// SAFETY: as above; no interior state is mutated through `&Mmap` by Rust.
unsafe impl Sync for Mmap {}

impl Mmap {
    pub fn len(&self) -> usize {
        match self {
            Mmap::Host { len, .. } | Mmap::Emulated { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The VFIO system-call surface. Every method mirrors one kernel entry point
/// and returns its errno unchanged. Buffers for the `*_GET_INFO` ioctls are
/// `u64` slices so they are 8-byte aligned like the kernel's capability
/// chains; their first bytes hold the uapi struct with `argsz` set by the
/// caller, and the backend fills them exactly as the kernel would (including
/// raising `argsz` when the capability chain does not fit).
pub trait Backend: Send + Sync + fmt::Debug {
    fn kind(&self) -> BackendKind;

    /// `open("/dev/vfio/vfio")`.
    fn open_container(&self) -> SysResult<RawFd>;
    /// `open("/dev/vfio/<group>")`.
    fn open_group(&self, group: u32) -> SysResult<RawFd>;
    /// `close(fd)` for any descriptor this backend handed out.
    fn close(&self, fd: RawFd);

    // Container (/dev/vfio/vfio) ioctls.
    fn get_api_version(&self, container: RawFd) -> SysResult<i32>;
    /// Returns the ioctl's value (> 0 when the extension is offered).
    fn check_extension(&self, container: RawFd, extension: u32) -> SysResult<i32>;
    fn set_iommu(&self, container: RawFd, iommu: u32) -> SysResult<()>;
    /// `VFIO_IOMMU_GET_INFO` (type1): `buf` starts with a `vfio_iommu_type1_info`.
    fn iommu_get_info(&self, container: RawFd, buf: &mut [u64]) -> SysResult<()>;
    fn map_dma(&self, container: RawFd, map: &vfio_iommu_type1_dma_map) -> SysResult<()>;
    /// Issue `maps` in order, stopping at the first failure; returns how
    /// many succeeded and the failure. The kernel has no batch ioctl, so the
    /// default issues one `VFIO_IOMMU_MAP_DMA` per element; the mock takes
    /// its lock once.
    fn map_dma_many(
        &self,
        container: RawFd,
        maps: &[vfio_iommu_type1_dma_map],
    ) -> (usize, SysResult<()>) {
        for (i, m) in maps.iter().enumerate() {
            if let Err(e) = self.map_dma(container, m) {
                return (i, Err(e));
            }
        }
        (maps.len(), Ok(()))
    }
    /// On success the kernel writes the number of bytes unmapped into `size`.
    fn unmap_dma(&self, container: RawFd, unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()>;
    /// `VFIO_IOMMU_DIRTY_PAGES`: `buf` holds a `vfio_iommu_type1_dirty_bitmap`
    /// and, for GET_BITMAP, a `vfio_iommu_type1_dirty_bitmap_get` whose
    /// `bitmap.data` points at memory the kernel writes: like a DMA address,
    /// it must be memory of this process that nothing else uses meanwhile.
    fn iommu_dirty_pages(&self, container: RawFd, buf: &[u64]) -> SysResult<()> {
        let _ = (container, buf);
        Err(Errno(libc::ENOTTY))
    }

    // Group (/dev/vfio/N) ioctls.
    fn group_get_status(&self, group: RawFd, status: &mut vfio_group_status) -> SysResult<()>;
    fn group_set_container(&self, group: RawFd, container: RawFd) -> SysResult<()>;
    fn group_unset_container(&self, group: RawFd) -> SysResult<()>;
    fn group_get_device_fd(&self, group: RawFd, name: &CStr) -> SysResult<RawFd>;

    // Device fd ioctls and file operations.
    /// `buf` starts with a `vfio_device_info`.
    fn device_get_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()>;
    /// `buf` starts with a `vfio_region_info` whose `index` is set.
    fn device_get_region_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()>;
    fn device_get_irq_info(&self, device: RawFd, info: &mut vfio_irq_info) -> SysResult<()>;
    /// `buf` holds a `vfio_irq_set` followed by its data.
    fn device_set_irqs(&self, device: RawFd, buf: &[u64]) -> SysResult<()>;
    fn device_reset(&self, device: RawFd) -> SysResult<()>;
    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: `buf` starts with a
    /// `vfio_pci_hot_reset_info`. On ENOSPC the kernel still writes `count`
    /// (how many devices the reset affects) so the caller can grow the buffer.
    fn device_get_pci_hot_reset_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let _ = (device, buf);
        Err(Errno(libc::ENOTTY))
    }
    /// `VFIO_DEVICE_PCI_HOT_RESET`: `buf` holds a `vfio_pci_hot_reset`
    /// followed by `count` group fds that together own every affected device.
    fn device_pci_hot_reset(&self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        let _ = (device, buf);
        Err(Errno(libc::ENOTTY))
    }
    /// `pread(device, buf, offset)`: returns bytes read.
    fn device_read(&self, device: RawFd, offset: u64, buf: &mut [u8]) -> SysResult<usize>;
    /// `pwrite(device, buf, offset)`: returns bytes written.
    fn device_write(&self, device: RawFd, offset: u64, buf: &[u8]) -> SysResult<usize>;
    /// `mmap(NULL, len, PROT_READ|PROT_WRITE, MAP_SHARED, device, offset)`.
    fn mmap(&self, device: RawFd, offset: u64, len: usize) -> SysResult<Mmap>;
    /// Release a mapping made by [`Backend::mmap`].
    fn munmap(&self, map: &Mmap);
    /// Access an [`Mmap::Emulated`] mapping; `Host` mappings are accessed
    /// directly by the safe layer and never reach these.
    fn mmio_read(&self, map: &Mmap, offset: u64, buf: &mut [u8]) -> SysResult<()>;
    fn mmio_write(&self, map: &Mmap, offset: u64, buf: &[u8]) -> SysResult<()>;

    /// The sPAPR TCE ioctls on `container` once its IOMMU is an sPAPR type
    /// (`tce_iommu_ioctl`). Their answers are richer than an errno (the
    /// positive "nothing mapped" of a map, a window's start), so they come as
    /// [`SpaprOps`] calls; the default answers ENOTTY to each, as an IOMMU
    /// driver does for a command it lacks.
    fn spapr<'a>(&'a self, container: RawFd) -> Box<dyn SpaprOps + 'a> {
        let _ = container;
        Box::new(crate::spapr::Unsupported)
    }

    // iommufd (/dev/iommu) and the VFIO device cdev. Every command passes
    // its uapi struct through unchanged, `size`/`argsz` included, so the
    // mock is held to the kernel's size rules too. A backend without
    // iommufd answers ENOENT to the opens (no such node) and ENOTTY to the
    // ioctls, as a kernel without CONFIG_IOMMUFD does.

    /// `open("/dev/iommu")`.
    fn open_iommufd(&self) -> SysResult<RawFd> {
        Err(Errno(libc::ENOENT))
    }
    /// `open("/dev/vfio/devices/vfio<index>")`.
    fn open_device_cdev(&self, index: u32) -> SysResult<RawFd> {
        let _ = index;
        Err(Errno(libc::ENOENT))
    }
    /// `IOMMU_DESTROY`.
    fn iommu_destroy(&self, iommufd: RawFd, cmd: &fd::iommu_destroy) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_IOAS_ALLOC`: the kernel writes `out_ioas_id`.
    fn ioas_alloc(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_alloc) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_IOAS_IOVA_RANGES` with `allowed_iovas` pointing at `ranges`
    /// and `num_iovas` its length (set by the backend, so the kernel never
    /// writes past it). The kernel writes `num_iovas` (the whole count, which
    /// may exceed the buffer: EMSGSIZE) and `out_iova_alignment`.
    fn ioas_iova_ranges(
        &self,
        iommufd: RawFd,
        cmd: &mut fd::iommu_ioas_iova_ranges,
        ranges: &mut [fd::iommu_iova_range],
    ) -> SysResult<()> {
        let _ = (iommufd, cmd, ranges);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_IOAS_ALLOW_IOVAS` with `allowed_iovas`/`num_iovas` set from `ranges`.
    fn ioas_allow_iovas(
        &self,
        iommufd: RawFd,
        cmd: &mut fd::iommu_ioas_allow_iovas,
        ranges: &[fd::iommu_iova_range],
    ) -> SysResult<()> {
        let _ = (iommufd, cmd, ranges);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_IOAS_MAP`: without `IOMMU_IOAS_MAP_FIXED_IOVA` the kernel
    /// chooses the IOVA and writes it to `iova`.
    fn ioas_map(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_map) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// Issue `maps` in order, stopping at the first failure; as
    /// [`Backend::map_dma_many`] for type1.
    fn ioas_map_many(&self, iommufd: RawFd, maps: &mut [fd::iommu_ioas_map]) -> (usize, SysResult<()>) {
        for (i, m) in maps.iter_mut().enumerate() {
            if let Err(e) = self.ioas_map(iommufd, m) {
                return (i, Err(e));
            }
        }
        (maps.len(), Ok(()))
    }
    /// `IOMMU_IOAS_MAP_FILE` (Linux 6.13): as `ioas_map`, from a memfd.
    fn ioas_map_file(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_map_file) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_IOAS_CHANGE_PROCESS` (Linux 6.13).
    fn ioas_change_process(&self, iommufd: RawFd, cmd: &fd::iommu_ioas_change_process) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// The pages the kernel holds pinned for this process through iommufd
    /// and the like (`mm->pinned_vm`, `VmPin` in /proc/self/status): iommufd
    /// pins lazily, only while a mapping sits in an IOAS with a domain, and
    /// counts every pin there whatever it charges to locked_vm
    /// (pages.c iopt_pages_update_pinned). type1 never counts here.
    fn pinned_pages(&self) -> SysResult<u64> {
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_IOAS_COPY`: the kernel writes `dst_iova` when it chose it.
    fn ioas_copy(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_copy) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_IOAS_UNMAP`: on success the kernel writes the bytes unmapped to `length`.
    fn ioas_unmap(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_unmap) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_OPTION`: a GET writes `val64`.
    fn iommu_option(&self, iommufd: RawFd, cmd: &mut fd::iommu_option) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_GET_HW_INFO` with `data_uptr`/`data_len` set from `data`
    /// (the kernel raises `data_len` to what it has).
    fn iommu_get_hw_info(&self, iommufd: RawFd, cmd: &mut fd::iommu_hw_info, data: &mut [u64]) -> SysResult<()> {
        let _ = (iommufd, cmd, data);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_HWPT_ALLOC` without driver data (`IOMMU_HWPT_DATA_NONE`):
    /// the kernel writes `out_hwpt_id`.
    fn hwpt_alloc(&self, iommufd: RawFd, cmd: &mut fd::iommu_hwpt_alloc) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_HWPT_SET_DIRTY_TRACKING`.
    fn hwpt_set_dirty_tracking(&self, iommufd: RawFd, cmd: &fd::iommu_hwpt_set_dirty_tracking) -> SysResult<()> {
        let _ = (iommufd, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_HWPT_GET_DIRTY_BITMAP` with `data` pointing at `bitmap`.
    fn hwpt_get_dirty_bitmap(
        &self,
        iommufd: RawFd,
        cmd: &mut fd::iommu_hwpt_get_dirty_bitmap,
        bitmap: &mut [u64],
    ) -> SysResult<()> {
        let _ = (iommufd, cmd, bitmap);
        Err(Errno(libc::ENOTTY))
    }
    /// `IOMMU_TEST_CMD` (CONFIG_IOMMUFD_TEST; the lab only): the mock
    /// domain ops, and DIRTY, whose `uptr` is set to `bitmap`.
    fn iommufd_test(&self, iommufd: RawFd, cmd: &mut crate::uapi::iommufd_test::iommu_test_cmd, bitmap: &[u64]) -> SysResult<()> {
        let _ = (iommufd, cmd, bitmap);
        Err(Errno(libc::ENOTTY))
    }
    /// `VFIO_DEVICE_BIND_IOMMUFD` on a cdev fd: the kernel writes `out_devid`.
    fn device_bind_iommufd(&self, device: RawFd, cmd: &mut fd::vfio_device_bind_iommufd) -> SysResult<()> {
        let _ = (device, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: attaching to an IOAS makes (or
    /// reuses) an automatic HWPT, whose id the kernel writes to `pt_id`.
    fn device_attach_iommufd_pt(&self, device: RawFd, cmd: &mut fd::vfio_device_attach_iommufd_pt) -> SysResult<()> {
        let _ = (device, cmd);
        Err(Errno(libc::ENOTTY))
    }
    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    fn device_detach_iommufd_pt(&self, device: RawFd, cmd: &fd::vfio_device_detach_iommufd_pt) -> SysResult<()> {
        let _ = (device, cmd);
        Err(Errno(libc::ENOTTY))
    }
}

/// The `argsz` (first `u32` in memory) of an info buffer, on either endianness.
pub fn argsz_of(buf: &[u64]) -> u32 {
    match buf.first() {
        Some(w) => {
            let b = w.to_ne_bytes();
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
        }
        None => 0,
    }
}

/// Views an info buffer as bytes (for reading and writing uapi structs and
/// capability chains at byte offsets).
pub fn buf_bytes(buf: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and any byte pattern is a valid u8; the
    // length is exactly the slice's size in bytes and the lifetime is tied to `buf`.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), std::mem::size_of_val(buf)) }
}

/// Mutable byte view of an info buffer.
pub fn buf_bytes_mut(buf: &mut [u64]) -> &mut [u8] {
    let len = std::mem::size_of_val(buf);
    // SAFETY: as `buf_bytes`; the exclusive borrow of `buf` is carried over.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), len) }
}

/// Reads a plain-old-data uapi struct at byte `offset` of `bytes`.
/// Returns `None` when it does not fit.
pub fn read_pod<T: Copy + Default>(bytes: &[u8], offset: usize) -> Option<T> {
    let size = std::mem::size_of::<T>();
    let end = offset.checked_add(size)?;
    if end > bytes.len() {
        return None;
    }
    let mut out = T::default();
    // SAFETY: `T` is one of the repr(C) uapi structs made only of integers
    // (every bit pattern valid); the source range was bounds-checked above
    // and the destination is a distinct local of exactly `size` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().add(offset), (&mut out as *mut T).cast::<u8>(), size)
    };
    Some(out)
}

/// Writes the first `len` bytes of a uapi struct at byte `offset`; returns
/// false (writing nothing) when they do not fit.
pub fn write_pod<T: Copy>(bytes: &mut [u8], offset: usize, value: &T, len: usize) -> bool {
    let len = len.min(std::mem::size_of::<T>());
    let Some(end) = offset.checked_add(len) else { return false };
    if end > bytes.len() {
        return false;
    }
    // SAFETY: the destination range was bounds-checked above; the source is
    // `len <= size_of::<T>()` bytes of a live `T`; the two cannot overlap
    // because `value` is a shared borrow distinct from `bytes`.
    unsafe {
        std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), bytes.as_mut_ptr().add(offset), len)
    };
    true
}
