//! The real thing: every method is one syscall on a descriptor from
//! `/dev/vfio`. Each `unsafe` block wraps exactly one syscall and says why
//! its pointer and length are valid.

use std::ffi::{CStr, CString};
use std::path::PathBuf;
use std::ptr::NonNull;

use super::{buf_bytes, buf_bytes_mut, read_pod, write_pod, Backend, BackendKind, Errno, Mmap, RawFd, SysResult};
use crate::uapi::iommufd as fd;
use crate::uapi::{self, vfio_group_status, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, vfio_irq_info};

/// Real ioctls on `/dev/vfio` (or another directory holding the same nodes,
/// for a chroot or a container runtime).
#[derive(Debug, Clone)]
pub struct KernelBackend {
    dev_vfio: PathBuf,
}

impl Default for KernelBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelBackend {
    pub fn new() -> Self {
        Self { dev_vfio: PathBuf::from("/dev/vfio") }
    }

    /// Use `dir` instead of `/dev/vfio`.
    pub fn with_dev_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dev_vfio: dir.into() }
    }

    fn open_path(&self, name: &str) -> SysResult<RawFd> {
        let path = self.dev_vfio.join(name);
        let c = CString::new(path.into_os_string().into_encoded_bytes()).map_err(|_| Errno(libc::EINVAL))?;
        // SAFETY: `c` is a NUL-terminated path that outlives the call; open
        // does not retain the pointer.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            Err(Errno::last())
        } else {
            Ok(fd)
        }
    }
}

/// `ioctl(fd, request, arg)` where `arg` is an integer, not a pointer.
fn ioctl_val(fd: RawFd, request: u64, arg: libc::c_ulong) -> SysResult<i32> {
    // SAFETY: the request takes its argument by value (VFIO_CHECK_EXTENSION,
    // VFIO_SET_IOMMU, or no argument at all); no memory is passed.
    let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, arg) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// `ioctl(fd, request, ptr)`; `ptr` must be valid for the kernel's reads
/// and writes of `argsz` bytes, which every caller states.
fn ioctl_ptr<T>(fd: RawFd, request: u64, ptr: *mut T) -> SysResult<i32> {
    // SAFETY: callers pass a pointer to a live, properly aligned buffer at
    // least as long as the `argsz` it holds (or, for GET_DEVICE_FD, a
    // NUL-terminated string); the kernel copies at most that much.
    let r = unsafe { libc::ioctl(fd, request as libc::c_ulong, ptr) };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// Checks that an info buffer is at least as long as the `argsz` it
/// declares, so the kernel cannot write past its end.
fn check_argsz(buf: &[u64]) -> SysResult<()> {
    let argsz = crate::backend::argsz_of(buf) as usize;
    if argsz > buf.len() * 8 {
        return Err(Errno(libc::EINVAL));
    }
    Ok(())
}

/// The most a size-tagged command may claim (`size`/`argsz` beyond the
/// struct): the kernel reads that many bytes (copy_struct_from_user wants
/// the tail zero), so the backend lends a zeroed buffer that long.
const MAX_UCMD: usize = 1 << 20;

/// An iommufd or cdev command whose struct begins with its own `size`
/// (`argsz`): the kernel reads `size` bytes and writes back within the
/// struct. A claimed size larger than the Rust struct gets a zeroed buffer
/// of that length, so the kernel never reads past memory we own; the
/// struct is copied back whether the call succeeds or not (IOVA_RANGES
/// writes `num_iovas` before failing with EMSGSIZE).
fn size_tagged<T: Copy + Default>(fd: RawFd, request: u64, cmd: &mut T) -> SysResult<()> {
    let struct_len = std::mem::size_of::<T>();
    let mut head = [0u64; 1];
    write_pod(buf_bytes_mut(&mut head), 0, cmd, 4);
    let claimed = super::argsz_of(&head) as usize;
    if claimed > MAX_UCMD {
        return Err(Errno(libc::E2BIG));
    }
    let mut buf = vec![0u64; claimed.max(struct_len).div_ceil(8)];
    write_pod(buf_bytes_mut(&mut buf), 0, cmd, struct_len);
    let r = ioctl_ptr(fd, request, buf.as_mut_ptr());
    if let Some(back) = read_pod::<T>(buf_bytes(&buf), 0) {
        *cmd = back;
    }
    r.map(drop)
}

impl KernelBackend {
    /// `/dev/iommu` is beside `/dev/vfio`, not in it.
    fn dev_root(&self) -> PathBuf {
        self.dev_vfio.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/dev"))
    }

    fn open_abs(path: PathBuf) -> SysResult<RawFd> {
        let c = CString::new(path.into_os_string().into_encoded_bytes()).map_err(|_| Errno(libc::EINVAL))?;
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            Err(Errno::last())
        } else {
            Ok(fd)
        }
    }
}

