//! iommufd (`/dev/iommu`) and VFIO device cdevs (`/dev/vfio/devices/vfioN`):
//! the per-device successor of the container and group API.
//!
//! - [`Iommufd`]: one `/dev/iommu` file, owning its descriptor;
//! - [`Ioas`]: an IO address space in it (IOMMU_IOAS_ALLOC), destroyed on drop;
//! - [`Hwpt`]: a hardware page table allocated on an IOAS (IOMMU_HWPT_ALLOC);
//! - [`CdevDevice`]: a device cdev bound to an iommufd
//!   (VFIO_DEVICE_BIND_IOMMUFD), which attaches to an IOAS or HWPT and then
//!   serves every device ioctl through [`Device`].
//!
//! Batches map into an IOAS through the same all-or-nothing path as a type1
//! container (`crate::batch`), with the type1 READ/WRITE flags of
//! [`crate::dma_flags`], translated to IOMMU_IOAS_MAP_READABLE/WRITEABLE.

use std::sync::Arc;

use crate::backend::{Backend, BackendKind, RawFd, SysResult};
use crate::batch::{self, BatchFlags, BatchReport, DmaSpace};
use crate::container::IovaRange;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::uapi::iommufd as u;
use crate::uapi::{vfio_iommu_type1_dma_map, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE};

fn size_of<T>() -> u32 {
    std::mem::size_of::<T>() as u32
}

/// An iommufd context: every object (IOAS, HWPT, bound device) lives in one.
/// Cloning shares the one descriptor: the [`Ioas`] and [`Hwpt`] values made
/// from it hold a clone, so the file closes (and the kernel destroys what is
/// left in it, iommufd_fops_release) only when the last of them goes.
#[derive(Debug, Clone)]
pub struct Iommufd {
    file: Arc<IommufdFile>,
}

#[derive(Debug)]
struct IommufdFile {
    backend: Arc<dyn Backend>,
    fd: RawFd,
}

impl Drop for IommufdFile {
    fn drop(&mut self) {
        self.backend.close(self.fd);
    }
}

/// What IOMMU_GET_HW_INFO reports about a bound device's IOMMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwInfo {
    /// `IOMMU_HW_INFO_TYPE_*` (1: Intel VT-d, whose `data` is an `iommu_hw_info_vtd`).
    pub data_type: u32,
    /// The driver's data, as long as the kernel has it.
    pub data: Vec<u8>,
    /// `IOMMU_HW_CAP_*` (bit 0: dirty tracking).
    pub capabilities: u64,
    pub max_pasid_log2: u8,
}

impl HwInfo {
    /// IOMMU_HW_CAP_DIRTY_TRACKING: a HWPT for this device can be allocated
    /// with dirty tracking ([`Iommufd::alloc_hwpt`] with
    /// `IOMMU_HWPT_ALLOC_DIRTY_TRACKING`); without it that is EOPNOTSUPP.
    pub fn dirty_tracking(&self) -> bool {
        self.capabilities & u::IOMMU_HW_CAP_DIRTY_TRACKING != 0
    }
}

/// What IOMMU_HWPT_GET_DIRTY_BITMAP reported for `[iova, iova + length)`:
/// bit n (of word n / 64) stands for the `page_size` bytes at
/// `iova + n * page_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirtyBitmap {
    pub iova: u64,
    pub length: u64,
    pub page_size: u64,
    pub words: Vec<u64>,
}

impl DirtyBitmap {
    /// The IOVA of each dirty page, in order.
    pub fn dirty_pages(&self) -> impl Iterator<Item = u64> + '_ {
        let pages = self.length / self.page_size;
        (0..pages).filter(|&n| self.words[(n / 64) as usize] & (1 << (n % 64)) != 0).map(move |n| self.iova + n * self.page_size)
    }

    pub fn dirty_count(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }
}

/// The IOVA ranges an IOAS can map (IOMMU_IOAS_IOVA_RANGES): the holes
/// between its reserved ranges, and the alignment every map must keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoasRanges {
    pub ranges: Vec<IovaRange>,
    pub alignment: u64,
}

impl Iommufd {
    /// `open("/dev/iommu")` on `backend`.
    pub fn open(backend: Arc<dyn Backend>) -> Result<Self> {
        let fd = backend
            .open_iommufd()
            .map_err(|e| Error::new(e.0, "open", format!("{} /dev/iommu", backend.kind())))?;
        Ok(Self { file: Arc::new(IommufdFile { backend, fd }) })
    }

