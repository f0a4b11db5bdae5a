//! An in-process model of the kernel's VFIO: containers, groups, devices and
//! the type1 IOMMU. Every rule cites the kernel function it mirrors
//! (drivers/vfio/{container,group}.c, vfio_iommu_type1.c,
//! pci/vfio_pci_core.c, pci/vfio_pci_intrs.c, pci/vfio_pci_rdwr.c).
//!
//! Maps pin as the kernel pins (`pin`): a host range that is not mapped in
//! this process fails with EFAULT, and pinned pages are charged to the
//! host's locked_vm against RLIMIT_MEMLOCK unless the caller has
//! CAP_IPC_LOCK (ENOMEM past it), given back on unmap and on release,
//! except those of a mapping that ends at 2^64, which 6.1's type1 never
//! unpins (its end wraps to 0; `type1::ends_at_top`).
//!
//! Known differences from the kernel, by design:
//! - a pin checks that every page is mapped, not its protection: a PROT_NONE
//!   range, or a read-only one mapped with WRITE, is accepted where GUP
//!   answers EFAULT (knowing it would take /proc/self/maps on every map);
//! - BAR mmaps are emulated ([`Mmap::Emulated`]): every access runs the
//!   device model, as MMIO through the kernel's mapping would;
//! - `UNMAP_DMA` with `FLAG_ALL` always takes a mapping that ends at 2^64
//!   along with the others (keeping its pages pinned, as the kernel does);
//!   6.1 reaches it only by walking from another mapping its rb-tree search
//!   found first, which depends on the tree's shape (alone, or at the root,
//!   it stays mapped).

mod bus;
mod caps;
pub mod config;
pub mod profiles;
mod container;
pub mod devices;
mod fds;
mod group;
mod iommu;
mod iommufd;
mod irq;
pub mod pin;
mod region;
mod reset;
pub mod spapr;
pub mod type1;

use std::collections::{BTreeMap, HashMap};
use std::ffi::CStr;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use self::config::MockConfig;
use self::container::ContainerState;
use self::devices::DeviceModel;
use self::fds::FdObj;
use self::group::{driver_keeps_group_viable, GroupState};
use self::irq::IrqIndexState;
pub use self::pin::{MemlockPolicy, MockMm};
pub use self::iommu::{AttachGroup, IommuDriverOps, IommuOps};
pub use self::type1::{Type1Driver, Type1Iommu};
use super::{Backend, BackendKind, Errno, Mmap, RawFd, SysResult};
use crate::uapi::iommufd as fd;
use crate::uapi::*;
use self::bus::{read_self, write_self};
use self::caps::CapChain;