impl Backend for KernelBackend {
    fn open_iommufd(&self) -> SysResult<RawFd> {
        Self::open_abs(self.dev_root().join("iommu"))
    }

    fn open_device_cdev(&self, index: u32) -> SysResult<RawFd> {
        Self::open_abs(self.dev_vfio.join("devices").join(format!("vfio{index}")))
    }

    fn iommu_destroy(&self, iommufd: RawFd, cmd: &fd::iommu_destroy) -> SysResult<()> {
        size_tagged(iommufd, fd::IOMMU_DESTROY, &mut cmd.clone())
    }

    fn ioas_alloc(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_alloc) -> SysResult<()> {
        size_tagged(iommufd, fd::IOMMU_IOAS_ALLOC, cmd)
    }

    fn ioas_iova_ranges(
        &self,
        iommufd: RawFd,
        cmd: &mut fd::iommu_ioas_iova_ranges,
        ranges: &mut [fd::iommu_iova_range],
    ) -> SysResult<()> {
        // The kernel writes at most num_iovas ranges at allowed_iovas: both
        // come from `ranges`, which lives across the call.
        cmd.allowed_iovas = ranges.as_mut_ptr() as u64;
        cmd.num_iovas = ranges.len() as u32;
        size_tagged(iommufd, fd::IOMMU_IOAS_IOVA_RANGES, cmd)
    }

    fn ioas_allow_iovas(
        &self,
        iommufd: RawFd,
        cmd: &mut fd::iommu_ioas_allow_iovas,
        ranges: &[fd::iommu_iova_range],
    ) -> SysResult<()> {
        // Read only by the kernel, num_iovas entries from `ranges`.
        cmd.allowed_iovas = ranges.as_ptr() as u64;
        cmd.num_iovas = ranges.len() as u32;
        size_tagged(iommufd, fd::IOMMU_IOAS_ALLOW_IOVAS, cmd)
    }

    fn ioas_map(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_map) -> SysResult<()> {
        size_tagged(iommufd, fd::IOMMU_IOAS_MAP, cmd)
    }

    fn ioas_copy(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_copy) -> SysResult<()> {
        size_tagged(iommufd, fd::IOMMU_IOAS_COPY, cmd)
    }

    fn ioas_map_file(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_map_file) -> SysResult<()> {
        size_tagged(iommufd, fd::IOMMU_IOAS_MAP_FILE, cmd)
    }

    fn ioas_change_process(&self, iommufd: RawFd, cmd: &fd::iommu_ioas_change_process) -> SysResult<()> {
        let mut c = *cmd;
        size_tagged(iommufd, fd::IOMMU_IOAS_CHANGE_PROCESS, &mut c)
    }

    fn pinned_pages(&self) -> SysResult<u64> {
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmPin:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or(Errno(libc::ENODATA))?;
        Ok(kb * 1024 / crate::backend::mock::pin::host_page_size())
    }

    fn ioas_unmap(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_unmap) -> SysResult<()> {
        size_tagged(iommufd, fd::IOMMU_IOAS_UNMAP, cmd)
    }

    fn iommu_option(&self, iommufd: RawFd, cmd: &mut fd::iommu_option) -> SysResult<()> {
        size_tagged(iommufd, fd::IOMMU_OPTION, cmd)
    }

    fn iommu_get_hw_info(&self, iommufd: RawFd, cmd: &mut fd::iommu_hw_info, data: &mut [u64]) -> SysResult<()> {
        // The kernel writes (and zero-fills) at most data_len bytes at data_uptr.
        cmd.data_uptr = data.as_mut_ptr() as u64;
        cmd.data_len = (data.len() * 8) as u32;
        size_tagged(iommufd, fd::IOMMU_GET_HW_INFO, cmd)
    }

    fn hwpt_alloc(&self, iommufd: RawFd, cmd: &mut fd::iommu_hwpt_alloc) -> SysResult<()> {
        // No driver data: a data_uptr the caller set would be read by the kernel.
        cmd.data_uptr = 0;
        size_tagged(iommufd, fd::IOMMU_HWPT_ALLOC, cmd)
    }

    fn hwpt_set_dirty_tracking(&self, iommufd: RawFd, cmd: &fd::iommu_hwpt_set_dirty_tracking) -> SysResult<()> {
        size_tagged(iommufd, fd::IOMMU_HWPT_SET_DIRTY_TRACKING, &mut cmd.clone())
    }

