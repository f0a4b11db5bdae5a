//! Shared fixtures for the mock tests.
#![allow(dead_code)]

use std::sync::Arc;

use vfio_core::backend::{MockDeviceConfig, MockGroupConfig};
use vfio_core::uapi::VFIO_TYPE1V2_IOMMU;
use vfio_core::{Backend, Container, Group, MockBackend, MockConfig};

pub const EDU: &str = "0000:00:03.0";

/// The address of a 64 GiB reserved region (1 GiB aligned, never freed):
/// host memory for maps, which must be mapped in this process.
pub fn va() -> u64 {
    static REGION: std::sync::OnceLock<vfio_core::HostMemory> = std::sync::OnceLock::new();
    REGION.get_or_init(|| vfio_core::HostMemory::reserve(65 << 30).expect("reserving 65 GiB of address space")).addr().next_multiple_of(1 << 30)
}

pub fn host(config: MockConfig) -> Arc<dyn Backend> {
    Arc::new(MockBackend::new(config))
}

/// The default host (group 1: one edu bound to vfio-pci), with a type1v2
/// container holding group 1.
pub fn ready() -> (Arc<dyn Backend>, Container, Group) {
    ready_with(MockConfig::default())
}

pub fn ready_with(config: MockConfig) -> (Arc<dyn Backend>, Container, Group) {
    let b = host(config);
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b.clone(), 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    (b, c, g)
}

pub fn two_device_group(second_driver: Option<&str>) -> MockConfig {
    MockConfig::empty().with_group(
        MockGroupConfig::new(1)
            .with_device(MockDeviceConfig::edu("0000:01:01.0"))
            .with_device(MockDeviceConfig::edu("0000:01:02.0").bound_to(second_driver)),
    )
}

pub const RW: u32 = vfio_core::dma_flags::READ_WRITE;
pub const MB: u64 = 1 << 20;

/// A host with group 1 attached to a type1v2 container.
pub struct Fixture {
    pub backend: Arc<dyn Backend>,
    pub container: Container,
    pub group: Group,
}

impl Fixture {
    pub fn new(config: MockConfig) -> Self {
        Self::new_group(config, 1)
    }

    /// Group `id` attached to a type1v2 container.
    pub fn new_group(config: MockConfig, id: u32) -> Self {
        let backend = host(config);
        let container = Container::open(backend.clone()).unwrap();
        let group = Group::open(backend.clone(), id).unwrap();
        group.set_container(&container).unwrap();
        container.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
        Self { backend, container, group }
    }
}
