//! A fleet's steady traffic for load tests: unit state changes, finished jobs and NetworkManager
//! device transitions in the proportions a busy host sends them, where nearly every text has been
//! seen before (a unit cycling through its states) and a set share names a unit never seen before
//! (a new transient job), which no cache can hold. Deterministic for a seed.
//!
//! Every [`Load`] event becomes exactly one audit record: a unit's next state always differs from
//! its last (systemd's renderer records a repeat as `SignalsUnchanged`, not as an event), and
//! NetworkManager devices always move to a new state.

use super::scenario::{Rng, Signal};

/// A unit's life as systemd reports it, one step per change; `failed` replaces `inactive` now
/// and then.
const PHASES: [(&str, &str, &str); 4] = [
    ("activating", "start", "success"),
    ("active", "running", "success"),
    ("deactivating", "stop-sigterm", "success"),
    ("inactive", "dead", "success"),
];
const FAILED: (&str, &str, &str) = ("failed", "failed", "exit-code");

const SERVICES: [&str; 30] = [
    "nginx.service",
    "postgresql.service",
    "redis-server.service",
    "containerd.service",
    "kubelet.service",
    "docker.service",
    "sshd.service",
    "cron.service",
    "rsyslog.service",
    "systemd-journald.service",
    "systemd-logind.service",
    "systemd-resolved.service",
    "systemd-timesyncd.service",
    "prometheus-node-exporter.service",
    "grafana-agent.service",
    "haproxy.service",
    "memcached.service",
    "rabbitmq-server.service",
    "php8.2-fpm.service",
    "logrotate.service",
    "apt-daily.service",
    "apt-daily-upgrade.service",
    "man-db.service",
    "fstrim.service",
    "certbot.service",
    "e2scrub_all.service",
    "systemd-tmpfiles-clean.service",
    "unattended-upgrades.service",
    "backup.service",
    "nfs-client.target",
];
/// Instances of templated workers: `app-worker@7.service` (not a volatile name: the instance is
/// part of what the unit is).
const WORKERS: usize = 90;
const INTERFACES: [&str; 5] = ["eth0", "eth1", "bond0", "wlan0", "tailscale0"];
/// NMDeviceState: a link going down and coming back up.
const DEVICE_CYCLE: [u32; 8] = [110, 30, 40, 50, 70, 80, 90, 100];

/// Shares of the event kinds, in ‰: unit changes, then jobs; the rest are device transitions.
const UNIT_PERMILLE: u64 = 750;
const JOB_PERMILLE: u64 = 150;
/// One unit stop in this many ends `failed`.
const FAILURE_ONE_IN: usize = 200;

/// One event of the load: the signal, and what it carries that the record keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadEvent {
    pub signal: Signal,
    /// The unit is one the fleet never ran before: its text is new.
    pub novel: bool,
}