    /// An iommufd descriptor this process received (a live hand-over), now
    /// owned: closed on drop.
    pub fn from_raw(backend: Arc<dyn Backend>, fd: RawFd) -> Self {
        Self { file: Arc::new(IommufdFile { backend, fd }) }
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.file.backend
    }

    pub fn backend_kind(&self) -> BackendKind {
        self.file.backend.kind()
    }

    /// The descriptor, for VFIO_DEVICE_BIND_IOMMUFD and for passing to QEMU
    /// (`-object iommufd,fd=`).
    pub fn raw_fd(&self) -> RawFd {
        self.file.fd
    }

    pub(crate) fn object(&self) -> String {
        format!("{} iommufd fd {}", self.file.backend.kind(), self.file.fd)
    }

    fn err(&self, errno: i32, ioctl: &'static str) -> Error {
        Error::new(errno, ioctl, self.object())
    }

    /// IOMMU_IOAS_CHANGE_PROCESS (Linux 6.13): the pinned-page accounting
    /// of every mapping in every IOAS of this iommufd moves to the calling
    /// process, all or nothing. Only file mappings ([`Ioas::map_file`]) can
    /// move: with any mapping made from addresses it fails (EINVAL) and
    /// changes nothing (drivers/iommu/iommufd/ioas.c
    /// iommufd_ioas_change_process).
    pub fn change_process(&self) -> Result<()> {
        let cmd = u::iommu_ioas_change_process { size: size_of::<u::iommu_ioas_change_process>(), __reserved: 0 };
        self.file.backend.ioas_change_process(self.file.fd, &cmd).map_err(|e| {
            let why = match e.0 {
                libc::ENOTTY => "the kernel predates IOMMU_IOAS_CHANGE_PROCESS (Linux 6.13)",
                libc::EINVAL => "a mapping of this iommufd was made from process addresses (IOMMU_IOAS_MAP), not a file: only IOMMU_IOAS_MAP_FILE mappings can move",
                libc::ENOMEM => "this process's RLIMIT_MEMLOCK cannot take the pinned pages",
                _ => "",
            };
            self.err(e.0, "IOMMU_IOAS_CHANGE_PROCESS").with_detail(why)
        })
    }

    /// IOMMU_IOAS_ALLOC: a new, empty IO address space.
    pub fn alloc_ioas(&self) -> Result<Ioas> {
        let mut cmd = u::iommu_ioas_alloc { size: size_of::<u::iommu_ioas_alloc>(), ..Default::default() };
        self.file.backend.ioas_alloc(self.file.fd, &mut cmd).map_err(|e| self.err(e.0, "IOMMU_IOAS_ALLOC"))?;
        Ok(Ioas { ictx: self.clone(), id: cmd.out_ioas_id })
    }

    /// IOMMU_DESTROY of any object by id (an IOAS or HWPT the caller does
    /// not hold as a Rust value, e.g. one made by a device attach).
    pub fn destroy(&self, id: u32) -> Result<()> {
        let cmd = u::iommu_destroy { size: size_of::<u::iommu_destroy>(), id };
        self.file.backend.iommu_destroy(self.file.fd, &cmd).map_err(|e| self.err(e.0, "IOMMU_DESTROY").with_detail(format!("object {id}")))
    }

    fn option(&self, option_id: u32, op: u16, object_id: u32, val64: u64) -> Result<u64> {
        let mut cmd = u::iommu_option { size: size_of::<u::iommu_option>(), option_id, op, __reserved: 0, object_id, val64 };
        self.file.backend.iommu_option(self.file.fd, &mut cmd).map_err(|e| {
            self.err(e.0, "IOMMU_OPTION").with_detail(format!("option {option_id} op {op} object {object_id} val {val64}"))
        })?;
        Ok(cmd.val64)
    }

    /// IOMMU_OPTION_RLIMIT_MODE: true when pinned pages are charged to the
    /// process's mm (RLIMIT_MEMLOCK per process, as type1 does), false when
    /// charged to the user (the iommufd default for /dev/iommu).
    pub fn rlimit_per_process(&self) -> Result<bool> {
        self.option(u::IOMMU_OPTION_RLIMIT_MODE, u::IOMMU_OPTION_OP_GET, 0, 0).map(|v| v == 1)
    }

    /// Sets the RLIMIT mode (needs CAP_SYS_RESOURCE, and a context with no
    /// objects yet: iommufd_option_rlimit_mode).
    pub fn set_rlimit_per_process(&self, per_process: bool) -> Result<()> {
        self.option(u::IOMMU_OPTION_RLIMIT_MODE, u::IOMMU_OPTION_OP_SET, 0, per_process as u64).map(drop)
    }

