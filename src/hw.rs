//! What hardware the daemon runs on: the hwloc topology (NUMA nodes, CPUs) and whether the CUDA
//! libraries load. Binding to the GPU's NUMA node builds on this (`[numa]`, `[gpu]`).

use hwlocality::cpu::binding::CpuBindingFlags;
use hwlocality::object::types::ObjectType;
use hwlocality::Topology;

use crate::config::{GpuSelection, NumaBinding};

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub numa_nodes: u32,
    pub cpus: u32,
    /// The CPUs the process may run on, as a list ("0-15"); "" when hwloc cannot tell.
    pub cpuset: String,
    /// The NUMA node the pipeline is bound to; -1 while it is not bound (no GPU, one node,
    /// `numa.bind = "off"`, or GPUs on several nodes).
    pub numa_node: i32,
    /// "absent: …", "off", what was found, or once the embedder is built the GPUs in use.
    pub gpu: String,
    /// Device memory the model's weights take on the GPUs in use, and all in use there once
    /// loaded; 0 on the CPU.
    pub gpu_weight_bytes: u64,
    pub gpu_used_bytes: u64,
}

impl Summary {
    /// Takes in where the embedder landed: the GPUs, their memory, the pipeline's binding.
    pub fn placed(&mut self, selection: &crate::embed::Selection) {
        if !selection.gpus.is_empty() {
            self.gpu = selection.gpus.join("; ");
        }
        self.gpu_weight_bytes = selection.gpu_weight_bytes;
        self.gpu_used_bytes = selection.gpu_used_bytes;
        self.numa_node = selection.numa.node();
        if let crate::numa::Binding::Bound { cpuset, .. } = &selection.numa {
            self.cpuset = cpuset.clone();
        }
    }
}

/// Reads the topology and probes the CUDA libraries without touching a device. Never fails: a
/// missing piece is reported in the summary.
pub fn probe(gpu: GpuSelection, numa: NumaBinding) -> Summary {
    let (numa_nodes, cpus, cpuset) = match Topology::new() {
        Ok(t) => (
            t.objects_with_type(ObjectType::NUMANode).count() as u32,
            t.objects_with_type(ObjectType::PU).count() as u32,
            t.cpu_binding(CpuBindingFlags::PROCESS)
                .map(|set| crate::numa::cpu_list(&set))
                .unwrap_or_default(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "hwloc could not read the topology");
            (0, 0, String::new())
        }
    };
    let gpu = match gpu {
        GpuSelection::Off => "off".to_owned(),
        _ => cuda_libraries(),
    };
    if let NumaBinding::Node(n) = numa {
        if n >= numa_nodes.max(1) {
            tracing::warn!(
                node = n,
                numa_nodes,
                "numa.bind names a node this machine does not have"
            );
        }
    }
    Summary {
        numa_nodes,
        cpus,
        cpuset,
        numa_node: -1,
        gpu,
        gpu_weight_bytes: 0,
        gpu_used_bytes: 0,
    }
}

#[cfg(feature = "cuda")]
fn cuda_libraries() -> String {
    match crate::embed::cuda::library_presence() {
        (true, true, true) => "cuda libraries present".to_owned(),
        (driver, nvrtc, cublas) => format!("absent: driver={driver} nvrtc={nvrtc} cublas={cublas}"),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_libraries() -> String {
    "absent: built without the cuda feature".to_owned()
}
