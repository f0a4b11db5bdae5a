//! An in-process model of the kernel's VFIO: containers, groups, devices and
//! the type1 IOMMU. Every rule cites the kernel function it mirrors
//! (drivers/vfio/{container,group}.c, vfio_iommu_type1.c,
//! pci/vfio_pci_core.c, pci/vfio_pci_intrs.c, pci/vfio_pci_rdwr.c).
//!
//! Known differences from the kernel, by design:
//! - map does not pin: a host address that is not mapped in this process is
//!   accepted (the kernel answers EFAULT); a device model that DMAs to it
//!   touches nothing (process_vm_readv/writev fail safely);
//! - RLIMIT_MEMLOCK is not accounted (the kernel answers ENOMEM past it);
//! - BAR mmaps are emulated ([`Mmap::Emulated`]): every access runs the
//!   device model, as MMIO through the kernel's mapping would.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use super::mock_config::{IovaSpan, KernelVersion, MockConfig, VFIO_PCI};
use super::mock_devices::{self, pci, Bus, DeviceModel};
pub use super::mock_type1::{Type1Driver, Type1Iommu};
use super::{buf_bytes, buf_bytes_mut, argsz_of, read_pod, write_pod, Backend, BackendKind, Errno, Mmap, RawFd, SysResult};
use crate::uapi::*;

pub(super) fn einval<T>() -> SysResult<T> {
    Err(Errno(libc::EINVAL))
}

// ---------------------------------------------------------------------------
// IOMMU driver seam (struct vfio_iommu_driver_ops)

/// A registered IOMMU driver (the kernel's `vfio_iommu_drivers_list` entry).
pub trait IommuDriverOps: Send + Sync {
    fn name(&self) -> &'static str;
    /// `ops->ioctl(NULL, VFIO_CHECK_EXTENSION, arg)`: asked before SET_IOMMU.
    fn check_extension(&self, config: &MockConfig, extension: u32) -> i32;
    /// `ops->open(arg)`: a fresh IOMMU for a container.
    fn open(&self, config: &MockConfig, extension: u32) -> SysResult<Box<dyn IommuOps>>;
}

/// A group as an IOMMU driver's attach_group sees it.
#[derive(Debug, Clone)]
pub struct AttachGroup {
    pub id: u32,
    pub reserved: Vec<IovaSpan>,
}

/// One container's IOMMU (`container->iommu_data` with its driver's ops).
/// Ioctls the driver does not implement answer ENOTTY, as
/// `vfio_iommu_type1_ioctl` does for unknown commands.
pub trait IommuOps: Send + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// `ops->ioctl(data, VFIO_CHECK_EXTENSION, arg)` once set.
    fn check_extension(&self, extension: u32) -> i32;
    /// `ops->attach_group`.
    fn attach_group(&mut self, group: &AttachGroup) -> SysResult<()>;
    /// `ops->detach_group`.
    fn detach_group(&mut self, group: u32);
    /// `VFIO_IOMMU_GET_INFO` (same number as SPAPR_TCE_GET_INFO).
    fn get_info(&mut self, _buf: &mut [u64]) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
    fn map_dma(&mut self, _map: &vfio_iommu_type1_dma_map) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
    fn unmap_dma(&mut self, _unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
    /// `VFIO_IOMMU_DIRTY_PAGES`.
    fn dirty_pages(&mut self, _buf: &[u64]) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
    /// What the IOMMU hardware does for a device access: the host address
    /// `iova` translates to and how many bytes after it stay in the same
    /// mapping, if the mapping allows `write` (or read).
    fn translate(&self, iova: u64, write: bool) -> Option<(u64, u64)>;
}

/// A capability chain under construction (vfio_info_cap_add / vfio_info_cap_shift).
#[derive(Default)]
pub(super) struct CapChain {
    pub(super) bytes: Vec<u8>,
    last: Option<usize>,
    /// 6.1's vfio_info_cap_add packs entries back to back (the lab's 6.1
    /// kernel reports a type1 info argsz of 116 = 24 + 32 + 12 + 48); later
    /// kernels align each entry to 8 bytes.
    pub(super) packed: bool,
}

impl CapChain {
    /// An empty chain; `packed` lays entries back to back as 6.1 does.
    pub(super) fn new(packed: bool) -> Self {
        Self { packed, ..Default::default() }
    }
    pub(super) fn add<T: Copy>(&mut self, id: u16, version: u16, head: &T, tail: &[u8]) {
        let off = self.bytes.len();
        let raw = std::mem::size_of::<T>() + tail.len();
        let size = if self.packed { raw } else { raw.div_ceil(8) * 8 };
        self.bytes.resize(off + size, 0);
        write_pod(&mut self.bytes, off, head, std::mem::size_of::<T>());
        self.bytes[off + std::mem::size_of::<T>()..off + std::mem::size_of::<T>() + tail.len()].copy_from_slice(tail);
        let h = vfio_info_cap_header { id, version, next: 0 };
        write_pod(&mut self.bytes, off, &h, 8);
        if let Some(prev) = self.last {
            let mut ph: vfio_info_cap_header = read_pod(&self.bytes, prev).unwrap_or_default();
            ph.next = off as u32;
            write_pod(&mut self.bytes, prev, &ph, 8);
        }
        self.last = Some(off);
    }

    /// Copies the chain to `dst` at `at`, with every `next` moved by `at`.
    pub(super) fn shift_into(&self, dst: &mut [u8], at: usize) {
        dst[at..at + self.bytes.len()].copy_from_slice(&self.bytes);
        let mut off = 0usize;
        loop {
            let mut h: vfio_info_cap_header = read_pod(dst, at + off).unwrap_or_default();
            if h.next == 0 {
                break;
            }
            let next = h.next as usize;
            h.next += at as u32;
            write_pod(dst, at + off, &h, 8);
            off = next;
        }
    }
}

// ---------------------------------------------------------------------------
// The host: descriptors, containers, groups, devices

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FdObj {
    Container(usize),
    Group(u32),
    Device(usize),
}

#[derive(Debug, Default)]
struct ContainerState {
    /// The /dev/vfio/vfio file is still open.
    file_open: bool,
    /// Attached groups in attach order (container->group_list).
    groups: Vec<u32>,
    /// The chosen IOMMU driver and its data (container->iommu_driver/iommu_data).
    iommu: Option<Box<dyn IommuOps>>,
}