    /// IOMMU_GET_HW_INFO for a bound device (`dev_id` from
    /// [`CdevDevice::bind`]), reading as much driver data as the kernel has.
    pub fn hw_info(&self, dev_id: u32) -> Result<HwInfo> {
        let mut words = 4usize;
        for _ in 0..4 {
            let mut data = vec![0u64; words];
            let mut cmd = u::iommu_hw_info { size: size_of::<u::iommu_hw_info>(), dev_id, ..Default::default() };
            self.file
                .backend
                .iommu_get_hw_info(self.file.fd, &mut cmd, &mut data)
                .map_err(|e| self.err(e.0, "IOMMU_GET_HW_INFO").with_detail(format!("device {dev_id}")))?;
            let have = cmd.data_len as usize;
            if have > words * 8 {
                words = have.div_ceil(8);
                continue;
            }
            let bytes = crate::backend::buf_bytes(&data);
            return Ok(HwInfo {
                data_type: cmd.out_data_type,
                data: bytes[..have].to_vec(),
                capabilities: cmd.out_capabilities,
                max_pasid_log2: cmd.out_max_pasid_log2,
            });
        }
        Err(self.err(libc::EOVERFLOW, "IOMMU_GET_HW_INFO").with_detail("data_len kept growing"))
    }

    /// IOMMU_HWPT_ALLOC: a paging HWPT for device `dev_id` on `ioas`, with
    /// `flags` (`IOMMU_HWPT_ALLOC_DIRTY_TRACKING`, `..._NEST_PARENT`).
    pub fn alloc_hwpt(&self, dev_id: u32, ioas: &Ioas, flags: u32) -> Result<Hwpt> {
        let mut cmd = u::iommu_hwpt_alloc {
            size: size_of::<u::iommu_hwpt_alloc>(),
            flags,
            dev_id,
            pt_id: ioas.id,
            data_type: u::IOMMU_HWPT_DATA_NONE,
            ..Default::default()
        };
        self.file.backend.hwpt_alloc(self.file.fd, &mut cmd).map_err(|e| {
            // iommufd_hwpt_paging_alloc: device_iommu_capable(IOMMU_CAP_DIRTY_TRACKING).
            let why = match e.0 {
                libc::EOPNOTSUPP if flags & u::IOMMU_HWPT_ALLOC_DIRTY_TRACKING != 0 => {
                    ": the device's IOMMU has no dirty tracking (IOMMU_GET_HW_INFO capability IOMMU_HW_CAP_DIRTY_TRACKING is unset; QEMU's emulated IOMMUs have none); allocate without the flag and track dirty pages another way"
                }
                libc::ENOENT => ": no bound device has that id",
                libc::EINVAL => ": the page table id is not an IOAS or HWPT of this iommufd",
                _ => "",
            };
            self.err(e.0, "IOMMU_HWPT_ALLOC").with_detail(format!("device {dev_id} on IOAS {} flags {flags:#x}{why}", ioas.id))
        })?;
        Ok(Hwpt { ictx: self.clone(), id: cmd.out_hwpt_id })
    }
}

/// An IO address space. Dropping it destroys it; one still in use (a
/// device or HWPT on it) stays until its users go or the iommufd closes.
#[derive(Debug)]
pub struct Ioas {
    ictx: Iommufd,
    id: u32,
}

/// The map flags of an IOAS from type1's READ/WRITE (`crate::dma_flags`).
/// Other bits have no IOAS meaning: None.
fn ioas_prot(flags: u32) -> Option<u32> {
    if flags & !(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE) != 0 {
        return None;
    }
    let mut out = 0;
    if flags & VFIO_DMA_MAP_FLAG_READ != 0 {
        out |= u::IOMMU_IOAS_MAP_READABLE;
    }
    if flags & VFIO_DMA_MAP_FLAG_WRITE != 0 {
        out |= u::IOMMU_IOAS_MAP_WRITEABLE;
    }
    Some(out)
}

