//! A group and the device fds it hands out.

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::container::Container;
use super::device::Device;
use super::error::js_err;

#[napi(object, js_name = "GroupStatus")]
pub struct GroupStatusJs {
    pub viable: bool,
    pub container_set: bool,
    pub flags: u32,
}

#[napi]
pub struct Group {
    pub(super) inner: crate::Group,
}

#[napi]
impl Group {
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// `VFIO_GROUP_GET_STATUS`.
    #[napi]
    pub fn status(&self, env: &Env) -> Result<GroupStatusJs> {
        let s = self.inner.status().map_err(|e| js_err(env, e))?;
        Ok(GroupStatusJs { viable: s.viable, container_set: s.container_set, flags: s.flags })
    }

    /// `VFIO_GROUP_SET_CONTAINER`.
    #[napi]
    pub fn set_container(&self, env: &Env, container: &Container) -> Result<()> {
        self.inner.set_container(&container.inner).map_err(|e| js_err(env, e))
    }

    /// `VFIO_GROUP_UNSET_CONTAINER`.
    #[napi]
    pub fn unset_container(&self, env: &Env) -> Result<()> {
        self.inner.unset_container().map_err(|e| js_err(env, e))
    }

    /// `VFIO_GROUP_GET_DEVICE_FD`.
    #[napi]
    pub fn device(&self, env: &Env, name: String) -> Result<Device> {
        Ok(Device { inner: self.inner.device(&name).map_err(|e| js_err(env, e))? })
    }
}