#[derive(Debug)]
struct GroupState {
    devices: Vec<usize>,
    reserved: Vec<IovaSpan>,
    /// group->opened_file (a group can be open once).
    file_open: bool,
    container: Option<usize>,
    open_devices: usize,
}

#[derive(Debug, Default)]
struct IrqIndexState {
    /// One (dup'ed) eventfd per vector; the kernel holds an eventfd_ctx reference.
    triggers: Vec<Option<std::os::fd::OwnedFd>>,
    masked: bool,
}

struct DeviceState {
    address: String,
    driver: Option<String>,
    group: u32,
    model: Box<dyn DeviceModel>,
    open_count: usize,
    /// vdev->irq_type: which of INTx/MSI/MSI-X is enabled, if any.
    irq_type: Option<u32>,
    irqs: [IrqIndexState; VFIO_PCI_NUM_IRQS as usize],
}

impl fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceState").field("address", &self.address).field("driver", &self.driver).finish()
    }
}

/// (segment, bus, devfn) of a PCI address "SSSS:BB:DD.F".
fn pci_address(a: &str) -> Option<(u16, u8, u8)> {
    let (seg, rest) = a.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let dev = u8::from_str_radix(dev, 16).ok()?;
    let func = u8::from_str_radix(func, 16).ok()?;
    Some((u16::from_str_radix(seg, 16).ok()?, u8::from_str_radix(bus, 16).ok()?, (dev << 3) | func))
}

/// Drivers that leave a group viable: vfio-pci and pci-stub do no DMA of
/// their own, and pcieport sets driver_managed_dma (so
/// iommu_device_use_default_domain never claims the group).
fn driver_keeps_group_viable(driver: Option<&str>) -> bool {
    matches!(driver, None | Some(VFIO_PCI) | Some("pci-stub") | Some("pcieport"))
}

struct Host {
    config: MockConfig,
    drivers: Vec<Arc<dyn IommuDriverOps>>,
    fds: HashMap<RawFd, FdObj>,
    next_fd: RawFd,
    containers: Vec<ContainerState>,
    groups: BTreeMap<u32, GroupState>,
    devices: Vec<DeviceState>,
    /// Count of ioctls served, for benchmarks that compare call counts.
    ioctls: u64,
}

/// The mock kernel. One `MockBackend` is one simulated host; share it
/// (`Arc`) between the containers, groups and devices of a test.
pub struct MockBackend {
    host: Mutex<Host>,
}

impl fmt::Debug for MockBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MockBackend")
    }
}

impl Default for MockBackend {
    fn default() -> Self {
        Self::new(MockConfig::default())
    }
}

