//! `Device`: one VFIO device file, owning its descriptor, and
//! `MappedRegion`: an mmap of part of one of its regions.

use std::os::fd::RawFd as OsFd;
use std::sync::{Arc, Mutex};

use crate::backend::{buf_bytes, buf_bytes_mut, read_pod, write_pod, Backend, Mmap, RawFd};
use crate::container::walk_caps;
use crate::error::{Error, Result};
use crate::uapi;

/// `VFIO_DEVICE_GET_INFO`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

impl DeviceInfo {
    pub fn is_pci(&self) -> bool {
        self.flags & uapi::VFIO_DEVICE_FLAGS_PCI != 0
    }
    pub fn supports_reset(&self) -> bool {
        self.flags & uapi::VFIO_DEVICE_FLAGS_RESET != 0
    }
}

/// One mmap-able part of a region (`struct vfio_region_sparse_mmap_area`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseArea {
    pub offset: u64,
    pub size: u64,
}

/// `VFIO_DEVICE_GET_REGION_INFO` with its capabilities decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    pub index: u32,
    pub flags: u32,
    pub size: u64,
    /// Where the region starts in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
    /// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`: only these parts may be mmap'd.
    pub sparse_areas: Option<Vec<SparseArea>>,
    /// `VFIO_REGION_INFO_CAP_TYPE`: (type, subtype) of a device-specific region.
    pub region_type: Option<(u32, u32)>,
    /// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`.
    pub msix_mappable: bool,
}

impl RegionInfo {
    pub fn readable(&self) -> bool {
        self.flags & uapi::VFIO_REGION_INFO_FLAG_READ != 0
    }
    pub fn writable(&self) -> bool {
        self.flags & uapi::VFIO_REGION_INFO_FLAG_WRITE != 0
    }
    pub fn mmappable(&self) -> bool {
        self.flags & uapi::VFIO_REGION_INFO_FLAG_MMAP != 0
    }
}

/// `VFIO_DEVICE_GET_IRQ_INFO`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfo {
    pub index: u32,
    pub flags: u32,
    pub count: u32,
}

/// A device a PCI hot reset of this one would also reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependentDevice {
    pub group_id: u32,
    pub segment: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl DependentDevice {
    /// Its PCI address, "0000:01:02.0".
    pub fn address(&self) -> String {
        format!("{:04x}:{:02x}:{:02x}.{:x}", self.segment, self.bus, self.slot, self.function)
    }
}

/// What `VFIO_DEVICE_SET_IRQS` should do (`VFIO_IRQ_SET_ACTION_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqAction {
    Mask,
    Unmask,
    Trigger,
}

impl IrqAction {
    fn flag(self) -> u32 {
        match self {
            IrqAction::Mask => uapi::VFIO_IRQ_SET_ACTION_MASK,
            IrqAction::Unmask => uapi::VFIO_IRQ_SET_ACTION_UNMASK,
            IrqAction::Trigger => uapi::VFIO_IRQ_SET_ACTION_TRIGGER,
        }
    }
}

