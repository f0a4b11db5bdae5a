//! `Container`: one `/dev/vfio/vfio` file, owning its descriptor.

use std::sync::Arc;

use crate::backend::{buf_bytes, buf_bytes_mut, read_pod, write_pod, Backend, BackendKind, RawFd};
use crate::error::{Error, Result};
use crate::uapi::{self, vfio_info_cap_header, vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap};

/// An IOMMU type or extension as `VFIO_CHECK_EXTENSION` / `VFIO_SET_IOMMU` number them.
pub type Extension = u32;

/// One usable IOVA range, both ends inclusive (`struct vfio_iova_range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaRange {
    pub start: u64,
    pub end: u64,
}

/// `VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationCap {
    pub flags: u32,
    pub pgsize_bitmap: u64,
    pub max_dirty_bitmap_size: u64,
}

/// `VFIO_IOMMU_GET_INFO` (type1) with its capability chain decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuInfo {
    pub flags: u32,
    /// Bitmap of supported IOMMU page sizes (bit n set: 2^n bytes).
    pub iova_pgsizes: u64,
    /// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`, if reported.
    pub iova_ranges: Option<Vec<IovaRange>>,
    /// `VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`: how many more mappings the
    /// container accepts (`dma_entry_limit` minus the live ones).
    pub dma_avail: Option<u32>,
    pub migration: Option<MigrationCap>,
}

impl IommuInfo {
    /// The smallest page size: every map and unmap must be aligned to it.
    pub fn min_page_size(&self) -> u64 {
        if self.iova_pgsizes == 0 {
            0
        } else {
            1u64 << self.iova_pgsizes.trailing_zeros()
        }
    }
}

/// Permissions of a DMA mapping, from the device's point of view.
pub mod dma_flags {
    pub const READ: u32 = crate::uapi::VFIO_DMA_MAP_FLAG_READ;
    pub const WRITE: u32 = crate::uapi::VFIO_DMA_MAP_FLAG_WRITE;
    pub const READ_WRITE: u32 = READ | WRITE;
}

/// A VFIO container. Dropping it closes the descriptor; the kernel keeps the
/// container (and its mappings) alive while a group is still attached.
#[derive(Debug)]
pub struct Container {
    backend: Arc<dyn Backend>,
    fd: RawFd,
}

impl Container {
    /// Opens a new container on `backend` (`open("/dev/vfio/vfio")`).
    pub fn open(backend: Arc<dyn Backend>) -> Result<Self> {
        let fd = backend
            .open_container()
            .map_err(|e| Error::new(e.0, "open", format!("{} container /dev/vfio/vfio", backend.kind())))?;
        Ok(Self { backend, fd })
    }

