//! Backends: the kernel's /dev/vfio or a mock host.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::container::Container;
use super::error::js_err;
use super::group::Group;
use super::mock_host::{config_of, MockHostConfig};
use crate::backend::{self, KernelBackend, MockBackend};

/// A VFIO system: the kernel's /dev/vfio, or an in-process mock host.
/// Containers and groups opened from one backend can be used together.
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
    #[napi(getter)]
    pub fn kind(&self) -> String {
        self.inner.kind().to_string()
    }

    #[napi]
    pub fn open_container(&self, env: &Env) -> Result<Container> {
        let c = crate::Container::open(self.inner.clone()).map_err(|e| js_err(env, e))?;
        Ok(Container { inner: c })
    }

    #[napi]
    pub fn open_group(&self, env: &Env, id: u32) -> Result<Group> {
        let g = crate::Group::open(self.inner.clone(), id).map_err(|e| js_err(env, e))?;
        Ok(Group { inner: g })
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