/// The data part of `VFIO_DEVICE_SET_IRQS` (`VFIO_IRQ_SET_DATA_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrqData<'a> {
    /// `DATA_NONE` with `count` vectors: act on them (e.g. fire a trigger);
    /// with count 0 and `Trigger`, disable the index.
    None { count: u32 },
    Bool(&'a [bool]),
    /// One eventfd per vector; -1 unassigns that vector.
    Eventfds(&'a [OsFd]),
}

/// An open VFIO device. Dropping it closes the descriptor.
#[derive(Debug)]
pub struct Device {
    backend: Arc<dyn Backend>,
    fd: RawFd,
    name: String,
    /// Region infos already read: a region's layout does not change while
    /// the device is open, and config access would otherwise cost an extra
    /// ioctl every time.
    regions: Mutex<Vec<Option<RegionInfo>>>,
}

impl Device {
    /// Adopts a device descriptor (opened by `Group::device`, or received
    /// from another process in a live hand-over). Dropping it closes it.
    pub fn from_raw(backend: Arc<dyn Backend>, fd: RawFd, name: String) -> Self {
        Self { backend, fd, name, regions: Mutex::new(Vec::new()) }
    }

    /// [`Device::region_info`], read once and then remembered.
    pub fn region(&self, index: u32) -> Result<RegionInfo> {
        let i = index as usize;
        if let Some(Some(r)) = self.regions.lock().unwrap_or_else(|p| p.into_inner()).get(i) {
            return Ok(r.clone());
        }
        let r = self.region_info(index)?;
        let mut cache = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() <= i {
            cache.resize(i + 1, None);
        }
        cache[i] = Some(r.clone());
        Ok(r)
    }

    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    fn err(&self, errno: i32, ioctl: &'static str) -> Error {
        Error::new(errno, ioctl, format!("{} device {}", self.backend.kind(), self.name))
    }

    /// `VFIO_DEVICE_GET_INFO`.
    pub fn info(&self) -> Result<DeviceInfo> {
        let minsz = std::mem::size_of::<uapi::vfio_device_info>();
        let mut buf = vec![0u64; minsz.div_ceil(8)];
        let head = uapi::vfio_device_info { argsz: minsz as u32, ..Default::default() };
        write_pod(buf_bytes_mut(&mut buf), 0, &head, minsz);
        self.backend.device_get_info(self.fd, &mut buf).map_err(|e| self.err(e.0, "VFIO_DEVICE_GET_INFO"))?;
        let info: uapi::vfio_device_info = read_pod(buf_bytes(&buf), 0).unwrap_or_default();
        Ok(DeviceInfo { flags: info.flags, num_regions: info.num_regions, num_irqs: info.num_irqs })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index`, growing the buffer
    /// to read the whole capability chain.
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        let minsz = std::mem::size_of::<uapi::vfio_region_info>();
        let mut words = minsz.div_ceil(8);
        for _ in 0..4 {
            let mut buf = vec![0u64; words];
            let argsz = (words * 8) as u32;
            let head = uapi::vfio_region_info { argsz, index, ..Default::default() };
            write_pod(buf_bytes_mut(&mut buf), 0, &head, minsz);
            self.backend
                .device_get_region_info(self.fd, &mut buf)
                .map_err(|e| self.err(e.0, "VFIO_DEVICE_GET_REGION_INFO").with_detail(format!("region {index}")))?;
            let bytes = buf_bytes(&buf);
            let info: uapi::vfio_region_info = read_pod(bytes, 0).unwrap_or_default();
            if info.argsz > argsz {
                words = (info.argsz as usize).div_ceil(8);
                continue;
            }
            return Ok(parse_region_info(&info, bytes));
        }
        Err(self.err(libc::EOVERFLOW, "VFIO_DEVICE_GET_REGION_INFO").with_detail("argsz kept growing"))
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO` for IRQ `index`.
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo> {
        let mut info = uapi::vfio_irq_info {
            argsz: std::mem::size_of::<uapi::vfio_irq_info>() as u32,
            index,
            ..Default::default()
        };
        self.backend
            .device_get_irq_info(self.fd, &mut info)
            .map_err(|e| self.err(e.0, "VFIO_DEVICE_GET_IRQ_INFO").with_detail(format!("irq index {index}")))?;
        Ok(IrqInfo { index: info.index, flags: info.flags, count: info.count })
    }

    /// `VFIO_DEVICE_SET_IRQS` on vectors `start..` of IRQ `index`.
    pub fn set_irqs(&self, index: u32, start: u32, action: IrqAction, data: IrqData<'_>) -> Result<()> {
        let head_len = std::mem::size_of::<uapi::vfio_irq_set>();
        let (flag, count, payload): (u32, u32, Vec<u8>) = match data {
            IrqData::None { count } => (uapi::VFIO_IRQ_SET_DATA_NONE, count, Vec::new()),
            IrqData::Bool(b) => (uapi::VFIO_IRQ_SET_DATA_BOOL, b.len() as u32, b.iter().map(|&x| x as u8).collect()),
            IrqData::Eventfds(fds) => (
                uapi::VFIO_IRQ_SET_DATA_EVENTFD,
                fds.len() as u32,
                fds.iter().flat_map(|fd| fd.to_ne_bytes()).collect(),
            ),
        };
        let argsz = head_len + payload.len();
        let mut buf = vec![0u64; argsz.div_ceil(8)];
        let head = uapi::vfio_irq_set { argsz: argsz as u32, flags: flag | action.flag(), index, start, count, data: [] };
        let bytes = buf_bytes_mut(&mut buf);
        write_pod(bytes, 0, &head, head_len);
        bytes[head_len..argsz].copy_from_slice(&payload);
        self.backend.device_set_irqs(self.fd, &buf).map_err(|e| {
            self.err(e.0, "VFIO_DEVICE_SET_IRQS")
                .with_detail(format!("irq index {index} start {start} count {count} flags {:#x}", head.flags))
        })
    }

    /// `VFIO_DEVICE_RESET`.
    pub fn reset(&self) -> Result<()> {
        self.backend.device_reset(self.fd).map_err(|e| self.err(e.0, "VFIO_DEVICE_RESET"))
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: every device a bus or slot
    /// reset of this one affects (ENODEV when there is neither), growing
    /// the buffer when the kernel answers ENOSPC with the count it needs.
    pub fn pci_hot_reset_info(&self) -> Result<Vec<DependentDevice>> {
        let head = std::mem::size_of::<uapi::vfio_pci_hot_reset_info>();
        let item = std::mem::size_of::<uapi::vfio_pci_dependent_device>();
        let mut count = 0usize;
        for _ in 0..4 {
            let argsz = head + count * item;
            let mut buf = vec![0u64; argsz.div_ceil(8)];
            let hdr = uapi::vfio_pci_hot_reset_info { argsz: argsz as u32, ..Default::default() };
            write_pod(buf_bytes_mut(&mut buf), 0, &hdr, head);
            let r = self.backend.device_get_pci_hot_reset_info(self.fd, &mut buf);
            let bytes = buf_bytes(&buf);
            let out: uapi::vfio_pci_hot_reset_info = read_pod(bytes, 0).unwrap_or_default();
            match r {
                Err(e) if e.0 == libc::ENOSPC && (out.count as usize) > count => count = out.count as usize,
                Err(e) => return Err(self.err(e.0, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO")),
                Ok(()) => {
                    return Ok((0..out.count as usize)
                        .filter_map(|i| read_pod::<uapi::vfio_pci_dependent_device>(bytes, head + i * item))
                        .map(|d| DependentDevice {
                            group_id: d.group_id,
                            segment: d.segment,
                            bus: d.bus,
                            slot: d.devfn >> 3,
                            function: d.devfn & 7,
                        })
                        .collect())
                }
            }
        }
        Err(self.err(libc::ENOSPC, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO").with_detail("the device count kept growing"))
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET`: resets every device on this one's bus or
    /// slot. `groups` must together hold every affected device (see
    /// [`Device::pci_hot_reset_info`]), all bound to vfio-pci.
    pub fn pci_hot_reset(&self, groups: &[&crate::Group]) -> Result<()> {
        let head = std::mem::offset_of!(uapi::vfio_pci_hot_reset, group_fds);
        let argsz = head + 4 * groups.len();
        let mut buf = vec![0u64; argsz.div_ceil(8)];
        let hdr = uapi::vfio_pci_hot_reset { argsz: argsz as u32, flags: 0, count: groups.len() as u32, group_fds: [] };
        let bytes = buf_bytes_mut(&mut buf);
        write_pod(bytes, 0, &hdr, head);
        for (i, g) in groups.iter().enumerate() {
            bytes[head + 4 * i..head + 4 * i + 4].copy_from_slice(&g.raw_fd().to_ne_bytes());
        }
        self.backend.device_pci_hot_reset(self.fd, &buf).map_err(|e| {
            let ids: Vec<String> = groups.iter().map(|g| g.id().to_string()).collect();
            self.err(e.0, "VFIO_DEVICE_PCI_HOT_RESET").with_detail(format!("groups [{}]", ids.join(", ")))
        })
    }

    /// `pread` at `offset` inside region `region` (e.g.
    /// `VFIO_PCI_CONFIG_REGION_INDEX` for config space). Reads exactly `buf.len()`.
    pub fn read_region(&self, region: &RegionInfo, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = self
            .backend
            .device_read(self.fd, region.offset + offset, buf)
            .map_err(|e| self.err(e.0, "pread").with_detail(format!("region {} offset {offset:#x}", region.index)))?;
        if n != buf.len() {
            return Err(self.err(libc::EIO, "pread").with_detail(format!("short read of {n} bytes")));
        }
        Ok(())
    }

    /// `pwrite` at `offset` inside region `region`. Writes exactly `buf.len()`.
    pub fn write_region(&self, region: &RegionInfo, offset: u64, buf: &[u8]) -> Result<()> {
        let n = self
            .backend
            .device_write(self.fd, region.offset + offset, buf)
            .map_err(|e| self.err(e.0, "pwrite").with_detail(format!("region {} offset {offset:#x}", region.index)))?;
        if n != buf.len() {
            return Err(self.err(libc::EIO, "pwrite").with_detail(format!("short write of {n} bytes")));
        }
        Ok(())
    }

    /// Reads a little-endian config-space register of `N` bytes (PCI config
    /// space is little-endian on every architecture).
    pub fn read_config<const N: usize>(&self, offset: u64) -> Result<[u8; N]> {
        let region = self.region(uapi::VFIO_PCI_CONFIG_REGION_INDEX)?;
        let mut b = [0u8; N];
        self.read_region(&region, offset, &mut b)?;
        Ok(b)
    }

    pub fn write_config(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        let region = self.region(uapi::VFIO_PCI_CONFIG_REGION_INDEX)?;
        self.write_region(&region, offset, bytes)
    }

    /// Maps `len` bytes at `offset` of region `region` (which must carry
    /// `VFIO_REGION_INFO_FLAG_MMAP`; offset and length page-aligned).
    pub fn map_region(&self, region: &RegionInfo, offset: u64, len: usize) -> Result<MappedRegion> {
        let map = self.backend.mmap(self.fd, region.offset + offset, len).map_err(|e| {
            self.err(e.0, "mmap").with_detail(format!("region {} offset {offset:#x} len {len:#x}", region.index))
        })?;
        Ok(MappedRegion { backend: self.backend.clone(), map, object: format!("device {} region {}", self.name, region.index) })
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.backend.close(self.fd);
    }
}

fn parse_region_info(info: &uapi::vfio_region_info, bytes: &[u8]) -> RegionInfo {
    let mut out = RegionInfo {
        index: info.index,
        flags: info.flags,
        size: info.size,
        offset: info.offset,
        sparse_areas: None,
        region_type: None,
        msix_mappable: false,
    };
    if info.flags & uapi::VFIO_REGION_INFO_FLAG_CAPS == 0 || info.cap_offset == 0 {
        return out;
    }
    walk_caps(bytes, info.cap_offset, |id, _v, off| match id {
        uapi::VFIO_REGION_INFO_CAP_SPARSE_MMAP => {
            if let Some(cap) = read_pod::<uapi::vfio_region_info_cap_sparse_mmap>(bytes, off) {
                let base = off + std::mem::size_of::<uapi::vfio_region_info_cap_sparse_mmap>();
                let areas = (0..cap.nr_areas as usize)
                    .map_while(|i| read_pod::<uapi::vfio_region_sparse_mmap_area>(bytes, base + i * 16))
                    .map(|a| SparseArea { offset: a.offset, size: a.size })
                    .collect();
                out.sparse_areas = Some(areas);
            }
        }
        uapi::VFIO_REGION_INFO_CAP_TYPE => {
            if let Some(cap) = read_pod::<uapi::vfio_region_info_cap_type>(bytes, off) {
                out.region_type = Some((cap.type_, cap.subtype));
            }
        }
        uapi::VFIO_REGION_INFO_CAP_MSIX_MAPPABLE => out.msix_mappable = true,
        _ => {}
    });
    out
}

/// An mmap of part of a device region. Dropping it unmaps it.
///
/// Accessors take offsets relative to the start of the mapping and check
/// them against its length; accesses are single volatile loads/stores of
/// the given width, as MMIO needs.
#[derive(Debug)]
pub struct MappedRegion {
    backend: Arc<dyn Backend>,
    map: Mmap,
    object: String,
}

impl MappedRegion {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn check(&self, offset: u64, width: usize) -> Result<usize> {
        let off = usize::try_from(offset).ok();
        match off {
            Some(o) if o % width == 0 && o.checked_add(width).is_some_and(|e| e <= self.map.len()) => Ok(o),
            _ => Err(Error::new(libc::EINVAL, "mmio", self.object.clone())
                .with_detail(format!("{width}-byte access at {offset:#x} outside or misaligned in {:#x} bytes", self.map.len()))),
        }
    }

    fn read<const N: usize>(&self, offset: u64) -> Result<[u8; N]> {
        let o = self.check(offset, N)?;
        let mut b = [0u8; N];
        match &self.map {
            Mmap::Host { ptr, .. } => {
                // SAFETY: `o + N <= len` was checked and `o` is N-aligned, so
                // the access lies inside the live mapping; a volatile read
                // of the exact width is what MMIO requires.
                unsafe {
                    let p = ptr.as_ptr().add(o);
                    match N {
                        1 => b[0] = std::ptr::read_volatile(p),
                        2 => b.copy_from_slice(&std::ptr::read_volatile(p.cast::<u16>()).to_ne_bytes()),
                        4 => b.copy_from_slice(&std::ptr::read_volatile(p.cast::<u32>()).to_ne_bytes()),
                        _ => b.copy_from_slice(&std::ptr::read_volatile(p.cast::<u64>()).to_ne_bytes()),
                    }
                }
            }
            Mmap::Emulated { .. } => self
                .backend
                .mmio_read(&self.map, o as u64, &mut b)
                .map_err(|e| Error::new(e.0, "mmio", self.object.clone()))?,
        }
        Ok(b)
    }

    fn write<const N: usize>(&self, offset: u64, b: [u8; N]) -> Result<()> {
        let o = self.check(offset, N)?;
        match &self.map {
            Mmap::Host { ptr, .. } => {
                // SAFETY: as in `read`: bounds and alignment checked above,
                // one volatile store of the exact width into the mapping.
                unsafe {
                    let p = ptr.as_ptr().add(o);
                    match N {
                        1 => std::ptr::write_volatile(p, b[0]),
                        2 => std::ptr::write_volatile(p.cast::<u16>(), u16::from_ne_bytes([b[0], b[1]])),
                        4 => std::ptr::write_volatile(p.cast::<u32>(), u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
                        _ => std::ptr::write_volatile(
                            p.cast::<u64>(),
                            u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
                        ),
                    }
                }
                Ok(())
            }
            Mmap::Emulated { .. } => self
                .backend
                .mmio_write(&self.map, o as u64, &b)
                .map_err(|e| Error::new(e.0, "mmio", self.object.clone())),
        }
    }

    /// Device registers are little-endian (PCI); these convert.
    pub fn read_u8(&self, offset: u64) -> Result<u8> {
        Ok(self.read::<1>(offset)?[0])
    }
    pub fn read_u16(&self, offset: u64) -> Result<u16> {
        Ok(u16::from_le_bytes(self.read::<2>(offset)?))
    }
    pub fn read_u32(&self, offset: u64) -> Result<u32> {
        Ok(u32::from_le_bytes(self.read::<4>(offset)?))
    }
    pub fn read_u64(&self, offset: u64) -> Result<u64> {
        Ok(u64::from_le_bytes(self.read::<8>(offset)?))
    }
    pub fn write_u8(&self, offset: u64, v: u8) -> Result<()> {
        self.write::<1>(offset, [v])
    }
    pub fn write_u16(&self, offset: u64, v: u16) -> Result<()> {
        self.write::<2>(offset, v.to_le_bytes())
    }
    pub fn write_u32(&self, offset: u64, v: u32) -> Result<()> {
        self.write::<4>(offset, v.to_le_bytes())
    }
    pub fn write_u64(&self, offset: u64, v: u64) -> Result<()> {
        self.write::<8>(offset, v.to_le_bytes())
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        self.backend.munmap(&self.map);
    }
}
