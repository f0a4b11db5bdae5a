//! The sPAPR TCE calls on a real container fd (`/dev/vfio/vfio` after
//! `VFIO_SET_IOMMU` to `VFIO_SPAPR_TCE_IOMMU` or `VFIO_SPAPR_TCE_v2_IOMMU`).

use crate::backend::RawFd;
use crate::error::{Error, Result};
use crate::spapr::SpaprOps;
use crate::uapi::spapr as u;

/// The container's descriptor, which the container owns and closes. A
/// descriptor closed meanwhile only makes each ioctl fail with EBADF: the
/// kernel checks it, no memory of this process depends on it.
pub struct KernelSpapr {
    fd: RawFd,
}

impl KernelSpapr {
    pub fn new(fd: RawFd) -> Self {
        Self { fd }
    }

    /// Issues one VFIO ioctl whose argument is `*arg`; returns its
    /// non-negative value or the errno.
    fn ioctl<T>(&self, request: u64, name: &'static str, arg: &mut T) -> Result<i32> {
        // SAFETY: `arg` is a live, exclusively borrowed #[repr(C)] struct from
        // uapi::spapr whose first field `argsz` tells the kernel its size; the
        // kernel reads and writes at most that many bytes of it.
        let r = unsafe { libc::ioctl(self.fd, request as _, arg as *mut T) };
        if r < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            return Err(Error::new(errno, name, format!("sPAPR container fd {}", self.fd)).on_spapr());
        }
        Ok(r)
    }

    /// An ioctl without an argument (`VFIO_IOMMU_ENABLE`/`DISABLE`).
    fn ioctl_none(&self, request: u64, name: &'static str) -> Result<i32> {
        // SAFETY: the request takes no argument; the fd is valid while borrowed.
        let r = unsafe { libc::ioctl(self.fd, request as _) };
        if r < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            return Err(Error::new(errno, name, format!("sPAPR container fd {}", self.fd)).on_spapr());
        }
        Ok(r)
    }
}

fn argsz<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

impl SpaprOps for KernelSpapr {
    fn tce_get_info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info> {
        let mut info = u::vfio_iommu_spapr_tce_info { argsz, ..Default::default() };
        self.ioctl(u::VFIO_IOMMU_SPAPR_TCE_GET_INFO, "VFIO_IOMMU_SPAPR_TCE_GET_INFO", &mut info)?;
        Ok(info)
    }

    fn enable(&mut self) -> Result<()> {
        self.ioctl_none(u::VFIO_IOMMU_ENABLE, "VFIO_IOMMU_ENABLE").map(drop)
    }

    fn disable(&mut self) -> Result<()> {
        self.ioctl_none(u::VFIO_IOMMU_DISABLE, "VFIO_IOMMU_DISABLE").map(drop)
    }

    fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        let mut r = u::vfio_iommu_spapr_register_memory {
            argsz: argsz::<u::vfio_iommu_spapr_register_memory>(),
            flags,
            vaddr,
            size,
        };
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_REGISTER_MEMORY";
        match self.ioctl(u::VFIO_IOMMU_SPAPR_REGISTER_MEMORY, IOCTL, &mut r)? {
            0 => Ok(()),
            // mm_iommu_do_alloc: when pin_user_pages pins only the first n
            // pages (the range runs into memory the process has not mapped)
            // the count n comes back as the ioctl's value, and nothing is
            // registered. A positive value is not success: EFAULT, as for a
            // range whose first page is unmapped.
            pinned => Err(Error::new(libc::EFAULT, IOCTL, format!("sPAPR container fd {}", self.fd))
                .on_spapr()
                .with_detail(format!("only {pinned} pages of {vaddr:#x}+{size:#x} are mapped in this process; nothing was registered"))),
        }
    }

    fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        let mut r = u::vfio_iommu_spapr_register_memory {
            argsz: argsz::<u::vfio_iommu_spapr_register_memory>(),
            flags,
            vaddr,
            size,
        };
        self.ioctl(u::VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY, "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", &mut r).map(drop)
    }

    fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64> {
        let mut c = u::vfio_iommu_spapr_tce_create {
            argsz: argsz::<u::vfio_iommu_spapr_tce_create>(),
            flags,
            page_shift,
            window_size,
            levels,
            ..Default::default()
        };
        self.ioctl(u::VFIO_IOMMU_SPAPR_TCE_CREATE, "VFIO_IOMMU_SPAPR_TCE_CREATE", &mut c)?;
        Ok(c.start_addr)
    }

    fn tce_remove(&mut self, start_addr: u64, flags: u32) -> Result<()> {
        let mut r =
            u::vfio_iommu_spapr_tce_remove { argsz: argsz::<u::vfio_iommu_spapr_tce_remove>(), flags, start_addr };
        self.ioctl(u::VFIO_IOMMU_SPAPR_TCE_REMOVE, "VFIO_IOMMU_SPAPR_TCE_REMOVE", &mut r).map(drop)
    }

    fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<i32> {
        let mut m =
            u::vfio_iommu_type1_dma_map { argsz: argsz::<u::vfio_iommu_type1_dma_map>(), flags, vaddr, iova, size };
        self.ioctl(u::VFIO_IOMMU_MAP_DMA, "VFIO_IOMMU_MAP_DMA", &mut m)
    }

    fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<i32> {
        let mut m =
            u::vfio_iommu_type1_dma_unmap {
            argsz: argsz::<u::vfio_iommu_type1_dma_unmap>(),
            flags,
            iova,
            size,
            ..Default::default()
        };
        self.ioctl(u::VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA", &mut m)
    }

    fn eeh_pe_op(&mut self, op: u32) -> Result<i32> {
        let mut o = u::vfio_eeh_pe_op { argsz: argsz::<u::vfio_eeh_pe_op>(), flags: 0, op, ..Default::default() };
        self.ioctl(u::VFIO_EEH_PE_OP, "VFIO_EEH_PE_OP", &mut o)
    }
}
