//! GPU detection: NVML loaded at run time behind [`GpuProbe`], so tests use a fake, and the
//! mapping from the names NVML reports to the models orders ask for.

use leasemesh_protocol::{Gpu, GpuInterface};

/// A GPU as a driver library reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedGpu {
    pub index: u32,
    /// Stable device id ("GPU-8e4b…"); what Docker's device request names.
    pub uuid: String,
    /// Marketing name ("NVIDIA A100-SXM4-40GB").
    pub name: String,
    pub memory_bytes: u64,
}

/// Why GPU detection found nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    #[error("the NVIDIA management library (libnvidia-ml.so) is not present: {0}")]
    LibraryMissing(String),
    #[error("NVML failed: {0}")]
    Driver(String),
}

/// Something that lists the GPUs of this machine. [`NvmlProbe`] in production, a fake in tests.
pub trait GpuProbe {
    fn probe(&self) -> Result<Vec<DetectedGpu>, ProbeError>;
}

/// NVML, loaded at run time (dlopen): a machine without the library simply has no GPUs.
#[derive(Debug, Default, Clone, Copy)]
pub struct NvmlProbe;

impl GpuProbe for NvmlProbe {
    fn probe(&self) -> Result<Vec<DetectedGpu>, ProbeError> {
        use nvml_wrapper::error::NvmlError;
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| match e {
            NvmlError::LibloadingError(e) => ProbeError::LibraryMissing(e.to_string()),
            other => ProbeError::Driver(other.to_string()),
        })?;
        let count = nvml.device_count().map_err(|e| ProbeError::Driver(e.to_string()))?;
        let mut out = Vec::new();
        for index in 0..count {
            let dev = nvml.device_by_index(index).map_err(|e| ProbeError::Driver(e.to_string()))?;
            let name = dev.name().map_err(|e| ProbeError::Driver(e.to_string()))?;
            let uuid = dev.uuid().map_err(|e| ProbeError::Driver(e.to_string()))?;
            let memory_bytes =
                dev.memory_info().map_err(|e| ProbeError::Driver(e.to_string()))?.total;
            out.push(DetectedGpu { index, uuid, name, memory_bytes });
        }
        Ok(out)
    }
}

/// Turns a marketing name into the short lower-case model orders ask for:
/// "NVIDIA A100-SXM4-40GB" → "a100", "NVIDIA GeForce RTX 4090" → "rtx4090",
/// "NVIDIA H100 80GB HBM3" → "h100", "Tesla V100-SXM2-16GB" → "v100".
pub fn normalize_gpu_model(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let head = lower.split('-').next().unwrap_or("");
    head.split_whitespace()
        .filter(|t| !matches!(*t, "nvidia" | "geforce" | "tesla" | "quadro" | "pcie" | "sxm"))
        .filter(|t| !t.starts_with("hbm"))
        .filter(|t| !(t.ends_with("gb") && t.starts_with(|c: char| c.is_ascii_digit())))
        .collect::<Vec<_>>()
        .join("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._".contains(*c))
        .collect()
}

/// The GPUs NVML reports, as protocol GPUs. The interface is read from the name (SXM boards say
/// so; anything else is PCIe).
pub fn gpus_from_detected(detected: &[DetectedGpu]) -> Vec<Gpu> {
    let mut out: Vec<Gpu> = detected
        .iter()
        .map(|d| Gpu {
            id: d.uuid.clone(),
            vendor: "nvidia".into(),
            model: normalize_gpu_model(&d.name),
            vram_bytes: d.memory_bytes,
            interface: if d.name.to_ascii_lowercase().contains("sxm") {
                GpuInterface::Sxm
            } else {
                GpuInterface::Pcie
            },
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