    fn hwpt_get_dirty_bitmap(
        &self,
        iommufd: RawFd,
        cmd: &mut fd::iommu_hwpt_get_dirty_bitmap,
        bitmap: &mut [u64],
    ) -> SysResult<()> {
        // The kernel may set any bit up to the one for the range's last
        // byte: refuse a range whose bitmap would not fit in `bitmap`.
        match fd::dirty_bitmap_words(cmd.length, cmd.page_size) {
            Some(words) if words > bitmap.len() as u64 => return Err(Errno(libc::EINVAL)),
            Some(_) => {}
            // page_size 0: iommufd_check_iova_range refuses it before the
            // bitmap is touched.
            None if cmd.page_size == 0 => {}
            // length 0: 6.12 refuses it, but 7.2 dropped that check: the
            // last IOVA, iova - 1, wraps (EOVERFLOW), except from iova 0,
            // where the range is the whole address space, a bitmap no
            // buffer holds. Answer as 6.12 without asking.
            None => return Err(Errno(libc::EINVAL)),
        }
        cmd.data = bitmap.as_mut_ptr() as u64;
        size_tagged(iommufd, fd::IOMMU_HWPT_GET_DIRTY_BITMAP, cmd)
    }

    fn iommufd_test(&self, iommufd: RawFd, cmd: &mut crate::uapi::iommufd_test::iommu_test_cmd, bitmap: &[u64]) -> SysResult<()> {
        use crate::uapi::iommufd_test::*;
        match cmd.op {
            IOMMU_TEST_OP_MOCK_DOMAIN | IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS => {}
            // iommufd_test_dirty reads DIV_ROUND_UP(length / page_size, 8)
            // bytes at uptr: point it at `bitmap`, and refuse a range that
            // reads past its end (the kernel refuses a zero page_size or
            // length itself, before reading).
            IOMMU_TEST_OP_DIRTY => {
                let (_, length, page_size, _) = cmd.dirty_args();
                let bits = length.checked_div(page_size).unwrap_or(0);
                if bits.div_ceil(64) > bitmap.len() as u64 {
                    return Err(Errno(libc::EINVAL));
                }
                cmd.set_dirty_uptr(bitmap.as_ptr() as u64);
            }
            // Other ops take user pointers this seam does not vouch for.
            _ => return Err(Errno(libc::EOPNOTSUPP)),
        }
        size_tagged(iommufd, IOMMU_TEST_CMD, cmd)
    }

    fn device_bind_iommufd(&self, device: RawFd, cmd: &mut fd::vfio_device_bind_iommufd) -> SysResult<()> {
        size_tagged(device, fd::VFIO_DEVICE_BIND_IOMMUFD, cmd)
    }

    fn device_attach_iommufd_pt(&self, device: RawFd, cmd: &mut fd::vfio_device_attach_iommufd_pt) -> SysResult<()> {
        size_tagged(device, fd::VFIO_DEVICE_ATTACH_IOMMUFD_PT, cmd)
    }

    fn device_detach_iommufd_pt(&self, device: RawFd, cmd: &fd::vfio_device_detach_iommufd_pt) -> SysResult<()> {
        size_tagged(device, fd::VFIO_DEVICE_DETACH_IOMMUFD_PT, &mut cmd.clone())
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Kernel
    }

