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

    /// `size` bytes of address space reserved without committing memory
    /// (MAP_NORESERVE): sparse guest RAM, populated as it is touched. A
    /// map pins it all the same (the mock and the kernel both need every
    /// page mapped).
    #[napi(factory)]
    pub fn reserve(env: &Env, size: BigInt) -> Result<Self> {
        let (_, len, lossless) = size.get_u64();
        if !lossless || len > isize::MAX as u64 {
            return Err(js_err(env, crate::Error::new(libc::EINVAL, "mmap", "host memory").with_detail(format!("size {size:?} is not a byte count"))));
        }
        Ok(Self { inner: Some(crate::HostMemory::reserve(len as usize).map_err(|e| js_err(env, e))?) })
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
    pub fn size(&self, env: &Env) -> Result<f64> {
        Ok(self.mem(env)?.len() as f64)
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