impl Ioas {
    /// The IOAS `id` of `ictx`, made by someone else (a hand-over's old
    /// process): owned from now on.
    pub(crate) fn adopt(ictx: &Iommufd, id: u32) -> Self {
        Self { ictx: ictx.clone(), id }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn iommufd(&self) -> &Iommufd {
        &self.ictx
    }

    pub(crate) fn object(&self) -> String {
        format!("IOAS {} of {}", self.id, self.ictx.object())
    }

    fn err(&self, errno: i32, ioctl: &'static str) -> Error {
        Error::new(errno, ioctl, self.object())
    }

    fn map_cmd(&self, iova: Option<u64>, vaddr: u64, size: u64, prot: u32) -> u::iommu_ioas_map {
        u::iommu_ioas_map {
            size: size_of::<u::iommu_ioas_map>(),
            flags: prot | if iova.is_some() { u::IOMMU_IOAS_MAP_FIXED_IOVA } else { 0 },
            ioas_id: self.id,
            __reserved: 0,
            user_va: vaddr,
            length: size,
            iova: iova.unwrap_or(0),
        }
    }

    /// IOMMU_IOAS_MAP of `size` bytes of this process at `vaddr`, at `iova`
    /// or (None) where the kernel chooses; `flags` are [`crate::dma_flags`].
    /// Returns the IOVA.
    pub fn map(&self, iova: Option<u64>, vaddr: u64, size: u64, flags: u32) -> Result<u64> {
        let detail = || format!("iova {} vaddr {vaddr:#x} size {size:#x} flags {flags:#x}", iova.map_or("any".into(), |i| format!("{i:#x}")));
        let prot = ioas_prot(flags).ok_or_else(|| {
            self.err(libc::EINVAL, "IOMMU_IOAS_MAP").with_detail(format!("{}: only READ and WRITE apply to an IOAS", detail()))
        })?;
        let mut cmd = self.map_cmd(iova, vaddr, size, prot);
        self.ictx.file.backend.ioas_map(self.ictx.file.fd, &mut cmd).map_err(|e| self.err(e.0, "IOMMU_IOAS_MAP").with_detail(detail()))?;
        Ok(cmd.iova)
    }

    /// IOMMU_IOAS_MAP_FILE (Linux 6.13): `size` bytes of the memfd `memfd`
    /// from byte `start` at `iova` (None: the kernel chooses); returns the
    /// IOVA. The IOMMU then holds the file's pages, not this process's
    /// addresses of them, so the mapping can move to another process
    /// ([`Iommufd::change_process`]) without being touched. `flags` as for
    /// [`Ioas::map`].
    pub fn map_file(&self, iova: Option<u64>, memfd: RawFd, start: u64, size: u64, flags: u32) -> Result<u64> {
        let detail = || format!("iova {} memfd {memfd} start {start:#x} size {size:#x} flags {flags:#x}", iova.map_or("any".into(), |i| format!("{i:#x}")));
        let prot = ioas_prot(flags).ok_or_else(|| {
            self.err(libc::EINVAL, "IOMMU_IOAS_MAP_FILE").with_detail(format!("{}: only READ and WRITE apply to an IOAS", detail()))
        })?;
        let mut cmd = u::iommu_ioas_map_file {
            size: size_of::<u::iommu_ioas_map_file>(),
            flags: prot | if iova.is_some() { u::IOMMU_IOAS_MAP_FIXED_IOVA } else { 0 },
            ioas_id: self.id,
            fd: memfd,
            start,
            length: size,
            iova: iova.unwrap_or(0),
        };
        self.ictx.file.backend.ioas_map_file(self.ictx.file.fd, &mut cmd).map_err(|e| {
            let why = match e.0 {
                libc::ENOTTY => ": the kernel predates IOMMU_IOAS_MAP_FILE (Linux 6.13); map by address (map) instead",
                libc::EBADF => ": the descriptor is not open",
                libc::EINVAL => ": a file must be a memfd (shmem or hugetlbfs) covering the range, with READ or WRITE",
                _ => "",
            };
            self.err(e.0, "IOMMU_IOAS_MAP_FILE").with_detail(format!("{}{why}", detail()))
        })?;
        Ok(cmd.iova)
    }

    /// IOMMU_IOAS_UNMAP of `[iova, iova + size)`, which must cover whole
    /// mappings; returns the bytes unmapped.
    pub fn unmap(&self, iova: u64, size: u64) -> Result<u64> {
        let mut cmd = u::iommu_ioas_unmap { size: size_of::<u::iommu_ioas_unmap>(), ioas_id: self.id, iova, length: size };
        self.ictx
            .file
            .backend
            .ioas_unmap(self.ictx.file.fd, &mut cmd)
            .map_err(|e| self.err(e.0, "IOMMU_IOAS_UNMAP").with_detail(format!("iova {iova:#x} size {size:#x}")))?;
        Ok(cmd.length)
    }

    /// IOMMU_IOAS_UNMAP of everything (iova 0, length u64::MAX).
    pub fn unmap_all(&self) -> Result<u64> {
        self.unmap(0, u64::MAX)
    }

    /// IOMMU_IOAS_COPY: maps into this IOAS the pages `src` maps at
    /// `[src_iova, src_iova + size)`, without pinning them again. Returns the
    /// IOVA here.
    pub fn copy_from(&self, src: &Ioas, src_iova: u64, size: u64, iova: Option<u64>, flags: u32) -> Result<u64> {
        let detail = || format!("from IOAS {} iova {src_iova:#x} size {size:#x}", src.id);
        let prot = ioas_prot(flags)
            .ok_or_else(|| self.err(libc::EINVAL, "IOMMU_IOAS_COPY").with_detail(format!("{}: flags {flags:#x}", detail())))?;
        let mut cmd = u::iommu_ioas_copy {
            size: size_of::<u::iommu_ioas_copy>(),
            flags: prot | if iova.is_some() { u::IOMMU_IOAS_MAP_FIXED_IOVA } else { 0 },
            dst_ioas_id: self.id,
            src_ioas_id: src.id,
            length: size,
            dst_iova: iova.unwrap_or(0),
            src_iova,
        };
        self.ictx.file.backend.ioas_copy(self.ictx.file.fd, &mut cmd).map_err(|e| self.err(e.0, "IOMMU_IOAS_COPY").with_detail(detail()))?;
        Ok(cmd.dst_iova)
    }

    /// IOMMU_IOAS_IOVA_RANGES, growing the buffer on EMSGSIZE.
    pub fn iova_ranges(&self) -> Result<IoasRanges> {
        let mut n = 4usize;
        loop {
            let mut ranges = vec![u::iommu_iova_range::default(); n];
            let mut cmd = u::iommu_ioas_iova_ranges { size: size_of::<u::iommu_ioas_iova_ranges>(), ioas_id: self.id, ..Default::default() };
            match self.ictx.file.backend.ioas_iova_ranges(self.ictx.file.fd, &mut cmd, &mut ranges) {
                Err(e) if e.0 == libc::EMSGSIZE && (cmd.num_iovas as usize) > n => n = cmd.num_iovas as usize,
                Err(e) => return Err(self.err(e.0, "IOMMU_IOAS_IOVA_RANGES")),
                Ok(()) => {
                    ranges.truncate(cmd.num_iovas as usize);
                    return Ok(IoasRanges {
                        ranges: ranges.iter().map(|r| IovaRange { start: r.start, end: r.last }).collect(),
                        alignment: cmd.out_iova_alignment,
                    });
                }
            }
        }
    }

    /// IOMMU_IOAS_ALLOW_IOVAS: from now on the kernel picks IOVAs only inside
    /// `ranges` (an empty list allows everything again); a range that holds
    /// a reserved IOVA is refused with EADDRINUSE.
    pub fn allow_iovas(&self, ranges: &[IovaRange]) -> Result<()> {
        let raw: Vec<u::iommu_iova_range> = ranges.iter().map(|r| u::iommu_iova_range { start: r.start, last: r.end }).collect();
        let mut cmd = u::iommu_ioas_allow_iovas { size: size_of::<u::iommu_ioas_allow_iovas>(), ioas_id: self.id, ..Default::default() };
        self.ictx
            .file
            .backend
            .ioas_allow_iovas(self.ictx.file.fd, &mut cmd, &raw)
            .map_err(|e| self.err(e.0, "IOMMU_IOAS_ALLOW_IOVAS").with_detail(format!("{} ranges", ranges.len())))
    }

    /// IOMMU_OPTION_HUGE_PAGES: whether the IOAS may use large IOMMU pages.
    pub fn huge_pages(&self) -> Result<bool> {
        self.ictx.option(u::IOMMU_OPTION_HUGE_PAGES, u::IOMMU_OPTION_OP_GET, self.id, 0).map(|v| v == 1)
    }

    pub fn set_huge_pages(&self, on: bool) -> Result<()> {
        self.ictx.option(u::IOMMU_OPTION_HUGE_PAGES, u::IOMMU_OPTION_OP_SET, self.id, on as u64).map(drop)
    }

    /// Maps every entry (`[iova, vaddr, size]`) at its fixed IOVA, all or
    /// nothing, exactly as [`crate::Container::map_batch`] does for type1.
    pub fn map_batch(&self, entries: &[[u64; 3]], flags: BatchFlags<'_>) -> Result<BatchReport> {
        batch::map_batch(self, entries, flags)
    }

    /// Unmaps every entry (`[iova, size]`) as [`crate::Container::unmap_batch`].
    pub fn unmap_batch(&self, entries: &[[u64; 2]]) -> Result<BatchReport> {
        batch::unmap_batch(self, entries)
    }
}

impl DmaSpace for Ioas {
    const MAP: &'static str = "IOMMU_IOAS_MAP";
    const UNMAP: &'static str = "IOMMU_IOAS_UNMAP";
    fn object(&self) -> String {
        Ioas::object(self)
    }
    fn map_runs(&self, runs: &mut [vfio_iommu_type1_dma_map]) -> (usize, SysResult<()>) {
        let mut cmds = Vec::with_capacity(runs.len());
        for r in runs.iter() {
            match ioas_prot(r.flags) {
                Some(prot) => cmds.push(self.map_cmd(Some(r.iova), r.vaddr, r.size, prot)),
                // Stop before the run with flags an IOAS has no meaning
                // for; its replay in map_one names the entry.
                None => {
                    let (done, res) = self.ictx.file.backend.ioas_map_many(self.ictx.file.fd, &mut cmds);
                    return if res.is_err() { (done, res) } else { (done, Err(crate::backend::Errno(libc::EINVAL))) };
                }
            }
        }
        self.ictx.file.backend.ioas_map_many(self.ictx.file.fd, &mut cmds)
    }
    fn map_one(&self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.map(Some(iova), vaddr, size, flags).map(drop)
    }
    fn unmap_range(&self, iova: u64, size: u64) -> Result<u64> {
        self.unmap(iova, size)
    }
}

impl Drop for Ioas {
    fn drop(&mut self) {
        // EBUSY while a device or HWPT uses it: the object then lives until
        // its users go or the iommufd closes, which is what the kernel does.
        let _ = self.ictx.destroy(self.id);
    }
}

/// A hardware page table on an IOAS; destroyed on drop (when unused).
#[derive(Debug)]
pub struct Hwpt {
    ictx: Iommufd,
    id: u32,
}

impl Hwpt {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// IOMMU_HWPT_SET_DIRTY_TRACKING: EOPNOTSUPP unless the HWPT was
    /// allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING. Enabling clears
    /// every dirty bit first (iopt_set_dirty_tracking ->
    /// iopt_clear_dirty_data), so what [`Hwpt::dirty_bitmap`] reports
    /// afterwards was written since; disabling keeps the bits set so far.
    pub fn set_dirty_tracking(&self, on: bool) -> Result<()> {
        let cmd = u::iommu_hwpt_set_dirty_tracking {
            size: size_of::<u::iommu_hwpt_set_dirty_tracking>(),
            flags: if on { u::IOMMU_HWPT_DIRTY_TRACKING_ENABLE } else { 0 },
            hwpt_id: self.id,
            __reserved: 0,
        };
        self.ictx.file.backend.hwpt_set_dirty_tracking(self.ictx.file.fd, &cmd).map_err(|e| {
            let why = match e.0 {
                libc::EOPNOTSUPP => ": the HWPT was allocated without IOMMU_HWPT_ALLOC_DIRTY_TRACKING (or the kernel lacks dirty tracking)",
                libc::ENOENT => ": no such HWPT in this iommufd",
                _ => "",
            };
            self.ictx.err(e.0, "IOMMU_HWPT_SET_DIRTY_TRACKING").with_detail(format!("HWPT {} {}{why}", self.id, if on { "enable" } else { "disable" }))
        })
    }