    /// Adopts a container descriptor this process received from another
    /// (a live hand-over): the same open file, so the same container.
    /// Dropping the value closes it.
    pub fn from_raw(backend: Arc<dyn Backend>, fd: RawFd) -> Self {
        Self { backend, fd }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn backend_kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// The descriptor, for extensions (sPAPR) and for `VFIO_GROUP_SET_CONTAINER`.
    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    pub(crate) fn object(&self) -> String {
        format!("{} container fd {}", self.backend.kind(), self.fd)
    }

    fn err(&self, errno: i32, ioctl: &'static str) -> Error {
        Error::new(errno, ioctl, self.object())
    }

    /// `VFIO_GET_API_VERSION`.
    pub fn api_version(&self) -> Result<i32> {
        self.backend.get_api_version(self.fd).map_err(|e| self.err(e.0, "VFIO_GET_API_VERSION"))
    }

    /// `VFIO_CHECK_EXTENSION`: whether `extension` is offered (the raw
    /// value is > 0). Before `SET_IOMMU` every IOMMU driver is asked; after,
    /// only the chosen one (vfio_container_ioctl_check_extension).
    pub fn check_extension(&self, extension: Extension) -> Result<bool> {
        self.backend
            .check_extension(self.fd, extension)
            .map(|v| v > 0)
            .map_err(|e| self.err(e.0, "VFIO_CHECK_EXTENSION"))
    }

    /// `VFIO_SET_IOMMU`: choose the IOMMU model. A group must be attached first.
    pub fn set_iommu(&self, iommu: Extension) -> Result<()> {
        self.backend
            .set_iommu(self.fd, iommu)
            .map_err(|e| self.err(e.0, "VFIO_SET_IOMMU").with_detail(format!("type {iommu}")))
    }

    /// `VFIO_IOMMU_GET_INFO` (type1), growing the buffer when the kernel
    /// reports a larger `argsz` so the whole capability chain is read.
    pub fn iommu_info(&self) -> Result<IommuInfo> {
        let minsz = std::mem::size_of::<uapi::vfio_iommu_type1_info>();
        let mut words = minsz.div_ceil(8);
        for _ in 0..4 {
            let mut buf = vec![0u64; words];
            let argsz = (words * 8) as u32;
            let head = uapi::vfio_iommu_type1_info { argsz, ..Default::default() };
            write_pod(buf_bytes_mut(&mut buf), 0, &head, minsz);
            self.backend.iommu_get_info(self.fd, &mut buf).map_err(|e| self.err(e.0, "VFIO_IOMMU_GET_INFO"))?;
            let bytes = buf_bytes(&buf);
            let info: uapi::vfio_iommu_type1_info = read_pod(bytes, 0).unwrap_or_default();
            if info.argsz > argsz {
                words = (info.argsz as usize).div_ceil(8);
                continue;
            }
            return Ok(parse_type1_info(&info, bytes));
        }
        Err(self.err(libc::EOVERFLOW, "VFIO_IOMMU_GET_INFO").with_detail("argsz kept growing"))
    }

    /// A mapping whose last byte is 2^64 - 1 (possible where the aperture
    /// reaches it: AMD-Vi) is refused before the ioctl. type1 accepts it,
    /// but until the 2025 fix "vfio: handle DMA map/unmap up to the
    /// addressable limit" it computes the mapping's end as `iova + size`,
    /// which wraps to 0: a ranged unmap answers success with size 0 and
    /// leaves it, and vfio_unmap_unpin never unpins its pages, which then
    /// stay pinned after the process is gone (the x86-amd lab shows it).
    pub(crate) fn refuse_end_at_top(&self, iova: u64, size: u64) -> Result<()> {
        if size != 0 && iova.wrapping_add(size) == 0 {
            return Err(self.err(libc::ERANGE, "VFIO_IOMMU_MAP_DMA").with_detail(format!(
                "iova {iova:#x} size {size:#x} ends at 2^64: type1 can neither unmap nor unpin such a mapping (its end wraps to 0); refused by vfio-core before the ioctl: leave the last page of the IOVA space unmapped"
            )));
        }
        Ok(())
    }

    /// `VFIO_IOMMU_MAP_DMA`: map `size` bytes of this process at `vaddr` to
    /// the device-visible `iova`, with `flags` from [`dma_flags`]. A mapping
    /// that would end at 2^64 is refused (ERANGE) before the ioctl, since
    /// type1 could never unmap or unpin it (`refuse_end_at_top`).
    pub fn map_dma(&self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.refuse_end_at_top(iova, size)?;
        let map = dma_map(iova, vaddr, size, flags);
        self.backend.map_dma(self.fd, &map).map_err(|e| {
            self.err(e.0, "VFIO_IOMMU_MAP_DMA")
                .with_detail(format!("iova {iova:#x} vaddr {vaddr:#x} size {size:#x} flags {flags:#x}"))
        })
    }

    /// `VFIO_IOMMU_UNMAP_DMA`: returns the number of bytes the kernel unmapped.
    pub fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        self.unmap_raw(iova, size, 0)
    }

    /// `VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_ALL` (needs the
    /// `VFIO_UNMAP_ALL` extension): removes every mapping.
    pub fn unmap_all(&self) -> Result<u64> {
        self.unmap_raw(0, 0, uapi::VFIO_DMA_UNMAP_FLAG_ALL)
    }

