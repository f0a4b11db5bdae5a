//! A device fd: info, regions, IRQs, resets and BAR mappings.

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use std::sync::Arc;

use super::args::u64_of;
use super::error::{bad_arg, js_err};
use super::container::{closed, Open, Shared, Slab};

#[napi(object, js_name = "DeviceInfo")]
pub struct DeviceInfoJs {
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

#[napi(object, js_name = "SparseArea")]
pub struct SparseAreaJs {
    pub offset: BigInt,
    pub size: BigInt,
}

#[napi(object, js_name = "RegionInfo")]
pub struct RegionInfoJs {
    pub index: u32,
    pub flags: u32,
    pub size: BigInt,
    pub offset: BigInt,
    pub sparse_areas: Option<Vec<SparseAreaJs>>,
}

#[napi(object, js_name = "IrqInfo")]
pub struct IrqInfoJs {
    pub index: u32,
    pub flags: u32,
    pub count: u32,
}

/// A device a PCI hot reset would also reset.
#[napi(object, js_name = "DependentDevice")]
pub struct DependentDeviceJs {
    pub group_id: u32,
    /// PCI address, "0000:01:02.0".
    pub address: String,
}

/// One device fd of a container: while any handle of it lives (the JS
/// device or a mapping of its BARs) the slot stays open, and so does the
/// container. The last handle collected closes the fd.
pub(super) struct DeviceRef {
    shared: Arc<Shared>,
    id: u64,
    object: String,
}

/// What a device call may reach: its fd, the container's mappings (to add
/// one) and the container (for a hot reset with its groups).
pub(super) struct Parts<'a> {
    device: &'a crate::Device,
    regions: &'a mut Slab<(u64, crate::MappedRegion)>,
    t1: &'a crate::Type1Container,
}

impl DeviceRef {
    fn with<R>(&self, ioctl: &'static str, f: impl FnOnce(Parts<'_>) -> crate::Result<R>) -> crate::Result<R> {
        self.shared.with(ioctl, &self.object, |o| {
            let Open { regions, devices, t1 } = o;
            let device = devices.get(self.id).ok_or_else(|| closed(ioctl, &self.object))?;
            f(Parts { device, regions, t1 })
        })
    }

    /// Closes the fd and its mappings (mappings first); a no-op when closed.
    fn close(&self) {
        let taken = self
            .shared
            .with("close", &self.object, |o| Ok((o.regions.remove_where(|(d, _)| *d == self.id), o.devices.remove(self.id))))
            .ok();
        drop(taken);
    }
}

impl Drop for DeviceRef {
    fn drop(&mut self) {
        self.close();
    }
}

/// A device fd (`VFIO_GROUP_GET_DEVICE_FD`), from `Type1Container.device`.
#[napi]
pub struct Device {
    dev: Arc<DeviceRef>,
    name: String,
}

impl Device {
    pub(super) fn new(shared: Arc<Shared>, id: u64, name: String) -> Self {
        let object = format!("device {name} of the {}", shared.object);
        Self { dev: Arc::new(DeviceRef { shared, id, object }), name }
    }

    /// Another JS handle on the same device fd (closed when the last goes).
    pub(super) fn handle(&self) -> Self {
        Self { dev: self.dev.clone(), name: self.name.clone() }
    }

    fn call<R>(&self, env: &Env, ioctl: &'static str, f: impl FnOnce(&crate::Device) -> crate::Result<R>) -> Result<R> {
        self.dev.with(ioctl, |p| f(p.device)).map_err(|e| js_err(env, e))
    }
}

#[napi]
impl Device {
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Closes this device fd (and its BAR mappings) now. Idempotent; the
    /// container stays open.
    #[napi]
    pub fn close(&self) {
        self.dev.close();
    }

    #[napi]
    pub fn info(&self, env: &Env) -> Result<DeviceInfoJs> {
        let i = self.call(env, "VFIO_DEVICE_GET_INFO", |d| d.info())?;
        Ok(DeviceInfoJs { flags: i.flags, num_regions: i.num_regions, num_irqs: i.num_irqs })
    }