    /// IOMMU_HWPT_GET_DIRTY_BITMAP over `[iova, iova + length)` at
    /// `page_size` granularity; `clear` false passes
    /// IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, leaving the bits set for the
    /// next read.
    ///
    /// The kernel requires `iova` and `iova + length` to be multiples of
    /// the IOAS's IOVA alignment and of `page_size`, and a range covered by
    /// contiguous mappings: where it meets a hole it stops without an error
    /// (6.12's iommu_read_and_clear_dirty drops the walk's result), so the
    /// pages after a hole read clean. While tracking is off it answers 0
    /// and reports nothing.
    ///
    /// Refused here before the ioctl, with EINVAL: a zero `length` (6.12
    /// refuses it; 7.2 takes it from iova 0 as the whole address space)
    /// and a `page_size` that is not a power of two (the kernel then counts one bit per its lowest
    /// set bit, a bitmap that does not say what the caller asked).
    pub fn dirty_bitmap(&self, iova: u64, length: u64, page_size: u64, clear: bool) -> Result<DirtyBitmap> {
        let detail = format!("HWPT {} iova {iova:#x} length {length:#x} page_size {page_size:#x}", self.id);
        let refuse = |why: &str| self.ictx.err(libc::EINVAL, "IOMMU_HWPT_GET_DIRTY_BITMAP").with_detail(format!("{detail}: {why}"));
        if !page_size.is_power_of_two() {
            return Err(refuse("page_size must be a power of two"));
        }
        if length == 0 {
            return Err(refuse("length must not be 0"));
        }
        let n = u::dirty_bitmap_words(length, page_size).unwrap_or(1) as usize;
        let mut words = Vec::new();
        words.try_reserve_exact(n).map_err(|_| {
            self.ictx.err(libc::ENOMEM, "IOMMU_HWPT_GET_DIRTY_BITMAP").with_detail(format!("{detail}: a bitmap of {n} words does not fit in memory; read the range in parts"))
        })?;
        // The kernel only sets bits (iova_bitmap_set): start from zeros.
        words.resize(n, 0);
        let mut cmd = u::iommu_hwpt_get_dirty_bitmap {
            size: size_of::<u::iommu_hwpt_get_dirty_bitmap>(),
            hwpt_id: self.id,
            flags: if clear { 0 } else { u::IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR },
            __reserved: 0,
            iova,
            length,
            page_size,
            data: 0,
        };
        self.ictx.file.backend.hwpt_get_dirty_bitmap(self.ictx.file.fd, &mut cmd, &mut words).map_err(|e| {
            let why = match e.0 {
                libc::EOPNOTSUPP => ": the HWPT was allocated without IOMMU_HWPT_ALLOC_DIRTY_TRACKING",
                libc::EINVAL => ": iova and iova + length must be multiples of page_size and of the IOAS's IOVA alignment (IOMMU_IOAS_IOVA_RANGES)",
                libc::EOVERFLOW => ": the range wraps past 2^64",
                libc::ENOENT => ": no such HWPT in this iommufd",
                _ => "",
            };
            self.ictx.err(e.0, "IOMMU_HWPT_GET_DIRTY_BITMAP").with_detail(format!("{detail}{why}"))
        })?;
        Ok(DirtyBitmap { iova, length, page_size, words })
    }
}

impl Drop for Hwpt {
    fn drop(&mut self) {
        let _ = self.ictx.destroy(self.id);
    }
}

/// A VFIO device cdev, `/dev/vfio/devices/vfio<index>`: opened alone, it
/// answers nothing but BIND_IOMMUFD (vfio_device_fops_unl_ioctl refuses the
/// rest with EINVAL until bound). Once bound it is a [`Device`].
#[derive(Debug)]
pub struct CdevDevice {
    device: Device,
    index: u32,
    dev_id: Option<u32>,
}

impl CdevDevice {
    /// Opens `/dev/vfio/devices/vfio<index>` (the `vfio-dev/vfio<index>`
    /// entry of the device's sysfs folder names it).
    pub fn open(backend: Arc<dyn Backend>, index: u32) -> Result<Self> {
        let fd = backend
            .open_device_cdev(index)
            .map_err(|e| Error::new(e.0, "open", format!("{} /dev/vfio/devices/vfio{index}", backend.kind())))?;
        Ok(Self { device: Device::from_raw(backend, fd, format!("vfio{index}")), index, dev_id: None })
    }