impl MockBackend {
    pub fn new(config: MockConfig) -> Self {
        let mut drivers: Vec<Arc<dyn IommuDriverOps>> = Vec::new();
        if config.type1 {
            drivers.push(Arc::new(Type1Driver));
        }
        drivers.extend(config.iommu_drivers.iter().cloned());
        let mut groups = BTreeMap::new();
        let mut devices = Vec::new();
        for g in &config.groups {
            let mut ids = Vec::new();
            for d in &g.devices {
                ids.push(devices.len());
                devices.push(DeviceState {
                    address: d.address.clone(),
                    driver: d.driver.clone(),
                    group: g.id,
                    model: mock_devices::build(&d.model),
                    open_count: 0,
                    irq_type: None,
                    irqs: Default::default(),
                });
            }
            groups.insert(
                g.id,
                GroupState { devices: ids, reserved: g.reserved.clone(), file_open: false, container: None, open_devices: 0 },
            );
        }
        Self {
            host: Mutex::new(Host {
                config,
                drivers,
                fds: HashMap::new(),
                next_fd: 1000,
                containers: Vec::new(),
                groups,
                devices,
                ioctls: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Host> {
        // A panic while holding the lock leaves the model as it was at the
        // panic; tests that continue may still inspect it.
        self.host.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many ioctls this host has served (for coalescing reports).
    pub fn ioctl_count(&self) -> u64 {
        self.lock().ioctls
    }

    /// Runs `f` on the IOMMU of container `fd`: for IOMMU extensions (sPAPR)
    /// that keep their state in [`IommuOps`]. EBADF for an unknown
    /// descriptor, EINVAL when no IOMMU is set (vfio_fops_unl_ioctl).
    pub fn with_iommu<R>(&self, fd: RawFd, f: impl FnOnce(&mut dyn IommuOps) -> R) -> SysResult<R> {
        let mut h = self.lock();
        h.ioctls += 1;
        let c = h.container(fd)?;
        match h.containers[c].iommu.as_deref_mut() {
            Some(iommu) => Ok(f(iommu)),
            None => einval(),
        }
    }

    /// Sysfs-side change: binds device `address` to `driver` (`None`
    /// unbinds), as a test would with driver_override + drivers_probe.
    ///
    /// A device whose fd is open cannot change driver (EBUSY); a host driver
    /// that does DMA cannot bind into a group user space owns:
    /// iommu_device_use_default_domain fails the probe with EBUSY.
    pub fn bind(&self, address: &str, driver: Option<&str>) -> SysResult<()> {
        let mut h = self.lock();
        let h = &mut *h;
        let i = h.devices.iter().position(|d| d.address == address).ok_or(Errno(libc::ENODEV))?;
        let d = &h.devices[i];
        if d.open_count > 0 {
            return Err(Errno(libc::EBUSY));
        }
        if h.groups[&d.group].container.is_some() && !driver_keeps_group_viable(driver) {
            return Err(Errno(libc::EBUSY));
        }
        h.devices[i].driver = driver.map(str::to_string);
        Ok(())
    }

    /// Edu range errors (transfers QEMU would stop the VM for), per device.
    pub fn edu_range_errors(&self, address: &str) -> Option<u64> {
        let h = self.lock();
        let d = h.devices.iter().find(|d| d.address == address)?;
        d.model.as_any().downcast_ref::<mock_devices::Edu>().map(|e| e.range_errors)
    }
}

impl Host {
    fn new_fd(&mut self, obj: FdObj) -> RawFd {
        let fd = self.next_fd;
        self.next_fd += 1;
        self.fds.insert(fd, obj);
        fd
    }

    fn container(&self, fd: RawFd) -> SysResult<usize> {
        match self.fds.get(&fd) {
            Some(FdObj::Container(c)) => Ok(*c),
            Some(_) => Err(Errno(libc::ENOTTY)),
            None => Err(Errno(libc::EBADF)),
        }
    }

    fn group(&self, fd: RawFd) -> SysResult<u32> {
        match self.fds.get(&fd) {
            Some(FdObj::Group(g)) => Ok(*g),
            Some(_) => Err(Errno(libc::ENOTTY)),
            None => Err(Errno(libc::EBADF)),
        }
    }

    fn device(&self, fd: RawFd) -> SysResult<usize> {
        match self.fds.get(&fd) {
            Some(FdObj::Device(d)) => Ok(*d),
            Some(_) => Err(Errno(libc::ENOTTY)),
            None => Err(Errno(libc::EBADF)),
        }
    }

    fn viable(&self, gid: u32) -> bool {
        self.groups[&gid].devices.iter().all(|&d| driver_keeps_group_viable(self.devices[d].driver.as_deref()))
    }

    // vfio_group_detach_container: the IOMMU forgets the group; the last
    // group out releases the IOMMU and every mapping with it.
    fn detach(&mut self, gid: u32) {
        let Some(c) = self.groups.get_mut(&gid).and_then(|g| g.container.take()) else { return };
        let cs = &mut self.containers[c];
        cs.groups.retain(|&g| g != gid);
        if let Some(iommu) = cs.iommu.as_mut() {
            iommu.detach_group(gid);
        }
        if cs.groups.is_empty() {
            cs.iommu = None;
        }
    }

    // vfio_group_fops_release: runs once the group file and every device
    // fd (which hold a reference on it) are closed.
    fn maybe_release_group(&mut self, gid: u32) {
        let g = &self.groups[&gid];
        if !g.file_open && g.open_devices == 0 {
            self.detach(gid);
        }
    }

    /// The device's DMA view and interrupt line, for a model access.
    fn bus_for(&mut self, dev: usize) -> (Option<usize>, bool) {
        let gid = self.devices[dev].group;
        let c = self.groups[&gid].container;
        let master = self.devices[dev].model.config().command() & pci::COMMAND_MASTER != 0;
        (c, master)
    }
}

/// A device's view of the bus during one access.
struct HostBus<'a> {
    iommu: Option<&'a dyn IommuOps>,
    master: bool,
    irqs: &'a mut [IrqIndexState; VFIO_PCI_NUM_IRQS as usize],
    irq_type: Option<u32>,
    intx_disabled: bool,
}

impl HostBus<'_> {
    /// Walks `len` bytes at `iova` page by page (as QEMU's address space
    /// dispatch does), calling `f(host_addr, offset_in_buf, len)` for each
    /// piece the IOMMU allows; pieces it refuses are skipped.
    fn walk(&self, iova: u64, len: usize, write: bool, mut f: impl FnMut(u64, usize, usize)) {
        if !self.master {
            return; // bus mastering off: the device's DMA goes nowhere
        }
        let Some(iommu) = self.iommu else { return };
        let mut done = 0usize;
        while done < len {
            let a = iova.wrapping_add(done as u64);
            let page_left = (4096 - (a & 0xfff)) as usize;
            let mut chunk = page_left.min(len - done);
            if let Some((host, avail)) = iommu.translate(a, write) {
                chunk = chunk.min(avail as usize);
                f(host, done, chunk);
            }
            done += chunk;
        }
    }
}

/// process_vm_writev on ourselves: copies into this process's memory at
/// `addr`, failing (EFAULT) instead of crashing when it is not mapped.
pub(super) fn write_self(addr: u64, data: &[u8]) -> bool {
    let local = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: `local` describes a live slice for its exact length; `remote`
    // is only dereferenced by the kernel, which checks it and fails with
    // EFAULT for unmapped addresses.
    let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == data.len() as isize
}

/// process_vm_readv on ourselves; a failed read leaves `out` as it was.
pub(super) fn read_self(addr: u64, out: &mut [u8]) -> bool {
    let local = libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: out.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: out.len() };
    // SAFETY: as write_self; `local` is a live, writable slice of its length.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == out.len() as isize
}

fn signal_eventfd(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we hold a dup of.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

impl Bus for HostBus<'_> {
    fn dma_read(&mut self, iova: u64, buf: &mut [u8]) {
        buf.fill(0);
        let len = buf.len();
        let mut pieces = Vec::new();
        self.walk(iova, len, false, |host, off, n| pieces.push((host, off, n)));
        for (host, off, n) in pieces {
            read_self(host, &mut buf[off..off + n]);
        }
    }

    fn dma_write(&mut self, iova: u64, buf: &[u8]) {
        self.walk(iova, buf.len(), true, |host, off, n| {
            write_self(host, &buf[off..off + n]);
        });
    }

    // vfio_msihandler / vfio_intx_handler: MSI signals its trigger; INTx
    // signals and masks itself until unmasked (VFIO_IRQ_INFO_AUTOMASKED).
    // An MSI is a memory write by the device (QEMU's msi_send_message goes
    // through the bus-master address space), so without bus mastering it is
    // lost, as the lab's kernel shows; INTx is a wire and needs no master.
    fn raise_irq(&mut self) {
        match self.irq_type {
            Some(VFIO_PCI_MSI_IRQ_INDEX) if self.master => {
                if let Some(Some(fd)) = self.irqs[VFIO_PCI_MSI_IRQ_INDEX as usize].triggers.first() {
                    signal_eventfd(fd);
                }
            }
            Some(VFIO_PCI_INTX_IRQ_INDEX) if !self.intx_disabled => {
                let st = &mut self.irqs[VFIO_PCI_INTX_IRQ_INDEX as usize];
                if !st.masked {
                    if let Some(Some(fd)) = st.triggers.first() {
                        signal_eventfd(fd);
                    }
                    st.masked = true;
                }
            }
            _ => {}
        }
    }
}

/// Splits an access into the aligned 8/4/2/1-byte pieces
/// vfio_pci_core_do_io_rw issues.
fn io_pieces(mut off: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) {
    let mut done = 0;
    while done < len {
        let left = len - done;
        let w = if left >= 8 && off.is_multiple_of(8) {
            8
        } else if left >= 4 && off.is_multiple_of(4) {
            4
        } else if left >= 2 && off.is_multiple_of(2) {
            2
        } else {
            1
        };
        f(off, done, w);
        off += w as u64;
        done += w;
    }
}

const REGION_SHIFT: u32 = VFIO_PCI_OFFSET_SHIFT;
const REGION_MASK: u64 = (1u64 << REGION_SHIFT) - 1;

impl Host {
    // vfio_pci_rw: dispatch by region index in the top bits of the offset.
    fn device_rw(&mut self, dev: usize, pos: u64, buf: &mut [u8], write: bool) -> SysResult<usize> {
        let index = (pos >> REGION_SHIFT) as u32;
        let off = pos & REGION_MASK;
        if index >= VFIO_PCI_NUM_REGIONS {
            return einval();
        }
        match index {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                // vfio_config_do_rw: the whole access must lie in config space.
                let size = self.devices[dev].model.config().bytes.len() as u64;
                if off >= size || off + buf.len() as u64 > size {
                    return Err(Errno(libc::EFAULT));
                }
                let model = &mut self.devices[dev].model;
                if write {
                    model.config_mut().write(off as usize, buf);
                } else {
                    model.config().read(off as usize, buf);
                }
                Ok(buf.len())
            }
            0..=5 => {
                // vfio_pci_bar_rw: past the end is EINVAL, a read that runs
                // over is shortened; memory decoding off is EIO.
                let end = self.devices[dev].model.config().bar_size(index);
                if off >= end {
                    return einval();
                }
                let n = buf.len().min((end - off) as usize);
                self.bar_access(dev, index, off, &mut buf[..n], write)?;
                Ok(n)
            }
            // No ROM (pci_resource_len is 0) and no VGA on the modelled devices.
            _ => einval(),
        }
    }

    fn bar_access(&mut self, dev: usize, bar: u32, off: u64, buf: &mut [u8], write: bool) -> SysResult<()> {
        // __vfio_pci_memory_enabled.
        if self.devices[dev].model.config().command() & pci::COMMAND_MEMORY == 0 {
            return Err(Errno(libc::EIO));
        }
        let (c, master) = self.bus_for(dev);
        let iommu = c.and_then(|c| self.containers[c].iommu.as_deref());
        let d = &mut self.devices[dev];
        let intx_disabled = d.model.config().command() & pci::COMMAND_INTX_DISABLE != 0;
        let mut bus = HostBus { iommu, master, irqs: &mut d.irqs, irq_type: d.irq_type, intx_disabled };
        let model = &mut d.model;
        io_pieces(off, buf.len(), |o, at, w| {
            if write {
                let mut v = [0u8; 8];
                v[..w].copy_from_slice(&buf[at..at + w]);
                model.bar_write(bar, o, w, u64::from_le_bytes(v), &mut bus);
            } else {
                let v = model.bar_read(bar, o, w);
                buf[at..at + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
        });
        Ok(())
    }

    // vfio_pci_set_irqs_ioctl with vfio_set_irqs_validate_and_prepare.
    fn set_irqs(&mut self, dev: usize, bytes: &[u8]) -> SysResult<()> {
        let minsz = std::mem::size_of::<vfio_irq_set>();
        let hdr: vfio_irq_set = read_pod(bytes, 0).ok_or(Errno(libc::EINVAL))?;
        let flag_mask = VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK;
        if (hdr.argsz as usize) < minsz
            || hdr.index >= VFIO_PCI_NUM_IRQS
            || hdr.count >= u32::MAX - hdr.start
            || hdr.flags & !flag_mask != 0
        {
            return einval();
        }
        let max = self.irq_count(dev, hdr.index);
        if hdr.start >= max || hdr.start + hdr.count > max {
            return einval();
        }
        let size = match hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_NONE => 0,
            VFIO_IRQ_SET_DATA_BOOL => 1,
            VFIO_IRQ_SET_DATA_EVENTFD => 4,
            _ => return einval(),
        };
        if size > 0 && (hdr.argsz as usize - minsz) < hdr.count as usize * size {
            return einval();
        }
        let data = bytes.get(minsz..minsz + hdr.count as usize * size).ok_or(Errno(libc::EINVAL))?;
        let action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let dtype = hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
        let d = &mut self.devices[dev];
        let fds: Vec<i32> = data.chunks_exact(4).map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect();
        match (hdr.index, action) {
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK) | (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK) => {
                // vfio_pci_set_intx_mask / _unmask: only while INTx is enabled.
                if d.irq_type != Some(VFIO_PCI_INTX_IRQ_INDEX) || hdr.start != 0 || hdr.count != 1 {
                    return if d.irq_type == Some(VFIO_PCI_INTX_IRQ_INDEX) { einval() } else { Ok(()) };
                }
                let st = &mut d.irqs[0];
                let set = dtype == VFIO_IRQ_SET_DATA_NONE || data.first().is_some_and(|&b| b != 0);
                if set {
                    st.masked = action == VFIO_IRQ_SET_ACTION_MASK;
                }
                Ok(())
            }
            (VFIO_PCI_INTX_IRQ_INDEX | VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                let index = hdr.index;
                // Disable: count 0 with DATA_NONE.
                if hdr.count == 0 && dtype == VFIO_IRQ_SET_DATA_NONE {
                    if d.irq_type == Some(index) {
                        d.irq_type = None;
                        d.irqs[index as usize] = IrqIndexState::default();
                    }
                    return Ok(());
                }
                // Only one of INTx / MSI / MSI-X at a time.
                if d.irq_type.is_some() && d.irq_type != Some(index) {
                    return einval();
                }
                if dtype == VFIO_IRQ_SET_DATA_EVENTFD {
                    let total = if index == VFIO_PCI_INTX_IRQ_INDEX { 1 } else { (hdr.start + hdr.count) as usize };
                    let st = &mut d.irqs[index as usize];
                    if d.irq_type != Some(index) {
                        st.triggers = (0..total).map(|_| None).collect();
                        st.masked = false;
                    } else if st.triggers.len() < total {
                        // vfio_msi_set_block on an enabled index cannot grow it.
                        return einval();
                    }
                    let mut new = Vec::with_capacity(fds.len());
                    for &fd in &fds {
                        if fd < 0 {
                            new.push(None);
                        } else {
                            new.push(Some(dup_eventfd(fd)?));
                        }
                    }
                    for (i, t) in new.into_iter().enumerate() {
                        st.triggers[hdr.start as usize + i] = t;
                    }
                    d.irq_type = Some(index);
                    return Ok(());
                }
                // DATA_NONE / DATA_BOOL: fire the selected vectors (loopback).
                let st = &d.irqs[index as usize];
                for i in 0..hdr.count as usize {
                    let fire = dtype == VFIO_IRQ_SET_DATA_NONE || data.get(i).is_some_and(|&b| b != 0);
                    if fire {
                        if let Some(Some(fd)) = st.triggers.get(hdr.start as usize + i) {
                            signal_eventfd(fd);
                        }
                    }
                }
                Ok(())
            }
            (VFIO_PCI_ERR_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                // vfio_pci_set_err_trigger / _req_trigger: one eventfd context.
                let st = &mut d.irqs[hdr.index as usize];
                if dtype == VFIO_IRQ_SET_DATA_EVENTFD {
                    st.triggers = vec![if fds[0] < 0 { None } else { Some(dup_eventfd(fds[0])?) }];
                } else if hdr.count == 0 {
                    st.triggers.clear();
                } else if let Some(Some(fd)) = st.triggers.first() {
                    signal_eventfd(fd);
                }
                Ok(())
            }
            _ => Err(Errno(libc::ENOTTY)),
        }
    }

    // vfio_pci_get_irq_count.
    fn irq_count(&self, dev: usize, index: u32) -> u32 {
        let m = &self.devices[dev].model;
        match index {
            VFIO_PCI_INTX_IRQ_INDEX => (m.config().bytes[pci::INTERRUPT_PIN] != 0) as u32,
            VFIO_PCI_MSI_IRQ_INDEX => m.msi_vectors(),
            VFIO_PCI_MSIX_IRQ_INDEX => m.msix_vectors(),
            VFIO_PCI_ERR_IRQ_INDEX => m.is_pcie() as u32,
            VFIO_PCI_REQ_IRQ_INDEX => 1,
            _ => 0,
        }
    }
}

/// eventfd_ctx_fdget: the kernel takes a reference, so the caller may close
/// its fd; a descriptor that is not open is EBADF.
fn dup_eventfd(fd: i32) -> SysResult<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC on a caller-supplied descriptor only creates a
    // new descriptor (or fails with EBADF); nothing else is touched.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if n < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `n` is a fresh descriptor we exclusively own from here on.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}

impl Backend for MockBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Mock
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    // vfio_fops_open: a new, empty container.
    fn open_container(&self) -> SysResult<RawFd> {
        let mut h = self.lock();
        h.containers.push(ContainerState { file_open: true, ..Default::default() });
        let c = h.containers.len() - 1;
        Ok(h.new_fd(FdObj::Container(c)))
    }