    /// `VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_VADDR` (needs
    /// `VFIO_UPDATE_VADDR`): the mappings stay, their host addresses become
    /// invalid until [`Container::update_vaddr`]; for live update of the
    /// process that owns the memory. Returns the bytes invalidated.
    pub fn invalidate_vaddr(&self, iova: u64, size: u64) -> Result<u64> {
        self.unmap_raw(iova, size, uapi::VFIO_DMA_UNMAP_FLAG_VADDR)
    }

    /// `VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_ALL |
    /// VFIO_DMA_UNMAP_FLAG_VADDR`: every mapping's host address becomes
    /// invalid in one call (what QEMU's cpr does before handing over). Fails
    /// with EINVAL, changing nothing, when one is invalid already
    /// (vfio_dma_do_unmap gives back the ones it marked). Returns the bytes
    /// invalidated.
    pub fn invalidate_all_vaddrs(&self) -> Result<u64> {
        self.unmap_raw(0, 0, uapi::VFIO_DMA_UNMAP_FLAG_ALL | uapi::VFIO_DMA_UNMAP_FLAG_VADDR)
    }

    /// `VFIO_IOMMU_MAP_DMA` with `VFIO_DMA_MAP_FLAG_VADDR`: gives the
    /// invalidated mapping at exactly `iova`/`size` its new host address.
    pub fn update_vaddr(&self, iova: u64, vaddr: u64, size: u64) -> Result<()> {
        let map = dma_map(iova, vaddr, size, uapi::VFIO_DMA_MAP_FLAG_VADDR);
        self.backend.map_dma(self.fd, &map).map_err(|e| {
            self.err(e.0, "VFIO_IOMMU_MAP_DMA").with_detail(format!("update vaddr of iova {iova:#x} size {size:#x} to {vaddr:#x}"))
        })
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` with `FLAG_START`: the IOMMU starts
    /// tracking which mapped pages devices may have written (for migration).
    pub fn start_dirty_tracking(&self) -> Result<()> {
        self.dirty_pages_flag(uapi::VFIO_IOMMU_DIRTY_PAGES_FLAG_START)
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` with `FLAG_STOP`.
    pub fn stop_dirty_tracking(&self) -> Result<()> {
        self.dirty_pages_flag(uapi::VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP)
    }

    fn dirty_pages_flag(&self, flag: u32) -> Result<()> {
        let hdr = uapi::vfio_iommu_type1_dirty_bitmap { argsz: 8, flags: flag, data: [] };
        let mut buf = [0u64; 1];
        write_pod(buf_bytes_mut(&mut buf), 0, &hdr, 8);
        self.backend.iommu_dirty_pages(self.fd, &buf).map_err(|e| self.err(e.0, "VFIO_IOMMU_DIRTY_PAGES"))
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` with `FLAG_GET_BITMAP`: one bit per page of
    /// `page_size` (the smallest IOMMU page size) over `[iova, iova + size)`,
    /// bit n of word n / 64 for the page at `iova + n * page_size`. The range
    /// must not cut a mapping; tracking must be started.
    pub fn dirty_bitmap(&self, iova: u64, size: u64, page_size: u64) -> Result<Vec<u64>> {
        let pages = if page_size.is_power_of_two() { size >> page_size.trailing_zeros() } else { 0 };
        let mut bitmap = vec![0u64; (pages.div_ceil(64) as usize).max(1)];
        let head = std::mem::size_of::<uapi::vfio_iommu_type1_dirty_bitmap>();
        let get = uapi::vfio_iommu_type1_dirty_bitmap_get {
            iova,
            size,
            bitmap: uapi::vfio_bitmap { pgsize: page_size, size: (bitmap.len() * 8) as u64, data: bitmap.as_mut_ptr() },
        };
        let argsz = head + std::mem::size_of::<uapi::vfio_iommu_type1_dirty_bitmap_get>();
        let hdr = uapi::vfio_iommu_type1_dirty_bitmap {
            argsz: argsz as u32,
            flags: uapi::VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
            data: [],
        };
        let mut buf = vec![0u64; argsz.div_ceil(8)];
        let bytes = buf_bytes_mut(&mut buf);
        write_pod(bytes, 0, &hdr, head);
        write_pod(bytes, head, &get, std::mem::size_of_val(&get));
        // `bitmap` stays alive and untouched until the call returns; the
        // backend writes it through `get.bitmap.data`.
        self.backend.iommu_dirty_pages(self.fd, &buf).map_err(|e| {
            self.err(e.0, "VFIO_IOMMU_DIRTY_PAGES").with_detail(format!("bitmap of iova {iova:#x} size {size:#x}"))
        })?;
        Ok(bitmap)
    }

    pub(crate) fn unmap_raw(&self, iova: u64, size: u64, flags: u32) -> Result<u64> {
        let mut unmap = vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_unmap>() as u32,
            flags,
            iova,
            size,
            data: [],
        };
        self.backend.unmap_dma(self.fd, &mut unmap).map_err(|e| {
            self.err(e.0, "VFIO_IOMMU_UNMAP_DMA").with_detail(format!("iova {iova:#x} size {size:#x}"))
        })?;
        Ok(unmap.size)
    }
}

pub(crate) fn dma_map(iova: u64, vaddr: u64, size: u64, flags: u32) -> vfio_iommu_type1_dma_map {
    vfio_iommu_type1_dma_map {
        argsz: std::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
        flags,
        vaddr,
        iova,
        size,
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.backend.close(self.fd);
    }
}

/// Walks a capability chain starting at `first` (an offset into `bytes`),
/// calling `f(id, version, offset)` for each header. Stops at offset 0, at a
/// header that does not fit, or at a loop (an offset that does not advance).
pub(crate) fn walk_caps(bytes: &[u8], first: u32, mut f: impl FnMut(u16, u16, usize)) {
    let mut off = first as usize;
    let mut guard = 0;
    while off != 0 && guard < 64 {
        let Some(h) = read_pod::<vfio_info_cap_header>(bytes, off) else { break };
        f(h.id, h.version, off);
        if (h.next as usize) <= off {
            break;
        }
        off = h.next as usize;
        guard += 1;
    }
}

fn parse_type1_info(info: &uapi::vfio_iommu_type1_info, bytes: &[u8]) -> IommuInfo {
    let mut out = IommuInfo {
        flags: info.flags,
        iova_pgsizes: info.iova_pgsizes,
        iova_ranges: None,
        dma_avail: None,
        migration: None,
    };
    if info.flags & uapi::VFIO_IOMMU_INFO_CAPS == 0 || info.cap_offset == 0 {
        return out;
    }
    walk_caps(bytes, info.cap_offset, |id, _version, off| match id {
        uapi::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
            if let Some(cap) = read_pod::<uapi::vfio_iommu_type1_info_cap_iova_range>(bytes, off) {
                let base = off + std::mem::size_of::<uapi::vfio_iommu_type1_info_cap_iova_range>();
                let ranges = (0..cap.nr_iovas as usize)
                    .map_while(|i| read_pod::<uapi::vfio_iova_range>(bytes, base + i * 16))
                    .map(|r| IovaRange { start: r.start, end: r.end })
                    .collect();
                out.iova_ranges = Some(ranges);
            }
        }
        uapi::VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL => {
            if let Some(cap) = read_pod::<uapi::vfio_iommu_type1_info_dma_avail>(bytes, off) {
                out.dma_avail = Some(cap.avail);
            }
        }
        uapi::VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION => {
            if let Some(cap) = read_pod::<uapi::vfio_iommu_type1_info_cap_migration>(bytes, off) {
                out.migration = Some(MigrationCap {
                    flags: cap.flags,
                    pgsize_bitmap: cap.pgsize_bitmap,
                    max_dirty_bitmap_size: cap.max_dirty_bitmap_size,
                });
            }
        }
        _ => {}
    });
    out
}

