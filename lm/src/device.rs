//! Choosing the backend at run time from a config string: `cpu` (burn's flex backend),
//! `wgpu` and `cuda:N` (when rco is built with those features).

use crate::LmError;

/// The environment variable that sets how many threads rco's own model computation uses.
pub const THREADS_VAR: &str = "RCO_THREADS";

/// Sets how many threads the CPU backend's kernels use (its matrix products and element-wise
/// work run on one process-wide thread pool); call it once, before any model runs. Without
/// it the pool has a thread per available core.
pub fn set_threads(threads: usize) -> Result<(), LmError> {
    if threads == 0 {
        return Err(LmError::Device(
            "the thread count must be at least 1".into(),
        ));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| LmError::Device(format!("setting {threads} threads: {e}")))
}

/// Runs `work` on a thread of the compute pool (the pool [`set_threads`] sizes), or right
/// here when this thread is one of them. The CPU backend splits each kernel across that
/// pool; called from any other thread, every kernel is handed to the pool while the caller
/// sleeps, and a forward pass is hundreds of small kernels. Running the whole pass on a pool
/// thread hands it over once: batch-8 decoding went from 295 to 390 tokens/s with SmolLM2
/// (benches/README.md).
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        work()
    } else {
        rayon::scope(|_| work())
    }
}

/// The CPU backend.
pub type Cpu = burn::backend::Flex;

/// Whether `B` is the CPU backend (the one whose products [`crate::quant`] replaces).
pub fn is_cpu<B: burn::prelude::Backend>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<Cpu>()
}

/// The most bytes one weight tensor may take on backend `B`, where the backend has a limit
/// ([`crate::token_table`] splits tables over it): wgpu binds a tensor as one storage
/// buffer, and 128 MiB is WebGPU's default binding limit and lavapipe's. `None` elsewhere.
pub fn weight_bytes_limit<B: burn::prelude::Backend>() -> Option<usize> {
    #[cfg(feature = "wgpu")]
    {
        use burn::backend::{Autodiff, Wgpu};
        use std::any::TypeId;
        let id = TypeId::of::<B>();
        if id == TypeId::of::<Wgpu>() || id == TypeId::of::<Autodiff<Wgpu>>() {
            return Some(128 << 20);
        }
    }
    None
}

/// A device named in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Wgpu,
    Cuda(usize),
}

impl DeviceSpec {
    pub fn parse(text: &str) -> Result<Self, LmError> {
        match text {
            "cpu" => Ok(DeviceSpec::Cpu),
            "wgpu" => Ok(DeviceSpec::Wgpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(index)) => Ok(DeviceSpec::Cuda(index)),
                _ => Err(LmError::Device(format!(
                    "unknown device `{other}` (expected cpu, wgpu or cuda:N)"
                ))),
            },
        }
    }

    /// Whether this build of rco has the backend for the device.
    pub fn compiled(self) -> Result<Self, LmError> {
        match self {
            DeviceSpec::Cpu => Ok(self),
            DeviceSpec::Wgpu if cfg!(feature = "wgpu") => Ok(self),
            DeviceSpec::Cuda(_) if cfg!(feature = "cuda") => Ok(self),
            DeviceSpec::Wgpu => Err(LmError::Device(
                "device `wgpu` needs rco built with `--features wgpu`".into(),
            )),
            DeviceSpec::Cuda(_) => Err(LmError::Device(
                "device `cuda:N` needs rco built with `--features cuda`".into(),
            )),
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Wgpu => write!(f, "wgpu"),
            DeviceSpec::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = LmError;
    fn from_str(text: &str) -> Result<Self, LmError> {
        DeviceSpec::parse(text)
    }
}

/// In config, a device is its name: `cpu`, `wgpu` or `cuda:N`; it is parsed once, when the
/// section is read, so a misspelt device is an error with its key.
impl serde::Serialize for DeviceSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        DeviceSpec::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for DeviceSpec {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DeviceSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(cpu|wgpu|cuda(:[0-9]+)?)$"
        })
    }
}

/// Calls `$body` with `B` bound to the backend of a [`DeviceSpec`] and `$device` to its device;
/// evaluates to `Err(LmError::Device(..).into())` for a backend this build lacks. Which
/// backends are compiled in is decided by this crate's `wgpu` and `cuda` features, wherever
/// the macro is expanded.
#[macro_export]
macro_rules! with_backend {
    ($spec:expr, |$B:ident, $device:ident| $body:expr) => {{
        match $spec {
            $crate::device::DeviceSpec::Cpu => {
                type $B = $crate::device::Cpu;
                let $device = ::core::default::Default::default();
                $body
            }
            $crate::device::DeviceSpec::Wgpu => $crate::__with_wgpu!(|$B, $device| $body),
            $crate::device::DeviceSpec::Cuda(_index) => {
                $crate::__with_cuda!(_index, |$B, $device| $body)
            }
        }
    }};
}

#[cfg(feature = "wgpu")]
#[doc(hidden)]
#[macro_export]
macro_rules! __with_wgpu {
    (|$B:ident, $device:ident| $body:expr) => {{
        type $B = $crate::burn::backend::Wgpu;
        let $device = $crate::burn::backend::wgpu::WgpuDevice::default();
        $body
    }};
}

#[cfg(not(feature = "wgpu"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __with_wgpu {
    (|$B:ident, $device:ident| $body:expr) => {
        Err(
            $crate::LmError::Device("device `wgpu` is not compiled into this build".to_string())
                .into(),
        )
    };
}

#[cfg(feature = "cuda")]
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cuda {
    ($index:ident, |$B:ident, $device:ident| $body:expr) => {{
        type $B = $crate::burn::backend::Cuda;
        let $device = $crate::burn::backend::cuda::CudaDevice::new($index);
        $body
    }};
}

#[cfg(not(feature = "cuda"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __with_cuda {
    ($index:ident, |$B:ident, $device:ident| $body:expr) => {
        Err($crate::LmError::Device(format!(
            "device `cuda:{}` is not compiled into this build",
            $index
        ))
        .into())
    };
}