    pub fn index(&self) -> u32 {
        self.index
    }

    /// The id iommufd gave the device at bind, for HWPT_ALLOC and GET_HW_INFO.
    pub fn dev_id(&self) -> Option<u32> {
        self.dev_id
    }

    fn object(&self) -> String {
        format!("{} device cdev vfio{}", self.device_backend_kind(), self.index)
    }

    fn device_backend_kind(&self) -> BackendKind {
        self.device.backend().kind()
    }

    /// VFIO_DEVICE_BIND_IOMMUFD: the device joins `iommufd` (and its group
    /// can no longer be opened the legacy way). Returns the device's id.
    pub fn bind(&mut self, iommufd: &Iommufd) -> Result<u32> {
        let mut cmd = u::vfio_device_bind_iommufd {
            argsz: size_of::<u::vfio_device_bind_iommufd>(),
            flags: 0,
            iommufd: iommufd.raw_fd(),
            out_devid: 0,
        };
        self.device
            .backend()
            .device_bind_iommufd(self.device.raw_fd(), &mut cmd)
            .map_err(|e| Error::new(e.0, "VFIO_DEVICE_BIND_IOMMUFD", self.object()).with_detail(iommufd.object()))?;
        self.dev_id = Some(cmd.out_devid);
        Ok(cmd.out_devid)
    }

