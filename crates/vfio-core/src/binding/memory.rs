//! Host memory for DMA.

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::error::js_err;

/// Page-aligned anonymous memory of this process with a stable address, to
/// map for DMA (`address`) and to read what a device wrote. Keep it alive
/// while a mapping refers to it; `free()` releases it at once.
#[napi]
pub struct HostMemory {
    pub(super) inner: Option<crate::HostMemory>,
}

#[napi]
impl HostMemory {
    /// `size` bytes, rounded up to the page size, zero-filled.
    #[napi(constructor)]
    pub fn new(env: &Env, size: u32) -> Result<Self> {
        Ok(Self { inner: Some(crate::HostMemory::new(size as usize).map_err(|e| js_err(env, e))?) })
    }

    fn mem(&self, env: &Env) -> Result<&crate::HostMemory> {
        self.inner.as_ref().ok_or_else(|| {
            js_err(env, crate::Error::new(libc::EBADF, "memory access", "host memory").with_detail("already freed"))
        })
    }

    /// The virtual address to map.
    #[napi(getter)]
    pub fn address(&self, env: &Env) -> Result<BigInt> {
        Ok(BigInt::from(self.mem(env)?.addr()))
    }

    #[napi(getter)]
    pub fn size(&self, env: &Env) -> Result<u32> {
        Ok(self.mem(env)?.len() as u32)
    }

    #[napi]
    pub fn read(&self, env: &Env, offset: u32, length: u32) -> Result<Buffer> {
        let mut out = vec![0u8; length as usize];
        self.mem(env)?.read(offset as usize, &mut out).map_err(|e| js_err(env, e))?;
        Ok(Buffer::from(out))
    }

    #[napi]
    pub fn write(&self, env: &Env, offset: u32, data: &[u8]) -> Result<()> {
        self.mem(env)?.write(offset as usize, data).map_err(|e| js_err(env, e))
    }

    /// Unmaps the memory now rather than at garbage collection.
    #[napi]
    pub fn free(&mut self) {
        self.inner = None;
    }
}
