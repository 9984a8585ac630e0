//! `[numa]` (binding near the GPU) and `[gpu]` (which GPUs embed, and where the index is searched).
//! Whether the index and `detector.k` fit FAISS's GPU limits the detector checks itself
//! (`detect::check`).

use std::fmt::Display;

use serde::Deserialize;

use super::{quoted, ConfigError, Rules};

#[derive(Debug, Clone)]
pub struct NumaConfig {
    pub bind: NumaBinding,
}

#[derive(Debug, Clone)]
pub struct GpuConfig {
    pub device: GpuSelection,
    /// Several GPUs, one embedder thread each; empty = as `device` says.
    pub devices: Vec<u32>,
    /// Batches in flight per GPU, each on its own CUDA stream.
    pub streams: usize,
}

impl GpuConfig {
    /// The GPUs named explicitly (`devices`, or `device = N`); `None` for "auto" and "off".
    pub fn named_devices(&self) -> Option<Vec<u32>> {
        match self.device {
            GpuSelection::Device(n) => Some(vec![n]),
            _ if !self.devices.is_empty() => Some(self.devices.clone()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumaBinding {
    /// The node local to the GPU in use; no binding when there is no GPU.
    Auto,
    Off,
    Node(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuSelection {
    /// The GPU when the driver, NVRTC and cuBLAS load and a warm-up batch matches the CPU.
    Auto,
    Off,
    Device(u32),
}

/// Where the trained index is searched (`gpu.index`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexPlacement {
    /// On a GPU when this build has FAISS GPU support and the index fits its limits.
    Auto,
    /// On a GPU, or start-up stops.
    Gpu,
    #[default]
    Cpu,
    /// Every GPU use is off (`gpu.device = "off"`).
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GpuSearchConfig {
    pub placement: IndexPlacement,
    /// The CUDA device a mirror goes to: the first GPU named in `[gpu]`, else 0.
    pub device: u32,
    /// Scratch memory FAISS may hold on that GPU.
    pub temp_memory_bytes: usize,
}

/// `bind` is a string (`"auto"`, `"off"`) or a node number.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum NameOrIndex {
    Name(String),
    Index(i64),
}

impl Display for NameOrIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameOrIndex::Name(n) => write!(f, "{n:?}"),
            NameOrIndex::Index(i) => write!(f, "{i}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawNuma {
    pub bind: NameOrIndex,
}

impl Default for RawNuma {
    fn default() -> Self {
        RawNuma {
            bind: NameOrIndex::Name("auto".into()),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RawGpu {
    pub device: NameOrIndex,
    pub devices: Vec<i64>,
    pub streams: i64,
    pub index: String,
    pub index_temp_memory_mib: i64,
}

impl Default for RawGpu {
    fn default() -> Self {
        RawGpu {
            device: NameOrIndex::Name("auto".into()),
            devices: Vec::new(),
            streams: 2,
            index: "auto".into(),
            index_temp_memory_mib: 256,
        }
    }
}

impl RawNuma {
    pub(super) fn validate(&self, rules: &Rules) -> Result<NumaConfig, ConfigError> {
        let bind = match &self.bind {
            NameOrIndex::Name(n) if n == "auto" => NumaBinding::Auto,
            NameOrIndex::Name(n) if n == "off" => NumaBinding::Off,
            NameOrIndex::Index(i) => {
                NumaBinding::Node(rules.in_range("numa.bind", *i, 0, 1023)? as u32)
            }
            other => {
                return Err(rules.invalid(
                    "numa.bind",
                    other,
                    "must be \"auto\", \"off\" or a NUMA node number",
                ))
            }
        };

        Ok(NumaConfig { bind })
    }
}

impl RawGpu {
    /// The GPUs that embed, and where the trained index is searched.
    pub(super) fn validate(
        &self,
        rules: &Rules,
    ) -> Result<(GpuConfig, GpuSearchConfig), ConfigError> {
        let device = match &self.device {
            NameOrIndex::Name(n) if n == "auto" => GpuSelection::Auto,
            NameOrIndex::Name(n) if n == "off" => GpuSelection::Off,
            NameOrIndex::Index(i) => {
                GpuSelection::Device(rules.in_range("gpu.device", *i, 0, 63)? as u32)
            }
            other => {
                return Err(rules.invalid(
                    "gpu.device",
                    other,
                    "must be \"auto\", \"off\" or a CUDA device number",
                ))
            }
        };
        let mut devices = Vec::with_capacity(self.devices.len());
        for &d in &self.devices {
            let d = rules.in_range("gpu.devices", d, 0, 63)? as u32;
            if devices.contains(&d) {
                return Err(rules.invalid(
                    "gpu.devices",
                    &format!("{:?}", self.devices),
                    "names a device twice",
                ));
            }
            devices.push(d);
        }
        if !devices.is_empty() && device != GpuSelection::Auto {
            return Err(rules.invalid(
                "gpu.devices",
                &format!("{:?}", self.devices),
                "is set, so gpu.device must stay \"auto\": use one or the other",
            ));
        }
        let streams = rules.in_range("gpu.streams", self.streams, 1, 8)? as usize;
        let placement = match (self.index.as_str(), device) {
            ("gpu", GpuSelection::Off) => {
                return Err(rules.invalid(
                    "gpu.index",
                    &quoted(&self.index),
                    "needs a GPU, and gpu.device = \"off\"",
                ))
            }
            ("auto" | "cpu", GpuSelection::Off) => IndexPlacement::Off,
            ("auto", _) => IndexPlacement::Auto,
            ("gpu", _) => IndexPlacement::Gpu,
            ("cpu", _) => IndexPlacement::Cpu,
            (other, _) => {
                return Err(rules.invalid(
                    "gpu.index",
                    &quoted(other),
                    "must be \"auto\", \"gpu\" or \"cpu\"",
                ))
            }
        };
        let temp_memory_mib = rules.in_range(
            "gpu.index_temp_memory_mib",
            self.index_temp_memory_mib,
            16,
            65536,
        )? as usize;
        let gpu_search = GpuSearchConfig {
            placement,
            device: match device {
                GpuSelection::Device(n) => n,
                _ => devices.first().copied().unwrap_or(0),
            },
            temp_memory_bytes: temp_memory_mib << 20,
        };

        Ok((
            GpuConfig {
                device,
                devices,
                streams,
            },
            gpu_search,
        ))
    }
}