    #[napi]
    pub fn region_info(&self, env: &Env, index: u32) -> Result<RegionInfoJs> {
        let r = self.call(env, "VFIO_DEVICE_GET_REGION_INFO", |d| d.region_info(index))?;
        Ok(RegionInfoJs {
            index: r.index,
            flags: r.flags,
            size: BigInt::from(r.size),
            offset: BigInt::from(r.offset),
            sparse_areas: r.sparse_areas.map(|v| {
                v.into_iter().map(|a| SparseAreaJs { offset: BigInt::from(a.offset), size: BigInt::from(a.size) }).collect()
            }),
        })
    }

    #[napi]
    pub fn irq_info(&self, env: &Env, index: u32) -> Result<IrqInfoJs> {
        let i = self.call(env, "VFIO_DEVICE_GET_IRQ_INFO", |d| d.irq_info(index))?;
        Ok(IrqInfoJs { index: i.index, flags: i.flags, count: i.count })
    }

    /// `VFIO_DEVICE_SET_IRQS` with eventfds (-1 unassigns a vector; an
    /// empty array disables the index).
    #[napi]
    pub fn set_irq_eventfds(&self, env: &Env, index: u32, start: u32, fds: Vec<i32>) -> Result<()> {
        let data = if fds.is_empty() { crate::IrqData::None { count: 0 } } else { crate::IrqData::Eventfds(&fds) };
        self.call(env, "VFIO_DEVICE_SET_IRQS", |d| d.set_irqs(index, start, crate::IrqAction::Trigger, data))
    }

