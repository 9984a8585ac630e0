//! Where a GPU sits in the machine: the CPUs and NUMA nodes closest to its PCI device, found in
//! the hwloc topology as the device's first non-I/O ancestor (a package, a die or a NUMA node's
//! parent). Binding the GPU's feeding threads there keeps their memory traffic off the
//! inter-socket link. The CUDA backend asks with the PCI bus id the driver reports
//! (`CU_DEVICE_ATTRIBUTE_PCI_*`); the logic is tested on real exported topologies
//! (`../shared/fixtures/hwloc/`), a DGX-2H among them.

use std::borrow::Borrow;
use std::path::Path;

use hwlocality::memory::nodeset::NodeSet;
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;
use hwlocality::object::TopologyObject;
use hwlocality::topology::builder::TypeFilter;
use hwlocality::Topology;

use crate::config::NumaBinding;

#[derive(Debug, thiserror::Error)]
pub enum NumaError {
    #[error("hwloc could not load the topology {what}: {reason}")]
    Topology { what: String, reason: String },
    #[error("PCI bus id {0:?}: expected DDDD:BB:DD.F (or BB:DD.F), in hex")]
    BadBusId(String),
    #[error(
        "no PCI device {0} in the topology (hwloc sees no I/O devices here, or the id is wrong)"
    )]
    NoDevice(String),
    #[error("PCI device {0} has no CPU-side ancestor with a CPU set in the topology")]
    NoAncestor(String),
}

/// The CPUs and NUMA nodes closest to one PCI device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    /// As hwloc prints it: `0000:34:00.0`.
    pub pci_bus_id: String,
    /// The closest CPUs, as a list (`0-23,48-71`).
    pub cpuset: String,
    /// OS indexes of the closest NUMA nodes (one on most machines).
    pub nodes: Vec<u32>,
}

fn topology_error(what: &str) -> impl Fn(String) -> NumaError + '_ {
    move |reason| NumaError::Topology {
        what: what.to_owned(),
        reason,
    }
}

/// The host's topology, with the PCI devices hwloc leaves out by default.
pub fn host_topology() -> Result<Topology, NumaError> {
    build(Topology::builder(), "of this host")
}

/// A topology exported with `lstopo --of xml`: another machine's, to check a placement on it.
pub fn topology_from_xml(path: &Path) -> Result<Topology, NumaError> {
    let what = format!("from {}", path.display());
    // hwlocality treats any error but EINVAL from hwloc as unreachable, so a missing file is
    // caught here rather than there.
    if !path.is_file() {
        return Err(topology_error(&what)("no such file".into()));
    }
    let builder = Topology::builder()
        .from_xml_file(path)
        .map_err(|e| topology_error(&what)(e.to_string()))?;
    build(builder, &what)
}

fn build(
    builder: hwlocality::topology::builder::TopologyBuilder,
    what: &str,
) -> Result<Topology, NumaError> {
    builder
        .with_io_type_filter(TypeFilter::KeepImportant)
        .map_err(|e| topology_error(what)(e.to_string()))?
        .build()
        .map_err(|e| topology_error(what)(e.to_string()))
}

/// A CPU set as hwloc lists it (`0-23,48-71`), without the type's name around it.
pub fn cpu_list(set: &hwlocality::cpu::cpuset::CpuSet) -> String {
    let bitmap: &hwlocality::bitmap::Bitmap = set.borrow();
    bitmap.to_string()
}

fn bus_id_of(device: &TopologyObject) -> Option<String> {
    match device.attributes() {
        Some(ObjectAttributes::PCIDevice(pci)) => Some(format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            pci.domain(),
            pci.bus_id(),
            pci.bus_device(),
            pci.function()
        )),
        _ => None,
    }
}

/// The PCI device `pci_bus_id` and its first non-I/O ancestor that has a CPU set: the part of
/// the machine closest to it.
fn closest_object<'t>(
    topology: &'t Topology,
    pci_bus_id: &str,
) -> Result<(&'t TopologyObject, &'t TopologyObject), NumaError> {
    let device = topology
        .pci_device_by_bus_id_string(pci_bus_id)
        .map_err(|_| NumaError::BadBusId(pci_bus_id.to_owned()))?
        .ok_or_else(|| NumaError::NoDevice(pci_bus_id.to_owned()))?;
    let ancestor = device
        .first_non_io_ancestor()
        .filter(|a| a.cpuset().is_some())
        .ok_or_else(|| NumaError::NoAncestor(pci_bus_id.to_owned()))?;
    Ok((device, ancestor))
}

