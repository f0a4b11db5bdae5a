//! Backends: the kernel's /dev/vfio or a mock host.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::container::Type1Container;
use super::live::{take_over_iommufd_task, take_over_task, TakeOverIommufdTask, TakeOverTask};
use super::error::js_err;
use super::mock_host::{config_of, MockHostConfig};
use crate::backend::{self, KernelBackend, MockBackend};

#[napi(object, js_name = "GroupStatus")]
pub struct GroupStatusJs {
    pub viable: bool,
    pub container_set: bool,
    pub flags: u32,
}

/// A VFIO system: the kernel's /dev/vfio, or an in-process mock host.
#[napi]
pub struct VfioBackend {
    pub(super) inner: Arc<dyn backend::Backend>,
    pub(super) mock: Option<Arc<MockBackend>>,
}

#[napi]
impl VfioBackend {
    /// The kernel's VFIO at /dev/vfio (or `devDir`).
    #[napi(factory)]
    pub fn kernel(dev_dir: Option<String>) -> Self {
        let k = match dev_dir {
            Some(d) => KernelBackend::with_dev_dir(d),
            None => KernelBackend::new(),
        };
        Self { inner: Arc::new(k), mock: None }
    }

    /// A mock host built from `config` (see MockHostConfig).
    #[napi(factory)]
    pub fn mock(env: &Env, config: Option<MockHostConfig>) -> Result<Self> {
        let cfg = config_of(config).map_err(|e| js_err(env, e))?;
        let m = Arc::new(MockBackend::new(cfg));
        Ok(Self { inner: m.clone(), mock: Some(m) })
    }

    /// "kernel" or "mock".
    #[napi(getter, ts_return_type = "'kernel' | 'mock'")]
    pub fn kind(&self) -> String {
        self.inner.kind().to_string()
    }

    /// A type1 container holding `groups` (attached in order), its IOMMU
    /// set to `iommu` (default `VFIO_TYPE1v2_IOMMU`). The only way to get a
    /// type1 container: it owns its groups, so none can be dropped under it.
    #[napi]
    pub fn open_type1(&self, env: &Env, groups: Vec<u32>, iommu: Option<u32>) -> Result<Type1Container> {
        let t1 = crate::Type1Container::open(self.inner.clone(), &groups, iommu.unwrap_or(crate::uapi::VFIO_TYPE1V2_IOMMU))
            .map_err(|e| js_err(env, e))?;
        Ok(Type1Container::new(t1))
    }

    /// An sPAPR TCE container owning group `group`'s PE, its IOMMU set to
    /// `VFIO_SPAPR_TCE_v2_IOMMU` (v1 when `v2` is false); as `TceContainer.open`.
    #[napi]
    pub fn open_tce_container(&self, env: &Env, group: u32, v2: Option<bool>) -> Result<super::spapr::TceContainer> {
        super::spapr::TceContainer::open(env, self, group, v2)
    }

    /// The new process's side of a live update: reads the hand-over on the
    /// UNIX socket `socketFd`, adopts the descriptors, maps the guest memory
    /// and gives every mapping this process's address, all or nothing, then
    /// tells the old process. Resolves to what this process now owns.
    #[napi(ts_return_type = "Promise<TakenOver>")]
    pub fn take_over(&self, socket_fd: i32) -> AsyncTask<TakeOverTask> {
        AsyncTask::new(take_over_task(self.inner.clone(), socket_fd))
    }

    /// The new process's side of an iommufd live update (Linux 6.13): reads
    /// the hand-over `IommufdSpace.handOver` sends on the UNIX socket
    /// `socketFd`, takes the iommufd, its IOAS, the device cdevs, the guest
    /// memory (mapped here) and the eventfds, moves the pinned-page charge
    /// of every mapping to this process (IOMMU_IOAS_CHANGE_PROCESS, all or
    /// nothing), then tells the old process. Rejects (closing everything it
    /// received) when any step fails; the old process then keeps it all.
    #[napi(ts_return_type = "Promise<IommufdTakenOver>")]
    pub fn take_over_iommufd(&self, socket_fd: i32) -> AsyncTask<TakeOverIommufdTask> {
        AsyncTask::new(take_over_iommufd_task(self.inner.clone(), socket_fd))
    }

    /// Device cdevs `cdevs` (the N of /dev/vfio/devices/vfioN) bound to a
    /// new iommufd and attached to one IOAS: the iommufd way to hold
    /// devices for a guest (per device, not per group).
    #[napi]
    pub fn open_iommufd(&self, env: &Env, cdevs: Vec<u32>) -> Result<super::iommufd::IommufdSpace> {
        let s = crate::IommufdSpace::open(self.inner.clone(), &cdevs).map_err(|e| js_err(env, e))?;
        Ok(super::iommufd::IommufdSpace::new(s))
    }

    /// `VFIO_GROUP_GET_STATUS` of group `id`, on a group file opened and
    /// closed for the question.
    #[napi]
    pub fn group_status(&self, env: &Env, id: u32) -> Result<GroupStatusJs> {
        let s = crate::Group::open(self.inner.clone(), id).and_then(|g| g.status()).map_err(|e| js_err(env, e))?;
        Ok(GroupStatusJs { viable: s.viable, container_set: s.container_set, flags: s.flags })
    }

    /// `VFIO_CHECK_EXTENSION` on a fresh container: whether any IOMMU
    /// driver offers `extension` (an IOMMU type or feature number).
    #[napi]
    pub fn check_extension(&self, env: &Env, extension: u32) -> Result<bool> {
        crate::Container::open(self.inner.clone()).and_then(|c| c.check_extension(extension)).map_err(|e| js_err(env, e))
    }

    /// `VFIO_GET_API_VERSION` on a fresh container.
    #[napi]
    pub fn api_version(&self, env: &Env) -> Result<i32> {
        crate::Container::open(self.inner.clone()).and_then(|c| c.api_version()).map_err(|e| js_err(env, e))
    }

    /// Mock only: bind a device to `driver` (null unbinds), as sysfs would.
    #[napi]
    pub fn bind(&self, env: &Env, address: String, driver: Option<String>) -> Result<()> {
        let m = self.mock_only(env, "bind")?;
        m.bind(&address, driver.as_deref())
            .map_err(|e| js_err(env, crate::Error::new(e.0, "bind", format!("mock device {address}"))))
    }

    /// Mock only: how many ioctls the mock has served.
    #[napi]
    pub fn ioctl_count(&self, env: &Env) -> Result<f64> {
        Ok(self.mock_only(env, "ioctlCount")?.ioctl_count() as f64)
    }

    fn mock_only(&self, env: &Env, what: &'static str) -> Result<&Arc<MockBackend>> {
        self.mock.as_ref().ok_or_else(|| {
            js_err(env, crate::Error::new(libc::ENOTTY, what, "kernel backend").with_detail("only a mock host has this"))
        })
    }
}