    /// `VFIO_DEVICE_SET_IRQS` with `DATA_NONE`: `action` is "mask",
    /// "unmask" or "trigger" (fires the vectors: a loopback test).
    #[napi]
    pub fn set_irqs_none(&self, env: &Env, index: u32, start: u32, count: u32, action: String) -> Result<()> {
        let a = match action.as_str() {
            "mask" => crate::IrqAction::Mask,
            "unmask" => crate::IrqAction::Unmask,
            "trigger" => crate::IrqAction::Trigger,
            other => return Err(js_err(env, bad_arg(format!("action {other:?}: use mask, unmask or trigger")))),
        };
        self.call(env, "VFIO_DEVICE_SET_IRQS", |d| d.set_irqs(index, start, a, crate::IrqData::None { count }))
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the devices a bus or slot
    /// reset of this one also resets (ENODEV when it has neither).
    #[napi]
    pub fn pci_hot_reset_info(&self, env: &Env) -> Result<Vec<DependentDeviceJs>> {
        let v = self.call(env, "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", |d| d.pci_hot_reset_info())?;
        Ok(v.into_iter().map(|d| DependentDeviceJs { group_id: d.group_id, address: d.address() }).collect())
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET`, proving ownership with every group of
    /// the container (which must hold every affected device).
    #[napi]
    pub fn pci_hot_reset(&self, env: &Env) -> Result<()> {
        self.dev.with("VFIO_DEVICE_PCI_HOT_RESET", |p| p.t1.pci_hot_reset(p.device)).map_err(|e| js_err(env, e))
    }

    /// `VFIO_DEVICE_RESET`.
    #[napi]
    pub fn reset(&self, env: &Env) -> Result<()> {
        self.call(env, "VFIO_DEVICE_RESET", |d| d.reset())
    }

    /// Reads `length` bytes at `offset` of region `index` (pread).
    #[napi]
    pub fn read_region(&self, env: &Env, index: u32, offset: i64, length: u32) -> Result<Buffer> {
        self.call(env, "pread", |d| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let region = d.region(index)?;
            let mut buf = vec![0u8; length as usize];
            d.read_region(&region, off, &mut buf)?;
            Ok(buf)
        })
        .map(Buffer::from)
    }

    /// Writes `data` at `offset` of region `index` (pwrite).
    #[napi]
    pub fn write_region(&self, env: &Env, index: u32, offset: i64, data: &[u8]) -> Result<()> {
        self.call(env, "pwrite", |d| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let region = d.region(index)?;
            d.write_region(&region, off, data)
        })
    }

    /// The 16-bit config-space word at `offset` (little-endian, as PCI is).
    #[napi]
    pub fn read_config16(&self, env: &Env, offset: i64) -> Result<u16> {
        let b = self.read_region(env, crate::uapi::VFIO_PCI_CONFIG_REGION_INDEX, offset, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Writes the 16-bit config-space word at `offset` (little-endian).
    #[napi]
    pub fn write_config16(&self, env: &Env, offset: i64, value: u16) -> Result<()> {
        self.write_region(env, crate::uapi::VFIO_PCI_CONFIG_REGION_INDEX, offset, &value.to_le_bytes())
    }

    /// mmap of `length` bytes at `offset` of region `index`.
    #[napi]
    pub fn map_region(&self, env: &Env, index: u32, offset: i64, length: u32) -> Result<MappedRegion> {
        let dev = self.dev.id;
        let id = self
            .dev
            .with("mmap", |p| {
                let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
                let region = p.device.region(index)?;
                let m = p.device.map_region(&region, off, length as usize)?;
                Ok(p.regions.insert((dev, m)))
            })
            .map_err(|e| js_err(env, e))?;
        let object = format!("region {index} mapping of {}", self.dev.object);
        Ok(MappedRegion { backing: Backing::Container { dev: self.dev.clone(), id }, length, object })
    }
}

/// An mmap of part of a device region; accesses are single MMIO loads and
/// stores of the named width, little-endian. It keeps its device open.
#[napi]
pub struct MappedRegion {
    backing: Backing,
    length: u32,
    object: String,
}

/// Where the mmap lives: in its type1 container's table (closed with the
/// container), or held here (a device of an iommufd space; the mmap keeps
/// the device file open in the kernel until it is collected).
enum Backing {
    Container { dev: Arc<DeviceRef>, id: u64 },
    Own(crate::MappedRegion),
}

impl MappedRegion {
    /// A mapping of a device of an iommufd space.
    pub(super) fn own(m: crate::MappedRegion, length: u32, object: String) -> Self {
        Self { backing: Backing::Own(m), length, object }
    }

    fn call<R>(&self, env: &Env, f: impl FnOnce(&crate::MappedRegion) -> crate::Result<R>) -> Result<R> {
        match &self.backing {
            Backing::Container { dev, id } => dev
                .shared
                .with("mmio", &self.object, |o| o.regions.get(*id).ok_or_else(|| closed("mmio", &self.object)).and_then(|(_, m)| f(m))),
            Backing::Own(m) => f(m),
        }
        .map_err(|e| js_err(env, e))
    }
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        if let Backing::Container { dev, id } = &self.backing {
            let gone = dev.shared.with("munmap", &self.object, |o| Ok(o.regions.remove(*id))).ok().flatten();
            drop(gone);
        }
    }
}

#[napi]
impl MappedRegion {
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        self.length
    }

    #[napi]
    pub fn read32(&self, env: &Env, offset: u32) -> Result<u32> {
        self.call(env, |m| m.read_u32(offset as u64))
    }

    #[napi]
    pub fn write32(&self, env: &Env, offset: u32, value: u32) -> Result<()> {
        self.call(env, |m| m.write_u32(offset as u64, value))
    }

    #[napi]
    pub fn read64(&self, env: &Env, offset: u32) -> Result<BigInt> {
        self.call(env, |m| m.read_u64(offset as u64)).map(BigInt::from)
    }

    #[napi]
    pub fn write64(&self, env: &Env, offset: u32, value: BigInt) -> Result<()> {
        self.call(env, |m| m.write_u64(offset as u64, u64_of("value", &value)?))
    }
}