    /// VFIO_DEVICE_ATTACH_IOMMUFD_PT to an IOAS or HWPT id. Attaching to an
    /// IOAS makes (or shares) an automatic HWPT, whose id is returned.
    pub fn attach(&self, pt_id: u32) -> Result<u32> {
        let mut cmd = u::vfio_device_attach_iommufd_pt { argsz: size_of::<u::vfio_device_attach_iommufd_pt>(), flags: 0, pt_id };
        self.device
            .backend()
            .device_attach_iommufd_pt(self.device.raw_fd(), &mut cmd)
            .map_err(|e| Error::new(e.0, "VFIO_DEVICE_ATTACH_IOMMUFD_PT", self.object()).with_detail(format!("pt {pt_id}")))?;
        Ok(cmd.pt_id)
    }

    /// VFIO_DEVICE_DETACH_IOMMUFD_PT: the device's DMA is blocked again.
    pub fn detach(&self) -> Result<()> {
        let cmd = u::vfio_device_detach_iommufd_pt { argsz: size_of::<u::vfio_device_detach_iommufd_pt>(), flags: 0 };
        self.device
            .backend()
            .device_detach_iommufd_pt(self.device.raw_fd(), &cmd)
            .map_err(|e| Error::new(e.0, "VFIO_DEVICE_DETACH_IOMMUFD_PT", self.object()))
    }