pub struct Load {
    rng: Rng,
    /// Share of unit changes (0 to 1) that start a unit never seen before.
    novel_share: f64,
    units: Vec<(&'static str, usize)>,
    devices: [usize; INTERFACES.len()],
    next_job: u32,
    novel_units: u64,
}

impl Load {
    pub fn new(seed: u64, novel_share: f64) -> Load {
        let mut units: Vec<(&'static str, usize)> = SERVICES.iter().map(|s| (*s, 0)).collect();
        for i in 1..=WORKERS {
            // Built once per load generator, a few KiB: the signal type names units `&'static`.
            let name: &'static str = Box::leak(format!("app-worker@{i}.service").into_boxed_str());
            units.push((name, 0));
        }
        Load {
            rng: Rng(seed | 1),
            novel_share: novel_share.clamp(0.0, 1.0),
            units,
            devices: [0; INTERFACES.len()],
            next_job: 1,
            novel_units: 0,
        }
    }

    /// Distinct units the fleet cycles through (novel ones aside).
    pub fn fleet_units(&self) -> usize {
        self.units.len()
    }

    pub fn next_event(&mut self) -> LoadEvent {
        let kind = self.rng.next() % 1000;
        if kind < UNIT_PERMILLE {
            self.unit_change()
        } else if kind < UNIT_PERMILLE + JOB_PERMILLE {
            let unit = self.pick_unit();
            self.next_job = self.next_job.wrapping_add(1).max(1);
            LoadEvent {
                signal: Signal::JobRemoved {
                    id: self.next_job,
                    unit: self.units[unit].0,
                    result: "done",
                },
                novel: false,
            }
        } else {
            let device = self.rng.below(INTERFACES.len());
            let old = DEVICE_CYCLE[self.devices[device]];
            self.devices[device] = (self.devices[device] + 1) % DEVICE_CYCLE.len();
            let new = DEVICE_CYCLE[self.devices[device]];
            LoadEvent {
                signal: Signal::Device {
                    index: 2 + device as u32,
                    interface: INTERFACES[device],
                    new,
                    old,
                    reason: if new == 110 { 39 } else { 0 },
                },
                novel: false,
            }
        }
    }

    /// A few units change far more often than the rest, as on a real host.
    fn pick_unit(&mut self) -> usize {
        let r = (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((r * r) * self.units.len() as f64) as usize
    }

    fn unit_change(&mut self) -> LoadEvent {
        let r = (self.rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        if r < self.novel_share {
            self.novel_units += 1;
            // Letters, not digits: digit runs are scrubbed as volatile and would repeat.
            let name: &'static str = Box::leak(
                format!("ci-build-{}.service", letters(self.novel_units)).into_boxed_str(),
            );
            let (active, sub, result) = PHASES[0];
            return LoadEvent {
                signal: Signal::Unit {
                    unit: name,
                    active,
                    sub,
                    result: Some(result),
                },
                novel: true,
            };
        }
        let unit = self.pick_unit();
        let phase = (self.units[unit].1 + 1) % PHASES.len();
        self.units[unit].1 = phase;
        let (active, sub, result) = if phase == 3 && self.rng.below(FAILURE_ONE_IN) == 0 {
            FAILED
        } else {
            PHASES[phase]
        };
        LoadEvent {
            signal: Signal::Unit {
                unit: self.units[unit].0,
                active,
                sub,
                result: Some(result),
            },
            novel: false,
        }
    }
}

/// `n` in base 26 as lower-case letters: 1 → "b", 27 → "bb".
fn letters(mut n: u64) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b'a' + (n % 26) as u8);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII letters")
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    #[test]
    fn every_event_is_a_new_state_so_each_becomes_one_record() {
        let mut load = Load::new(7, 0.01);
        let mut last: HashMap<&str, (&str, &str, Option<&str>)> = HashMap::new();
        let mut devices: HashMap<u32, u32> = HashMap::new();
        let mut jobs = HashSet::new();
        for _ in 0..50_000 {
            match load.next_event().signal {
                Signal::Unit {
                    unit,
                    active,
                    sub,
                    result,
                } => {
                    let state = (active, sub, result);
                    assert_ne!(last.insert(unit, state), Some(state), "{unit} repeated");
                }
                Signal::JobRemoved { id, .. } => assert!(jobs.insert(id), "job {id} twice"),
                Signal::Device {
                    index, new, old, ..
                } => {
                    assert_ne!(new, old);
                    if let Some(prev) = devices.insert(index, new) {
                        assert_eq!(prev, old, "device {index} jumped");
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn proportions_and_novelty_are_as_set() {
        let mut load = Load::new(11, 0.05);
        let n = 100_000;
        let (mut units, mut jobs, mut devices, mut novel) = (0, 0, 0, 0);
        let mut names = HashSet::new();
        for _ in 0..n {
            let event = load.next_event();
            novel += usize::from(event.novel);
            match event.signal {
                Signal::Unit { unit, .. } => {
                    units += 1;
                    if event.novel {
                        assert!(names.insert(unit), "novel unit {unit} seen before");
                        assert!(!unit.chars().any(|c| c.is_ascii_digit()), "{unit}");
                    }
                }
                Signal::JobRemoved { .. } => jobs += 1,
                Signal::Device { .. } => devices += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        let share = |k: usize| k as f64 / n as f64;
        assert!((share(units) - 0.75).abs() < 0.01, "units {units}");
        assert!((share(jobs) - 0.15).abs() < 0.01, "jobs {jobs}");
        assert!((share(devices) - 0.10).abs() < 0.01, "devices {devices}");
        let novel_share = novel as f64 / units as f64;
        assert!((novel_share - 0.05).abs() < 0.005, "novel {novel_share}");
        assert_eq!(load.fleet_units(), SERVICES.len() + WORKERS);
    }

    #[test]
    fn the_same_seed_gives_the_same_load() {
        let (mut a, mut b) = (Load::new(3, 0.02), Load::new(3, 0.02));
        for _ in 0..1000 {
            assert_eq!(a.next_event(), b.next_event());
        }
        assert_eq!(letters(0), "a");
        assert_eq!(letters(27), "bb");
    }
}