    // /dev/vfio/N exists while a device of group N is bound to a vfio
    // driver (vfio_device_set_group); vfio_group_fops_open refuses a second
    // open with EBUSY.
    fn open_group(&self, id: u32) -> SysResult<RawFd> {
        let mut h = self.lock();
        let h = &mut *h;
        let Some(g) = h.groups.get(&id) else { return Err(Errno(libc::ENOENT)) };
        if !g.devices.iter().any(|&d| h.devices[d].driver.as_deref() == Some(VFIO_PCI)) {
            return Err(Errno(libc::ENOENT));
        }
        if g.file_open {
            return Err(Errno(libc::EBUSY));
        }
        h.groups.get_mut(&id).expect("checked").file_open = true;
        Ok(h.new_fd(FdObj::Group(id)))
    }

    fn close(&self, fd: RawFd) {
        let mut h = self.lock();
        match h.fds.remove(&fd) {
            // vfio_fops_release: the container lives on while groups hold it.
            Some(FdObj::Container(c)) => h.containers[c].file_open = false,
            Some(FdObj::Group(g)) => {
                h.groups.get_mut(&g).expect("group").file_open = false;
                h.maybe_release_group(g);
            }
            // vfio_device_fops_release: the device's last close disables it
            // (vfio_pci_core_disable) and drops its use of the container.
            Some(FdObj::Device(d)) => {
                let gid = h.devices[d].group;
                let dev = &mut h.devices[d];
                dev.open_count -= 1;
                if dev.open_count == 0 {
                    dev.irq_type = None;
                    dev.irqs = Default::default();
                    let cmd = dev.model.config().command() & !(pci::COMMAND_MASTER | pci::COMMAND_MEMORY | pci::COMMAND_IO);
                    dev.model.config_mut().bytes[pci::COMMAND..pci::COMMAND + 2].copy_from_slice(&cmd.to_le_bytes());
                }
                h.groups.get_mut(&gid).expect("group").open_devices -= 1;
                h.maybe_release_group(gid);
            }
            None => {}
        }
    }