/// The OS indexes of the NUMA nodes inside `near`.
fn nodes_within(topology: &Topology, near: &NodeSet) -> Vec<u32> {
    topology
        .objects_with_type(ObjectType::NUMANode)
        .filter(|node| node.nodeset().is_some_and(|n| near.includes(&*n)))
        .filter_map(|node| node.os_index().map(|i| i as u32))
        .collect()
}

/// The CPUs and NUMA nodes closest to the PCI device `pci_bus_id`.
pub fn locality_of(topology: &Topology, pci_bus_id: &str) -> Result<Locality, NumaError> {
    let (device, ancestor) = closest_object(topology, pci_bus_id)?;
    let cpuset = ancestor.cpuset().map(|c| cpu_list(&c)).unwrap_or_default();
    let nodes = ancestor
        .nodeset()
        .map(|near| nodes_within(topology, &near))
        .unwrap_or_default();
    Ok(Locality {
        pci_bus_id: bus_id_of(device).unwrap_or_else(|| pci_bus_id.to_owned()),
        cpuset,
        nodes,
    })
}

/// Which threads a binding applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The calling thread: a GPU's embedder thread, next to its own GPU.
    Thread,
    /// Every thread of the process, and those it starts later: the pipeline, next to its GPU.
    Process,
}

/// What [`bind_near`] did, for the logs and `Stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    Bound {
        /// The NUMA nodes memory is bound to (their OS indexes).
        nodes: Vec<u32>,
        cpuset: String,
    },
    /// Not bound, and why (one line for the log).
    Unbound(String),
}

impl Binding {
    /// The single node bound to, or -1 (none, or several).
    pub fn node(&self) -> i32 {
        match self {
            Binding::Bound { nodes, .. } if nodes.len() == 1 => nodes[0] as i32,
            _ => -1,
        }
    }
}

/// Binds `scope` to the CPUs, and its memory to the NUMA nodes, that `mode` names: for
/// [`NumaBinding::Auto`] those closest to the PCI device `pci_bus_id` (the GPU), for
/// [`NumaBinding::Node`] that node. Never fails: a machine with one node, without hwloc's PCI
/// information, or refusing the binding is reported as [`Binding::Unbound`] with the reason.
pub fn bind_near(pci_bus_id: Option<&str>, mode: NumaBinding, scope: Scope) -> Binding {
    use hwlocality::cpu::binding::CpuBindingFlags;
    use hwlocality::memory::binding::{MemoryBindingFlags, MemoryBindingPolicy};

    if mode == NumaBinding::Off {
        return Binding::Unbound("numa.bind = \"off\"".into());
    }
    let topology = match host_topology() {
        Ok(t) => t,
        Err(e) => return Binding::Unbound(e.to_string()),
    };
    let numa_nodes = topology.objects_with_type(ObjectType::NUMANode).count();
    let target = match mode {
        NumaBinding::Node(n) => topology
            .objects_with_type(ObjectType::NUMANode)
            .find(|node| node.os_index() == Some(n as usize)),
        _ if numa_nodes <= 1 => {
            return Binding::Unbound(format!(
                "this machine has {numa_nodes} NUMA node: every CPU is as close to the GPU"
            ))
        }
        _ => {
            let Some(bus) = pci_bus_id else {
                return Binding::Unbound(
                    "no GPU in use: numa.bind = \"auto\" binds nothing".into(),
                );
            };
            match closest_object(&topology, bus) {
                Ok((_, ancestor)) => Some(ancestor),
                Err(e) => {
                    return Binding::Unbound(format!(
                        "{e}; numa.bind = N binds to a node by number"
                    ))
                }
            }
        }
    };
    let Some(target) = target else {
        return Binding::Unbound(format!(
            "numa.bind = {mode:?}: this machine has no such node ({numa_nodes} nodes)"
        ));
    };
    let (Some(cpuset), Some(nodeset)) = (target.cpuset(), target.nodeset()) else {
        return Binding::Unbound("the GPU's closest object has no CPU or node set".into());
    };
    let (cpu_flags, memory_flags) = match scope {
        Scope::Thread => (CpuBindingFlags::THREAD, MemoryBindingFlags::THREAD),
        Scope::Process => (CpuBindingFlags::PROCESS, MemoryBindingFlags::PROCESS),
    };
    if let Err(e) = topology.bind_cpu(&*cpuset, cpu_flags) {
        return Binding::Unbound(format!(
            "binding to CPUs {} was refused: {e}",
            cpu_list(&cpuset)
        ));
    }
    let nodes = nodes_within(&topology, &nodeset);
    if let Err(e) = topology.bind_memory(&*nodeset, MemoryBindingPolicy::Bind, memory_flags) {
        tracing::warn!(error = %e, nodes = ?nodes, "memory binding refused; CPUs are bound");
    }
    Binding::Bound {
        nodes,
        cpuset: cpu_list(&cpuset),
    }
}

