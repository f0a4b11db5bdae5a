//! A device fd: info, regions, IRQs, resets and BAR mappings.

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::args::u64_of;
use super::error::{bad_arg, js_err};
use super::group::Group;

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

#[napi]
pub struct Device {
    pub(super) inner: crate::Device,
}

#[napi]
impl Device {
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_string()
    }

    #[napi]
    pub fn info(&self, env: &Env) -> Result<DeviceInfoJs> {
        let i = self.inner.info().map_err(|e| js_err(env, e))?;
        Ok(DeviceInfoJs { flags: i.flags, num_regions: i.num_regions, num_irqs: i.num_irqs })
    }

    #[napi]
    pub fn region_info(&self, env: &Env, index: u32) -> Result<RegionInfoJs> {
        let r = self.inner.region_info(index).map_err(|e| js_err(env, e))?;
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
        let i = self.inner.irq_info(index).map_err(|e| js_err(env, e))?;
        Ok(IrqInfoJs { index: i.index, flags: i.flags, count: i.count })
    }

    /// `VFIO_DEVICE_SET_IRQS` with eventfds (-1 unassigns a vector; an
    /// empty array disables the index).
    #[napi]
    pub fn set_irq_eventfds(&self, env: &Env, index: u32, start: u32, fds: Vec<i32>) -> Result<()> {
        let data = if fds.is_empty() { crate::IrqData::None { count: 0 } } else { crate::IrqData::Eventfds(&fds) };
        self.inner.set_irqs(index, start, crate::IrqAction::Trigger, data).map_err(|e| js_err(env, e))
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
        self.inner.set_irqs(index, start, a, crate::IrqData::None { count }).map_err(|e| js_err(env, e))
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the devices a bus or slot
    /// reset of this one also resets (ENODEV when it has neither).
    #[napi]
    pub fn pci_hot_reset_info(&self, env: &Env) -> Result<Vec<DependentDeviceJs>> {
        let v = self.inner.pci_hot_reset_info().map_err(|e| js_err(env, e))?;
        Ok(v.into_iter().map(|d| DependentDeviceJs { group_id: d.group_id, address: d.address() }).collect())
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET` with the groups that hold every affected device.
    #[napi]
    pub fn pci_hot_reset(&self, env: &Env, groups: Vec<&Group>) -> Result<()> {
        let gs: Vec<&crate::Group> = groups.iter().map(|g| &g.inner).collect();
        self.inner.pci_hot_reset(&gs).map_err(|e| js_err(env, e))
    }

    /// `VFIO_DEVICE_RESET`.
    #[napi]
    pub fn reset(&self, env: &Env) -> Result<()> {
        self.inner.reset().map_err(|e| js_err(env, e))
    }

    /// Reads `length` bytes at `offset` of region `index` (pread).
    #[napi]
    pub fn read_region(&self, env: &Env, index: u32, offset: i64, length: u32) -> Result<Buffer> {
        let r = (|| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let region = self.inner.region(index)?;
            let mut buf = vec![0u8; length as usize];
            self.inner.read_region(&region, off, &mut buf)?;
            Ok(buf)
        })();
        r.map(Buffer::from).map_err(|e| js_err(env, e))
    }

    /// Writes `data` at `offset` of region `index` (pwrite).
    #[napi]
    pub fn write_region(&self, env: &Env, index: u32, offset: i64, data: &[u8]) -> Result<()> {
        let r = (|| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let region = self.inner.region(index)?;
            self.inner.write_region(&region, off, data)
        })();
        r.map_err(|e| js_err(env, e))
    }

    /// mmap of `length` bytes at `offset` of region `index`.
    #[napi]
    pub fn map_region(&self, env: &Env, index: u32, offset: i64, length: u32) -> Result<MappedRegion> {
        let r = (|| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let region = self.inner.region(index)?;
            self.inner.map_region(&region, off, length as usize)
        })();
        Ok(MappedRegion { inner: r.map_err(|e| js_err(env, e))? })
    }
}

/// An mmap of part of a device region; accesses are single MMIO loads and
/// stores of the named width, little-endian.
#[napi]
pub struct MappedRegion {
    pub(super) inner: crate::MappedRegion,
}

#[napi]
impl MappedRegion {
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        self.inner.len() as u32
    }

    #[napi]
    pub fn read32(&self, env: &Env, offset: u32) -> Result<u32> {
        self.inner.read_u32(offset as u64).map_err(|e| js_err(env, e))
    }

    #[napi]
    pub fn write32(&self, env: &Env, offset: u32, value: u32) -> Result<()> {
        self.inner.write_u32(offset as u64, value).map_err(|e| js_err(env, e))
    }

    #[napi]
    pub fn read64(&self, env: &Env, offset: u32) -> Result<BigInt> {
        self.inner.read_u64(offset as u64).map(BigInt::from).map_err(|e| js_err(env, e))
    }

    #[napi]
    pub fn write64(&self, env: &Env, offset: u32, value: BigInt) -> Result<()> {
        let r = (|| self.inner.write_u64(offset as u64, u64_of("value", &value)?))();
        r.map_err(|e| js_err(env, e))
    }
}