    // vfio_fops_unl_ioctl: VFIO_GET_API_VERSION.
    fn get_api_version(&self, container: RawFd) -> SysResult<i32> {
        let mut h = self.lock();
        h.ioctls += 1;
        h.container(container)?;
        Ok(VFIO_API_VERSION)
    }

    // vfio_container_ioctl_check_extension: without an IOMMU ask every
    // driver (skipping those not allowed, e.g. no noiommu mixing) and return
    // the first positive answer; with one, ask only it.
    fn check_extension(&self, container: RawFd, ext: u32) -> SysResult<i32> {
        let mut h = self.lock();
        h.ioctls += 1;
        let c = h.container(container)?;
        if let Some(iommu) = &h.containers[c].iommu {
            return Ok(iommu.check_extension(ext));
        }
        let mut ret = 0;
        for d in &h.drivers {
            ret = d.check_extension(&h.config, ext);
            if ret > 0 {
                break;
            }
        }
        Ok(ret)
    }

    // vfio_ioctl_set_iommu: needs an attached group and no IOMMU yet
    // (EINVAL); tries each driver that offers the extension, opening it and
    // attaching every group; ENODEV when none does.
    fn set_iommu(&self, container: RawFd, ext: u32) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let h = &mut *h;
        let c = h.container(container)?;
        if h.containers[c].groups.is_empty() || h.containers[c].iommu.is_some() {
            return einval();
        }
        let mut ret = Err(Errno(libc::ENODEV));
        for d in &h.drivers {
            if d.check_extension(&h.config, ext) <= 0 {
                continue;
            }
            let mut iommu = match d.open(&h.config, ext) {
                Ok(i) => i,
                Err(e) => {
                    ret = Err(e);
                    continue;
                }
            };
            // __vfio_container_attach_groups.
            let mut attach = Ok(());
            for gid in &h.containers[c].groups {
                let g = AttachGroup { id: *gid, reserved: h.groups[gid].reserved.clone() };
                if let Err(e) = iommu.attach_group(&g) {
                    attach = Err(e);
                    break;
                }
            }
            if let Err(e) = attach {
                ret = Err(e);
                continue;
            }
            h.containers[c].iommu = Some(iommu);
            ret = Ok(());
            break;
        }
        ret
    }

    // vfio_fops_unl_ioctl default branch: EINVAL without an IOMMU driver.
    fn iommu_get_info(&self, container: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let c = h.container(container)?;
        h.containers[c].iommu.as_mut().ok_or(Errno(libc::EINVAL))?.get_info(buf)
    }

    fn map_dma(&self, container: RawFd, map: &vfio_iommu_type1_dma_map) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let c = h.container(container)?;
        h.containers[c].iommu.as_mut().ok_or(Errno(libc::EINVAL))?.map_dma(map)
    }

    // vfio_fops_unl_ioctl default branch: EINVAL without an IOMMU driver.
    fn iommu_dirty_pages(&self, container: RawFd, buf: &[u64]) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let c = h.container(container)?;
        h.containers[c].iommu.as_mut().ok_or(Errno(libc::EINVAL))?.dirty_pages(buf)
    }

    // One lock for the whole slice; each element is still one modelled ioctl.
    fn map_dma_many(&self, container: RawFd, maps: &[vfio_iommu_type1_dma_map]) -> (usize, SysResult<()>) {
        let mut h = self.lock();
        let c = match h.container(container) {
            Ok(c) => c,
            Err(e) => return (0, Err(e)),
        };
        let h = &mut *h;
        let Some(iommu) = h.containers[c].iommu.as_mut() else { return (0, einval()) };
        // Fast path for the built-in driver: no virtual call per entry.
        if let Some(t1) = iommu.as_any_mut().downcast_mut::<Type1Iommu>() {
            for (i, m) in maps.iter().enumerate() {
                h.ioctls += 1;
                if let Err(e) = t1.do_map(m) {
                    return (i, Err(e));
                }
            }
            return (maps.len(), Ok(()));
        }
        for (i, m) in maps.iter().enumerate() {
            h.ioctls += 1;
            if let Err(e) = iommu.map_dma(m) {
                return (i, Err(e));
            }
        }
        (maps.len(), Ok(()))
    }

    fn unmap_dma(&self, container: RawFd, unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let c = h.container(container)?;
        h.containers[c].iommu.as_mut().ok_or(Errno(libc::EINVAL))?.unmap_dma(unmap)
    }

    // vfio_group_ioctl_get_status: VIABLE unless a device's driver claimed
    // DMA ownership; CONTAINER_SET (and VIABLE) once attached.
    fn group_get_status(&self, group: RawFd, status: &mut vfio_group_status) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let gid = h.group(group)?;
        if (status.argsz as usize) < std::mem::size_of::<vfio_group_status>() {
            return einval();
        }
        status.flags = if h.groups[&gid].container.is_some() {
            VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE
        } else if h.viable(gid) {
            VFIO_GROUP_FLAGS_VIABLE
        } else {
            0
        };
        Ok(())
    }

    // vfio_group_ioctl_set_container + vfio_container_attach_group.
    fn group_set_container(&self, group: RawFd, container: RawFd) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let h = &mut *h;
        let gid = h.group(group)?;
        let c = match h.fds.get(&container) {
            None => return Err(Errno(libc::EBADF)),
            Some(FdObj::Container(c)) => Some(*c),
            Some(_) => None,
        };
        if h.groups[&gid].container.is_some() {
            return einval();
        }
        let Some(c) = c else {
            // Not a container: 6.1 answers EINVAL, 6.2+ (with iommufd) EBADFD.
            return Err(Errno(match h.config.kernel {
                KernelVersion::V6_1 => libc::EINVAL,
                KernelVersion::V6_12 => libc::EBADFD,
            }));
        };
        // iommu_group_claim_dma_owner: EPERM while a host driver owns DMA.
        if !h.viable(gid) {
            return Err(Errno(libc::EPERM));
        }
        if let Some(iommu) = h.containers[c].iommu.as_mut() {
            iommu.attach_group(&AttachGroup { id: gid, reserved: h.groups[&gid].reserved.clone() })?;
        }
        h.containers[c].groups.push(gid);
        h.groups.get_mut(&gid).expect("group").container = Some(c);
        Ok(())
    }

    // vfio_group_ioctl_unset_container: EINVAL without a container, EBUSY
    // while devices are open (container_users != 1).
    fn group_unset_container(&self, group: RawFd) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let gid = h.group(group)?;
        let g = &h.groups[&gid];
        if g.container.is_none() {
            return einval();
        }
        if g.open_devices > 0 {
            return Err(Errno(libc::EBUSY));
        }
        h.detach(gid);
        Ok(())
    }

    // vfio_group_ioctl_get_device_fd: the name must match a vfio-bound
    // device of the group (ENODEV), then the group needs a container with
    // an IOMMU (vfio_df_group_open / vfio_group_use_container: EINVAL).
    fn group_get_device_fd(&self, group: RawFd, name: &CStr) -> SysResult<RawFd> {
        let mut h = self.lock();
        h.ioctls += 1;
        let h = &mut *h;
        let gid = h.group(group)?;
        let name = name.to_str().map_err(|_| Errno(libc::ENODEV))?;
        let dev = h.groups[&gid]
            .devices
            .iter()
            .copied()
            .find(|&d| h.devices[d].address == name && h.devices[d].driver.as_deref() == Some(VFIO_PCI))
            .ok_or(Errno(libc::ENODEV))?;
        let c = h.groups[&gid].container.ok_or(Errno(libc::EINVAL))?;
        if h.containers[c].iommu.is_none() {
            return einval();
        }
        let d = &mut h.devices[dev];
        if d.open_count == 0 {
            // vfio_pci_core_enable: pci_enable_device, state saved for reset.
            d.model.config_mut().enable();
            d.model.config_mut().save();
        }
        d.open_count += 1;
        h.groups.get_mut(&gid).expect("group").open_devices += 1;
        Ok(h.new_fd(FdObj::Device(dev)))
    }

    // vfio_pci_core_ioctl_get_info: minsz is up to num_irqs.
    fn device_get_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let d = h.device(device)?;
        let minsz = std::mem::offset_of!(vfio_device_info, cap_offset);
        let argsz = argsz_of(buf);
        if (argsz as usize) < minsz {
            return einval();
        }
        let m = &h.devices[d].model;
        let info = vfio_device_info {
            argsz,
            flags: VFIO_DEVICE_FLAGS_PCI | if m.reset_works() { VFIO_DEVICE_FLAGS_RESET } else { 0 },
            num_regions: VFIO_PCI_NUM_REGIONS,
            num_irqs: VFIO_PCI_NUM_IRQS,
            cap_offset: 0,
        };
        write_pod(buf_bytes_mut(buf), 0, &info, minsz);
        Ok(())
    }

    // vfio_pci_ioctl_get_region_info.
    fn device_get_region_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let d = h.device(device)?;
        let minsz = std::mem::size_of::<vfio_region_info>();
        let argsz = argsz_of(buf) as usize;
        let mut info: vfio_region_info = read_pod(buf_bytes(buf), 0).ok_or(Errno(libc::EINVAL))?;
        if argsz < minsz {
            return einval();
        }
        let m = &h.devices[d].model;
        let index = info.index;
        info.offset = (index as u64) << REGION_SHIFT;
        info.cap_offset = 0;
        let mut caps = CapChain::new(h.config.kernel == KernelVersion::V6_1);
        match index {
            0..=5 => {
                info.size = m.config().bar_size(index);
                info.flags = 0;
                if info.size != 0 {
                    info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
                    if m.bar_mmap(index) {
                        info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
                        if let Some(areas) = m.bar_sparse(index) {
                            let tail: Vec<u8> = areas
                                .iter()
                                .flat_map(|(o, s)| o.to_ne_bytes().into_iter().chain(s.to_ne_bytes()))
                                .collect();
                            caps.add(
                                VFIO_REGION_INFO_CAP_SPARSE_MMAP,
                                1,
                                &vfio_region_info_cap_sparse_mmap {
                                    header: Default::default(),
                                    nr_areas: areas.len() as u32,
                                    reserved: 0,
                                    areas: [],
                                },
                                &tail,
                            );
                        }
                    }
                }
            }
            VFIO_PCI_ROM_REGION_INDEX => {
                info.size = 0;
                info.flags = 0;
            }
            VFIO_PCI_CONFIG_REGION_INDEX => {
                info.size = m.config().bytes.len() as u64;
                info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
            }
            // VGA without vdev->has_vga, and any index past the regions.
            _ => return einval(),
        }
        if !caps.bytes.is_empty() {
            info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
            if argsz < minsz + caps.bytes.len() {
                info.argsz = (minsz + caps.bytes.len()) as u32;
            } else {
                caps.shift_into(buf_bytes_mut(buf), minsz);
                info.cap_offset = minsz as u32;
            }
        }
        write_pod(buf_bytes_mut(buf), 0, &info, minsz);
        Ok(())
    }

    // vfio_pci_ioctl_get_irq_info: ERR only on PCIe devices; INTx is
    // maskable and automasked, the others cannot be resized (6.1).
    fn device_get_irq_info(&self, device: RawFd, info: &mut vfio_irq_info) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let d = h.device(device)?;
        if (info.argsz as usize) < std::mem::size_of::<vfio_irq_info>() || info.index >= VFIO_PCI_NUM_IRQS {
            return einval();
        }
        if info.index == VFIO_PCI_ERR_IRQ_INDEX && !h.devices[d].model.is_pcie() {
            return einval();
        }
        // Since 6.5 MSI-X can grow while enabled where the platform allocates
        // vectors dynamically (vdev->has_dyn_msix, true on x86 with IRQ
        // remapping), so only 6.1 marks an existing MSI-X as NORESIZE.
        let dyn_msix = h.config.kernel == KernelVersion::V6_12 && h.devices[d].model.msix_vectors() > 0;
        info.flags = VFIO_IRQ_INFO_EVENTFD
            | if info.index == VFIO_PCI_INTX_IRQ_INDEX {
                VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
            } else if info.index == VFIO_PCI_MSIX_IRQ_INDEX && dyn_msix {
                0
            } else {
                VFIO_IRQ_INFO_NORESIZE
            };
        info.count = h.irq_count(d, info.index);
        Ok(())
    }

    fn device_set_irqs(&self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let d = h.device(device)?;
        h.set_irqs(d, buf_bytes(buf))
    }

    // vfio_pci_core_ioctl_reset: EINVAL without a reset method; the
    // function reset keeps config space (saved and restored around it).
    fn device_reset(&self, device: RawFd) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let d = h.device(device)?;
        let m = &mut h.devices[d].model;
        if !m.reset_works() {
            return einval();
        }
        m.config_mut().save();
        m.reset();
        m.config_mut().restore();
        Ok(())
    }

    // vfio_pci_ioctl_get_pci_hot_reset_info: a slot or bus reset must exist
    // (a device on a root bus has neither: ENODEV); every function on the
    // bus is affected, whatever its driver; a short buffer gets ENOSPC with
    // the count written.
    fn device_get_pci_hot_reset_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let d = h.device(device)?;
        let minsz = std::mem::offset_of!(vfio_pci_hot_reset_info, devices);
        let argsz = argsz_of(buf) as usize;
        if argsz < minsz {
            return einval();
        }
        let me = pci_address(&h.devices[d].address).ok_or(Errno(libc::ENODEV))?;
        if me.1 == 0 {
            return Err(Errno(libc::ENODEV));
        }
        let mut deps: Vec<vfio_pci_dependent_device> = h
            .devices
            .iter()
            .filter_map(|x| {
                let (seg, bus, devfn) = pci_address(&x.address)?;
                (seg == me.0 && bus == me.1).then_some(vfio_pci_dependent_device { group_id: x.group, segment: seg, bus, devfn })
            })
            .collect();
        deps.sort_by_key(|x| x.devfn);
        let mut hdr = vfio_pci_hot_reset_info { argsz: argsz as u32, flags: 0, count: deps.len() as u32, devices: [] };
        let need = minsz + deps.len() * std::mem::size_of::<vfio_pci_dependent_device>();
        let bytes = buf_bytes_mut(buf);
        if argsz < need {
            write_pod(bytes, 0, &hdr, minsz);
            return Err(Errno(libc::ENOSPC));
        }
        for (i, dep) in deps.iter().enumerate() {
            write_pod(bytes, minsz + i * 8, dep, 8);
        }
        hdr.count = deps.len() as u32;
        write_pod(bytes, 0, &hdr, minsz);
        Ok(())
    }

    // vfio_pci_ioctl_pci_hot_reset + vfio_pci_dev_set_hot_reset: flags must
    // be 0; ENODEV without a slot or bus reset; 1..=affected group fds, each
    // open (EBADF) and a group (EINVAL); every function on the bus bound to
    // vfio-pci (vfio_pci_dev_set_resettable) and in one of the groups
    // (vfio_dev_in_groups), else EINVAL. pci_reset_bus saves and restores
    // each function's config space around the reset.
    fn device_pci_hot_reset(&self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        let mut h = self.lock();
        h.ioctls += 1;
        let d = h.device(device)?;
        let bytes = buf_bytes(buf);
        let minsz = std::mem::offset_of!(vfio_pci_hot_reset, group_fds);
        let hdr: vfio_pci_hot_reset = read_pod(bytes, 0).ok_or(Errno(libc::EINVAL))?;
        if (hdr.argsz as usize) < minsz || hdr.flags != 0 {
            return einval();
        }
        let me = pci_address(&h.devices[d].address).ok_or(Errno(libc::ENODEV))?;
        if me.1 == 0 {
            return Err(Errno(libc::ENODEV));
        }
        let on_bus: Vec<usize> = (0..h.devices.len())
            .filter(|&i| pci_address(&h.devices[i].address).is_some_and(|(s, b, _)| s == me.0 && b == me.1))
            .collect();
        if hdr.count == 0 || hdr.count as usize > on_bus.len() {
            return einval();
        }
        let fds = bytes
            .get(minsz..minsz + 4 * hdr.count as usize)
            .ok_or(Errno(libc::EFAULT))?
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
        let mut groups = Vec::new();
        for fd in fds {
            match h.fds.get(&fd) {
                None => return Err(Errno(libc::EBADF)),
                Some(FdObj::Group(g)) => groups.push(*g),
                Some(_) => return einval(),
            }
        }
        for &i in &on_bus {
            let dev = &h.devices[i];
            if dev.driver.as_deref() != Some(VFIO_PCI) || !groups.contains(&dev.group) {
                return einval();
            }
        }
        for &i in &on_bus {
            let m = &mut h.devices[i].model;
            m.config_mut().save();
            m.reset();
            m.config_mut().restore();
        }
        Ok(())
    }

    fn device_read(&self, device: RawFd, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        let mut h = self.lock();
        let d = h.device(device)?;
        h.device_rw(d, offset, buf, false)
    }

    fn device_write(&self, device: RawFd, offset: u64, buf: &[u8]) -> SysResult<usize> {
        let mut h = self.lock();
        let d = h.device(device)?;
        let mut tmp = buf.to_vec();
        h.device_rw(d, offset, &mut tmp, true)
    }

    // mmap(2) (offset page-aligned, length non-zero) and vfio_pci_core_mmap:
    // BARs only, mmap-capable ones only, and within the page-aligned BAR.
    fn mmap(&self, device: RawFd, offset: u64, len: usize) -> SysResult<Mmap> {
        let h = self.lock();
        let d = h.device(device)?;
        if len == 0 || !offset.is_multiple_of(4096) {
            return einval();
        }
        let index = (offset >> REGION_SHIFT) as u32;
        if index >= VFIO_PCI_ROM_REGION_INDEX {
            return einval();
        }
        let m = &h.devices[d].model;
        if !m.bar_mmap(index) {
            return einval();
        }
        let phys_len = m.config().bar_size(index).div_ceil(4096) * 4096;
        let start = offset & REGION_MASK;
        if start + len as u64 > phys_len {
            return einval();
        }
        Ok(Mmap::Emulated { device, fd_offset: offset, len })
    }

    fn munmap(&self, _map: &Mmap) {}

    // An access through the mapping: vfio_pci_mmap_fault gives SIGBUS when
    // memory decoding is off; the emulated mapping answers EIO instead.
    fn mmio_read(&self, map: &Mmap, offset: u64, buf: &mut [u8]) -> SysResult<()> {
        let Mmap::Emulated { device, fd_offset, .. } = map else { return Err(Errno(libc::ENOTTY)) };
        let mut h = self.lock();
        let d = h.device(*device)?;
        let pos = fd_offset + offset;
        h.bar_access(d, (pos >> REGION_SHIFT) as u32, pos & REGION_MASK, buf, false)
    }

    fn mmio_write(&self, map: &Mmap, offset: u64, buf: &[u8]) -> SysResult<()> {
        let Mmap::Emulated { device, fd_offset, .. } = map else { return Err(Errno(libc::ENOTTY)) };
        let mut h = self.lock();
        let d = h.device(*device)?;
        let pos = fd_offset + offset;
        let mut tmp = buf.to_vec();
        h.bar_access(d, (pos >> REGION_SHIFT) as u32, pos & REGION_MASK, &mut tmp, true)
    }
}