    /// The device's regions, IRQs, config space and reset, as for a device
    /// opened through its group.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// Device cdevs bound to one iommufd and attached to one IOAS: what a VMM
/// holds for a guest, as [`crate::Type1Container`] holds its groups. Fields
/// drop in declaration order, the order the kernel wants: the devices
/// (closing a cdev detaches and unbinds it), then the IOAS, then the iommufd.
#[derive(Debug)]
pub struct IommufdSpace {
    devices: Vec<CdevDevice>,
    hwpts: Vec<u32>,
    ioas: Ioas,
    ictx: Iommufd,
}

impl IommufdSpace {
    /// Opens /dev/iommu, allocates an IOAS, and binds and attaches each of
    /// `cdevs` (the N of /dev/vfio/devices/vfioN) in order. On failure
    /// everything opened so far is closed again.
    pub fn open(backend: Arc<dyn Backend>, cdevs: &[u32]) -> Result<Self> {
        let ictx = Iommufd::open(backend.clone())?;
        let ioas = ictx.alloc_ioas()?;
        let mut devices = Vec::with_capacity(cdevs.len());
        let mut hwpts = Vec::with_capacity(cdevs.len());
        for &n in cdevs {
            let mut d = CdevDevice::open(backend.clone(), n)?;
            d.bind(&ictx)?;
            hwpts.push(d.attach(ioas.id())?);
            devices.push(d);
        }
        Ok(Self { devices, hwpts, ioas, ictx })
    }

    /// The space a live hand-over delivered to this process
    /// ([`crate::live::IommufdTakenOver`]): its iommufd, its IOAS and the
    /// device cdevs, still bound and attached as the old process left
    /// them. Each device must be named `vfioN` as [`CdevDevice::open`]
    /// names it (EPROTO otherwise, before anything is taken). The devices'
    /// iommufd ids and HWPTs are the old process's knowledge, not sent in
    /// the description: `dev_id` is None and `hwpts` is empty here.
    pub fn adopt(ictx: Iommufd, ioas: Ioas, devices: Vec<Device>) -> Result<Self> {
        let indexes = devices.iter().map(|d| cdev_index(d.name())).collect::<Result<Vec<u32>>>()?;
        let devices = devices.into_iter().zip(indexes).map(|(device, index)| CdevDevice { device, index, dev_id: None }).collect();
        Ok(Self { devices, hwpts: Vec::new(), ioas, ictx })
    }

    pub fn iommufd(&self) -> &Iommufd {
        &self.ictx
    }

    pub fn ioas(&self) -> &Ioas {
        &self.ioas
    }

    pub fn devices(&self) -> &[CdevDevice] {
        &self.devices
    }

    /// The HWPT each device was attached to (automatic ones, shared when compatible).
    pub fn hwpts(&self) -> &[u32] {
        &self.hwpts
    }

    /// The device of cdev `index`.
    pub fn device(&self, index: u32) -> Option<&CdevDevice> {
        self.devices.iter().find(|d| d.index() == index)
    }

    pub fn object(&self) -> String {
        let list: Vec<String> = self.devices.iter().map(|d| format!("vfio{}", d.index())).collect();
        format!("{} ({})", self.ioas.object(), list.join(", "))
    }
}

/// N of a device named `vfioN` (/dev/vfio/devices/vfioN).
pub fn cdev_index(name: &str) -> Result<u32> {
    name.strip_prefix("vfio").and_then(|n| n.parse().ok()).ok_or_else(|| {
        Error::new(libc::EPROTO, "live update", format!("device {name}"))
            .with_detail("an iommufd hand-over names its devices vfioN (their cdevs); this one is not a cdev")
    })
}