    fn spapr<'a>(&'a self, container: RawFd) -> Box<dyn crate::spapr::SpaprOps + 'a> {
        Box::new(super::spapr_kernel::KernelSpapr::new(container))
    }

    fn open_container(&self) -> SysResult<RawFd> {
        self.open_path("vfio")
    }

    fn open_group(&self, group: u32) -> SysResult<RawFd> {
        self.open_path(&group.to_string())
    }

    fn close(&self, fd: RawFd) {
        // SAFETY: `fd` was returned by open/ioctl of this backend and is
        // owned by exactly one safe object, which calls close once on drop.
        unsafe { libc::close(fd) };
    }

    fn get_api_version(&self, container: RawFd) -> SysResult<i32> {
        ioctl_val(container, uapi::VFIO_GET_API_VERSION, 0)
    }

    fn check_extension(&self, container: RawFd, extension: u32) -> SysResult<i32> {
        ioctl_val(container, uapi::VFIO_CHECK_EXTENSION, extension as libc::c_ulong)
    }

    fn set_iommu(&self, container: RawFd, iommu: u32) -> SysResult<()> {
        ioctl_val(container, uapi::VFIO_SET_IOMMU, iommu as libc::c_ulong).map(drop)
    }

    fn iommu_get_info(&self, container: RawFd, buf: &mut [u64]) -> SysResult<()> {
        check_argsz(buf)?;
        ioctl_ptr(container, uapi::VFIO_IOMMU_GET_INFO, buf.as_mut_ptr()).map(drop)
    }

    fn map_dma(&self, container: RawFd, map: &vfio_iommu_type1_dma_map) -> SysResult<()> {
        let mut m = *map;
        ioctl_ptr(container, uapi::VFIO_IOMMU_MAP_DMA, &mut m).map(drop)
    }

    fn unmap_dma(&self, container: RawFd, unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()> {
        ioctl_ptr(container, uapi::VFIO_IOMMU_UNMAP_DMA, unmap).map(drop)
    }

    fn iommu_dirty_pages(&self, container: RawFd, buf: &[u64]) -> SysResult<()> {
        check_argsz(buf)?;
        // The kernel reads the argument and writes only through bitmap.data,
        // which the caller owns (see the trait's contract).
        ioctl_ptr(container, uapi::VFIO_IOMMU_DIRTY_PAGES, buf.as_ptr() as *mut u64).map(drop)
    }

    fn group_get_status(&self, group: RawFd, status: &mut vfio_group_status) -> SysResult<()> {
        ioctl_ptr(group, uapi::VFIO_GROUP_GET_STATUS, status).map(drop)
    }

    fn group_set_container(&self, group: RawFd, container: RawFd) -> SysResult<()> {
        let mut fd: i32 = container;
        ioctl_ptr(group, uapi::VFIO_GROUP_SET_CONTAINER, &mut fd).map(drop)
    }

    fn group_unset_container(&self, group: RawFd) -> SysResult<()> {
        ioctl_val(group, uapi::VFIO_GROUP_UNSET_CONTAINER, 0).map(drop)
    }

    fn group_get_device_fd(&self, group: RawFd, name: &CStr) -> SysResult<RawFd> {
        ioctl_ptr(group, uapi::VFIO_GROUP_GET_DEVICE_FD, name.as_ptr() as *mut libc::c_char)
    }

    fn device_get_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        check_argsz(buf)?;
        ioctl_ptr(device, uapi::VFIO_DEVICE_GET_INFO, buf.as_mut_ptr()).map(drop)
    }

    fn device_get_region_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        check_argsz(buf)?;
        ioctl_ptr(device, uapi::VFIO_DEVICE_GET_REGION_INFO, buf.as_mut_ptr()).map(drop)
    }

    fn device_get_irq_info(&self, device: RawFd, info: &mut vfio_irq_info) -> SysResult<()> {
        ioctl_ptr(device, uapi::VFIO_DEVICE_GET_IRQ_INFO, info).map(drop)
    }

    fn device_set_irqs(&self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        check_argsz(buf)?;
        // The kernel only reads a SET_IRQS argument.
        ioctl_ptr(device, uapi::VFIO_DEVICE_SET_IRQS, buf.as_ptr() as *mut u64).map(drop)
    }

    fn device_reset(&self, device: RawFd) -> SysResult<()> {
        ioctl_val(device, uapi::VFIO_DEVICE_RESET, 0).map(drop)
    }

    fn device_get_pci_hot_reset_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        check_argsz(buf)?;
        ioctl_ptr(device, uapi::VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, buf.as_mut_ptr()).map(drop)
    }

    fn device_pci_hot_reset(&self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        check_argsz(buf)?;
        // The kernel only reads a PCI_HOT_RESET argument.
        ioctl_ptr(device, uapi::VFIO_DEVICE_PCI_HOT_RESET, buf.as_ptr() as *mut u64).map(drop)
    }

    fn device_read(&self, device: RawFd, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        // SAFETY: `buf` is a live, writable slice of exactly `buf.len()` bytes.
        let n = unsafe { libc::pread(device, buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t) };
        if n < 0 {
            Err(Errno::last())
        } else {
            Ok(n as usize)
        }
    }

    fn device_write(&self, device: RawFd, offset: u64, buf: &[u8]) -> SysResult<usize> {
        // SAFETY: `buf` is a live slice of exactly `buf.len()` readable bytes.
        let n = unsafe { libc::pwrite(device, buf.as_ptr().cast(), buf.len(), offset as libc::off_t) };
        if n < 0 {
            Err(Errno::last())
        } else {
            Ok(n as usize)
        }
    }

    fn mmap(&self, device: RawFd, offset: u64, len: usize) -> SysResult<Mmap> {
        // SAFETY: a fresh shared mapping chosen by the kernel (addr NULL);
        // nothing existing is replaced. The result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                device,
                offset as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(Errno(libc::EFAULT))?;
        Ok(Mmap::Host { ptr, len })
    }

    fn munmap(&self, map: &Mmap) {
        if let Mmap::Host { ptr, len } = map {
            // SAFETY: `ptr`/`len` are exactly what mmap returned, and the
            // owning MappedRegion is being dropped, so no access follows.
            unsafe { libc::munmap(ptr.as_ptr().cast(), *len) };
        }
    }

    fn mmio_read(&self, _map: &Mmap, _offset: u64, _buf: &mut [u8]) -> SysResult<()> {
        // Kernel mappings are host memory, accessed directly by MappedRegion.
        Err(Errno(libc::ENOTTY))
    }

    fn mmio_write(&self, _map: &Mmap, _offset: u64, _buf: &[u8]) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
}