pub(super) fn einval<T>() -> SysResult<T> {
    Err(Errno(libc::EINVAL))
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

struct Host {
    config: MockConfig,
    drivers: Vec<Arc<dyn IommuDriverOps>>,
    fds: HashMap<RawFd, FdObj>,
    next_fd: RawFd,
    containers: Vec<ContainerState>,
    groups: BTreeMap<u32, GroupState>,
    devices: Vec<DeviceState>,
    /// iommufd contexts (one per open of /dev/iommu) and device cdev opens.
    ictxs: Vec<iommufd::IommufdCtx>,
    cdevs: Vec<iommufd::CdevState>,
    /// Count of ioctls served, for benchmarks that compare call counts.
    ioctls: u64,
    /// The process's mm as the IOMMUs pin into it (locked_vm).
    mm: Arc<MockMm>,
    /// iommufd's other counters: the user's locked_vm and the mm's pinned_vm.
    iommufd_acct: iommufd::IommufdAccounting,
}

/// The mock's descriptors are numbered from here, above what a test
/// process has open, so no mock number is also one of the process's own.
pub(super) const FIRST_FD: RawFd = 1000;

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
                    model: devices::build(&d.model),
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
                mm: Arc::new(MockMm::new(config.memlock)),
                config,
                drivers,
                fds: HashMap::new(),
                next_fd: FIRST_FD,
                containers: Vec::new(),
                groups,
                devices,
                ictxs: Vec::new(),
                cdevs: Vec::new(),
                ioctls: 0,
                iommufd_acct: Default::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Host> {
        // A panic while holding the lock leaves the model as it was at the
        // panic; tests that continue may still inspect it.
        self.host.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pages this host's IOMMUs hold pinned and charged to locked_vm.
    pub fn locked_pages(&self) -> u64 {
        self.lock().mm.locked_pages()
    }

    /// Pages iommufd holds pinned for this host's process (its VmPin), and
    /// those charged to the user's locked_vm (IOPT_PAGES_ACCOUNT_USER).
    pub fn iommufd_pinned_pages(&self) -> (u64, u64) {
        let h = self.lock();
        (h.iommufd_acct.pinned_vm, h.iommufd_acct.user_locked)
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
        d.model.as_any().downcast_ref::<devices::Edu>().map(|e| e.range_errors)
    }
}

impl Backend for MockBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Mock
    }

    fn spapr<'a>(&'a self, container: RawFd) -> Box<dyn crate::spapr::SpaprOps + 'a> {
        Box::new(spapr::MockContainerSpapr::new(self, container))
    }

    fn open_container(&self) -> SysResult<RawFd> {
        self.lock().open_container()
    }

    fn open_group(&self, id: u32) -> SysResult<RawFd> {
        self.lock().open_group(id)
    }

    fn close(&self, fd: RawFd) {
        self.lock().close(fd)
    }

    fn get_api_version(&self, container: RawFd) -> SysResult<i32> {
        self.lock().get_api_version(container)
    }

    fn check_extension(&self, container: RawFd, ext: u32) -> SysResult<i32> {
        self.lock().check_extension(container, ext)
    }

    fn set_iommu(&self, container: RawFd, ext: u32) -> SysResult<()> {
        self.lock().set_iommu(container, ext)
    }

    fn iommu_get_info(&self, container: RawFd, buf: &mut [u64]) -> SysResult<()> {
        self.lock().iommu_get_info(container, buf)
    }

    fn map_dma(&self, container: RawFd, map: &vfio_iommu_type1_dma_map) -> SysResult<()> {
        self.lock().map_dma(container, map)
    }

    fn iommu_dirty_pages(&self, container: RawFd, buf: &[u64]) -> SysResult<()> {
        self.lock().iommu_dirty_pages(container, buf)
    }

    fn map_dma_many(&self, container: RawFd, maps: &[vfio_iommu_type1_dma_map]) -> (usize, SysResult<()>) {
        self.lock().map_dma_many(container, maps)
    }

    fn unmap_dma(&self, container: RawFd, unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()> {
        self.lock().unmap_dma(container, unmap)
    }

    fn group_get_status(&self, group: RawFd, status: &mut vfio_group_status) -> SysResult<()> {
        self.lock().group_get_status(group, status)
    }

    fn group_set_container(&self, group: RawFd, container: RawFd) -> SysResult<()> {
        self.lock().group_set_container(group, container)
    }

    fn group_unset_container(&self, group: RawFd) -> SysResult<()> {
        self.lock().group_unset_container(group)
    }

    fn group_get_device_fd(&self, group: RawFd, name: &CStr) -> SysResult<RawFd> {
        self.lock().group_get_device_fd(group, name)
    }

    fn device_get_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        self.lock().device_get_info(device, buf)
    }

    fn device_get_region_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        self.lock().device_get_region_info(device, buf)
    }

    fn device_get_irq_info(&self, device: RawFd, info: &mut vfio_irq_info) -> SysResult<()> {
        self.lock().device_get_irq_info(device, info)
    }

    fn device_set_irqs(&self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        self.lock().device_set_irqs(device, buf)
    }

    fn device_reset(&self, device: RawFd) -> SysResult<()> {
        self.lock().device_reset(device)
    }

    fn device_get_pci_hot_reset_info(&self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        self.lock().device_get_pci_hot_reset_info(device, buf)
    }

    fn device_pci_hot_reset(&self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        self.lock().device_pci_hot_reset(device, buf)
    }

    fn device_read(&self, device: RawFd, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        self.lock().device_read(device, offset, buf)
    }

    fn device_write(&self, device: RawFd, offset: u64, buf: &[u8]) -> SysResult<usize> {
        self.lock().device_write(device, offset, buf)
    }

    fn mmap(&self, device: RawFd, offset: u64, len: usize) -> SysResult<Mmap> {
        self.lock().mmap(device, offset, len)
    }

    fn munmap(&self, _map: &Mmap) {}

    fn mmio_read(&self, map: &Mmap, offset: u64, buf: &mut [u8]) -> SysResult<()> {
        self.lock().mmio_read(map, offset, buf)
    }

    fn mmio_write(&self, map: &Mmap, offset: u64, buf: &[u8]) -> SysResult<()> {
        self.lock().mmio_write(map, offset, buf)
    }

    fn open_iommufd(&self) -> SysResult<RawFd> {
        self.lock().open_iommufd()
    }

    fn open_device_cdev(&self, index: u32) -> SysResult<RawFd> {
        self.lock().open_device_cdev(index)
    }

    fn iommu_destroy(&self, iommufd: RawFd, cmd: &fd::iommu_destroy) -> SysResult<()> {
        self.lock().iommu_destroy(iommufd, cmd)
    }

    fn ioas_alloc(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_alloc) -> SysResult<()> {
        self.lock().ioas_alloc(iommufd, cmd)
    }

    // The buffer fields are the backend's to set, as the kernel backend
    // points them at the caller's slices.
    fn ioas_iova_ranges(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_iova_ranges, ranges: &mut [fd::iommu_iova_range]) -> SysResult<()> {
        cmd.num_iovas = ranges.len() as u32;
        self.lock().ioas_iova_ranges(iommufd, cmd, ranges)
    }

    fn ioas_allow_iovas(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_allow_iovas, ranges: &[fd::iommu_iova_range]) -> SysResult<()> {
        cmd.num_iovas = ranges.len() as u32;
        self.lock().ioas_allow_iovas(iommufd, cmd, ranges)
    }

    fn ioas_map(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_map) -> SysResult<()> {
        self.lock().ioas_map(iommufd, cmd)
    }

    fn ioas_map_many(&self, iommufd: RawFd, maps: &mut [fd::iommu_ioas_map]) -> (usize, SysResult<()>) {
        self.lock().ioas_map_many(iommufd, maps)
    }

    fn ioas_copy(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_copy) -> SysResult<()> {
        self.lock().ioas_copy(iommufd, cmd)
    }

    fn ioas_map_file(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_map_file) -> SysResult<()> {
        self.lock().ioas_map_file(iommufd, cmd)
    }

    fn ioas_change_process(&self, iommufd: RawFd, cmd: &fd::iommu_ioas_change_process) -> SysResult<()> {
        self.lock().ioas_change_process(iommufd, cmd)
    }

    fn ioas_unmap(&self, iommufd: RawFd, cmd: &mut fd::iommu_ioas_unmap) -> SysResult<()> {
        self.lock().ioas_unmap(iommufd, cmd)
    }

    fn pinned_pages(&self) -> SysResult<u64> {
        Ok(self.lock().iommufd_acct.pinned_vm)
    }

    fn iommu_option(&self, iommufd: RawFd, cmd: &mut fd::iommu_option) -> SysResult<()> {
        self.lock().iommu_option(iommufd, cmd)
    }

    fn iommu_get_hw_info(&self, iommufd: RawFd, cmd: &mut fd::iommu_hw_info, data: &mut [u64]) -> SysResult<()> {
        cmd.data_len = (data.len() * 8) as u32;
        self.lock().iommu_get_hw_info(iommufd, cmd, data)
    }

    fn hwpt_alloc(&self, iommufd: RawFd, cmd: &mut fd::iommu_hwpt_alloc) -> SysResult<()> {
        self.lock().hwpt_alloc(iommufd, cmd)
    }

    fn hwpt_set_dirty_tracking(&self, iommufd: RawFd, cmd: &fd::iommu_hwpt_set_dirty_tracking) -> SysResult<()> {
        self.lock().hwpt_set_dirty_tracking(iommufd, cmd)
    }

    fn hwpt_get_dirty_bitmap(&self, iommufd: RawFd, cmd: &mut fd::iommu_hwpt_get_dirty_bitmap, bitmap: &mut [u64]) -> SysResult<()> {
        self.lock().hwpt_get_dirty_bitmap(iommufd, cmd, bitmap)
    }

    fn iommufd_test(&self, iommufd: RawFd, cmd: &mut crate::uapi::iommufd_test::iommu_test_cmd, bitmap: &[u64]) -> SysResult<()> {
        self.lock().iommufd_test(iommufd, cmd, bitmap)
    }

    fn device_bind_iommufd(&self, device: RawFd, cmd: &mut fd::vfio_device_bind_iommufd) -> SysResult<()> {
        self.lock().device_bind_iommufd(device, cmd)
    }

    fn device_attach_iommufd_pt(&self, device: RawFd, cmd: &mut fd::vfio_device_attach_iommufd_pt) -> SysResult<()> {
        self.lock().device_attach_iommufd_pt(device, cmd)
    }

    fn device_detach_iommufd_pt(&self, device: RawFd, cmd: &fd::vfio_device_detach_iommufd_pt) -> SysResult<()> {
        self.lock().device_detach_iommufd_pt(device, cmd)
    }
}