/// The PCI bus ids of the NVIDIA display and 3D controllers in the topology, in bus order.
pub fn nvidia_gpus(topology: &Topology) -> Vec<String> {
    const NVIDIA: u16 = 0x10de;
    let mut ids: Vec<String> = topology
        .pci_devices()
        .filter(|d| match d.attributes() {
            Some(ObjectAttributes::PCIDevice(pci)) => {
                pci.vendor_id() == NVIDIA && matches!(pci.class_id(), 0x0300 | 0x0302)
            }
            _ => false,
        })
        .filter_map(bus_id_of)
        .collect();
    ids.sort();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_says_why_it_did_nothing() {
        let off = bind_near(Some("0000:01:00.0"), NumaBinding::Off, Scope::Thread);
        assert_eq!(off, Binding::Unbound("numa.bind = \"off\"".into()));
        assert_eq!(off.node(), -1);
        // This machine has one node (or, elsewhere, no such GPU): nothing to bind either way.
        match bind_near(None, NumaBinding::Auto, Scope::Thread) {
            Binding::Unbound(why) => {
                assert!(why.contains("NUMA node") || why.contains("no GPU"), "{why}")
            }
            bound => panic!("bound without a GPU: {bound:?}"),
        }
        match bind_near(None, NumaBinding::Node(1023), Scope::Thread) {
            Binding::Unbound(why) => assert!(why.contains("no such node"), "{why}"),
            bound => panic!("bound to a node that does not exist: {bound:?}"),
        }
    }

    #[test]
    fn binding_to_node_zero_binds_this_thread_to_its_cpus() {
        // Every Linux machine has node 0; on this thread alone, the binding is harmless.
        let handle = std::thread::spawn(|| bind_near(None, NumaBinding::Node(0), Scope::Thread));
        match handle.join().unwrap() {
            Binding::Bound { nodes, cpuset } => {
                assert_eq!(nodes, [0]);
                assert!(!cpuset.is_empty());
            }
            Binding::Unbound(why) => panic!("node 0 not bound: {why}"),
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/hwloc")
            .join(name)
    }

    /// The DGX-2H export: GPUs nvml0–7 hang below package 0 (NUMA node 0, cpuset 0x3), nvml8–15
    /// below package 1 (node 1, cpuset 0x03000000), as the XML's nesting shows.
    #[test]
    fn each_dgx2_gpu_maps_to_its_own_sockets_node_and_cpus() {
        let topology = topology_from_xml(&fixture("nvidiaDGX2.xml")).unwrap();
        let gpus = nvidia_gpus(&topology);
        let socket0 = [
            "0000:34:00.0",
            "0000:36:00.0",
            "0000:39:00.0",
            "0000:3b:00.0",
            "0000:57:00.0",
            "0000:59:00.0",
            "0000:5c:00.0",
            "0000:5e:00.0",
        ];
        assert_eq!(gpus.len(), 16, "{gpus:?}");
        assert_eq!(&gpus[..8], &socket0);
        for gpu in &gpus {
            let near = locality_of(&topology, gpu).unwrap();
            let (node, cpus) = if socket0.contains(&gpu.as_str()) {
                (0, "0-1")
            } else {
                (1, "24-25")
            };
            assert_eq!(near.nodes, vec![node], "{gpu}");
            assert_eq!(near.cpuset, cpus, "{gpu}");
            assert_eq!(&near.pci_bus_id, gpu);
        }
        // The short form (domain 0) names the same device.
        assert_eq!(locality_of(&topology, "b7:00.0").unwrap().nodes, vec![1]);
    }

    #[test]
    fn other_real_topologies_and_bad_ids() {
        for name in [
            "96em64t-4n4d3ca2co-pci.xml",
            "32em64t-2n8c2t-pci-normalio.xml",
        ] {
            let topology = topology_from_xml(&fixture(name)).unwrap();
            for gpu in nvidia_gpus(&topology) {
                let near = locality_of(&topology, &gpu).unwrap();
                assert_eq!(near.nodes.len(), 1, "{name} {gpu}: {near:?}");
                assert!(!near.cpuset.is_empty(), "{name} {gpu}");
            }
        }
        let topology = topology_from_xml(&fixture("nvidiaDGX2.xml")).unwrap();
        assert!(matches!(
            locality_of(&topology, "not-a-bus-id"),
            Err(NumaError::BadBusId(_))
        ));
        assert!(matches!(
            locality_of(&topology, "0000:01:00.7"),
            Err(NumaError::NoDevice(_))
        ));
        let missing = topology_from_xml(Path::new("/nonexistent/topology.xml")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/topology.xml"),
            "{missing}"
        );
    }
}
