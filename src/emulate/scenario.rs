//! A day on a small web host, compressed: services restarting, timers firing, operators logging
//! in over ssh, a link flapping — then a few faults. Deterministic for a given seed.

/// One signal to emit, as the real service would send it.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// `PropertiesChanged` on the unit object (Unit interface), then on the Service interface
    /// when `result` is set, as systemd sends them.
    Unit {
        unit: &'static str,
        active: &'static str,
        sub: &'static str,
        result: Option<&'static str>,
    },
    JobRemoved {
        id: u32,
        unit: &'static str,
        result: &'static str,
    },
    Device {
        index: u32,
        interface: &'static str,
        new: u32,
        old: u32,
        reason: u32,
    },
    NetworkState(u32),
    SessionNew {
        id: u32,
        user: &'static str,
        remote_host: &'static str,
    },
    SessionRemoved {
        id: u32,
    },
    PrepareForShutdown(bool),
}

/// A step of the replay: the signal, and whether it is an injected fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub signal: Signal,
    pub fault: Option<&'static str>,
}

const SERVICES: [&str; 8] = [
    "nginx.service",
    "php8.2-fpm.service",
    "redis-server.service",
    "postgresql.service",
    "cron.service",
    "rsyslog.service",
    "prometheus-node-exporter.service",
    "containerd.service",
];
const ONESHOTS: [&str; 5] = [
    "logrotate.service",
    "apt-daily.service",
    "man-db.service",
    "fstrim.service",
    "certbot.service",
];
/// Operators always come from their own workstation.
const OPERATORS: [(&str, &str); 4] = [
    ("alice", "10.0.4.21"),
    ("bob", "10.0.4.22"),
    ("carol", "10.0.7.5"),
    ("deploy", "10.0.9.10"),
];
const LINKS: [(u32, &str); 2] = [(2, "eth0"), (3, "eth1")];

/// NMDeviceState values used below.
const ACTIVATED: u32 = 100;
const DEACTIVATING: u32 = 110;
const DISCONNECTED: u32 = 30;
const FAILED: u32 = 120;
const ACTIVATION: [u32; 6] = [40, 50, 70, 80, 90, ACTIVATED];

/// xorshift64*: small, deterministic, good enough to vary a replay.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Builder {
    steps: Vec<Step>,
    job_id: u32,
    session_id: u32,
    open_sessions: Vec<u32>,
}

impl Builder {
    fn push(&mut self, signal: Signal) {
        self.steps.push(Step {
            signal,
            fault: None,
        });
    }

    fn fault(&mut self, what: &'static str, signals: Vec<Signal>) {
        for signal in signals {
            self.steps.push(Step {
                signal,
                fault: Some(what),
            });
        }
    }

    fn job(&mut self, unit: &'static str, result: &'static str) -> Signal {
        self.job_id += 1;
        Signal::JobRemoved {
            id: self.job_id,
            unit,
            result,
        }
    }

    fn restart(&mut self, unit: &'static str) {
        for (active, sub, result) in [
            ("deactivating", "stop-sigterm", None),
            ("inactive", "dead", Some("success")),
            ("activating", "start", None),
            ("active", "running", None),
        ] {
            self.push(Signal::Unit {
                unit,
                active,
                sub,
                result,
            });
        }
        let job = self.job(unit, "done");
        self.push(job);
    }

    fn oneshot(&mut self, unit: &'static str) {
        self.push(Signal::Unit {
            unit,
            active: "activating",
            sub: "start",
            result: None,
        });
        self.push(Signal::Unit {
            unit,
            active: "inactive",
            sub: "dead",
            result: Some("success"),
        });
        let job = self.job(unit, "done");
        self.push(job);
    }

    fn login(&mut self, user: &'static str, remote_host: &'static str) {
        self.session_id += 1;
        self.open_sessions.push(self.session_id);
        self.push(Signal::SessionNew {
            id: self.session_id,
            user,
            remote_host,
        });
    }

    fn logout(&mut self, rng: &mut Rng) {
        if self.open_sessions.is_empty() {
            return;
        }
        let id = self
            .open_sessions
            .remove(rng.below(self.open_sessions.len()));
        self.push(Signal::SessionRemoved { id });
    }

    fn link_flap(&mut self, index: u32, interface: &'static str) {
        let mut old = ACTIVATED;
        for (new, reason) in [(DEACTIVATING, 39), (DISCONNECTED, 39)] {
            self.push(Signal::Device {
                index,
                interface,
                new,
                old,
                reason,
            });
            old = new;
        }
        self.push(Signal::NetworkState(50));
        for new in ACTIVATION {
            self.push(Signal::Device {
                index,
                interface,
                new,
                old,
                reason: 0,
            });
            old = new;
        }
        self.push(Signal::NetworkState(70));
    }

    /// One thing that happens on a normal day.
    fn normal(&mut self, rng: &mut Rng) {
        match rng.below(10) {
            0..=2 => {
                let unit = SERVICES[rng.below(SERVICES.len())];
                self.restart(unit);
            }
            3..=5 => {
                let unit = ONESHOTS[rng.below(ONESHOTS.len())];
                self.oneshot(unit);
            }
            6 | 7 => {
                let (user, host) = OPERATORS[rng.below(OPERATORS.len())];
                self.login(user, host);
            }
            8 => self.logout(rng),
            _ => {
                let (index, interface) = LINKS[1];
                self.link_flap(index, interface);
            }
        }
    }
}

/// The learning phase (every normal pattern, then a random mix), then `normal_after` more normal
/// happenings with the faults spread through them.
pub fn generate(seed: u64, learning: usize, normal_after: usize) -> Vec<Step> {
    let mut rng = Rng(seed | 1);
    let mut b = Builder {
        steps: Vec::new(),
        job_id: 1000,
        session_id: 0,
        open_sessions: Vec::new(),
    };
    // Every normal pattern once, so the baseline has seen each before the faults come.
    for unit in SERVICES {
        b.restart(unit);
    }
    for unit in ONESHOTS {
        b.oneshot(unit);
    }
    for (user, host) in OPERATORS {
        b.login(user, host);
    }
    for _ in OPERATORS {
        b.logout(&mut rng);
    }
    for (index, interface) in LINKS {
        b.link_flap(index, interface);
    }
    for _ in 0..learning {
        b.normal(&mut rng);
    }

    let faults = faults(&mut b);
    let every = (normal_after / (faults.len() + 1)).max(1);
    let mut faults = faults.into_iter();
    for i in 0..normal_after {
        b.normal(&mut rng);
        if (i + 1) % every == 0 {
            if let Some((what, signals)) = faults.next() {
                b.fault(what, signals);
            }
        }
    }
    for (what, signals) in faults {
        b.fault(what, signals);
    }
    b.steps
}

type Fault = (&'static str, Vec<Signal>);

fn faults(b: &mut Builder) -> Vec<Fault> {
    let oom = |b: &mut Builder| {
        vec![
            Signal::Unit {
                unit: "postgresql.service",
                active: "failed",
                sub: "failed",
                result: Some("oom-kill"),
            },
            b.job("postgresql.service", "failed"),
        ]
    };
    let first_oom = oom(b);
    let nginx = vec![
        Signal::Unit {
            unit: "nginx.service",
            active: "failed",
            sub: "failed",
            result: Some("exit-code"),
        },
        b.job("nginx.service", "failed"),
    ];
    let mount = vec![b.job("srv-data.mount", "timeout")];
    b.session_id += 1;
    let root_login = vec![Signal::SessionNew {
        id: b.session_id,
        user: "root",
        remote_host: "203.0.113.66",
    }];
    let carrier = vec![
        Signal::Device {
            index: 2,
            interface: "eth0",
            new: FAILED,
            old: ACTIVATED,
            reason: 40,
        },
        Signal::NetworkState(20),
    ];
    let second_oom = oom(b);
    vec![
        ("postgresql killed by the OOM killer", first_oom),
        ("nginx exits with an error", nginx),
        ("a mount times out", mount),
        ("root logs in from an unknown host", root_login),
        ("eth0 loses carrier, the host goes offline", carrier),
        ("unplanned shutdown", vec![Signal::PrepareForShutdown(true)]),
        (
            "postgresql OOM again (a recurring fault keeps alerting)",
            second_oom,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_with_faults_after_learning() {
        let a = generate(7, 50, 100);
        assert_eq!(a, generate(7, 50, 100));
        assert_ne!(a, generate(8, 50, 100));
        let first_fault = a.iter().position(|s| s.fault.is_some()).unwrap();
        assert!(first_fault > 100, "faults come after the learning phase");
        let kinds: std::collections::BTreeSet<_> = a.iter().filter_map(|s| s.fault).collect();
        assert_eq!(kinds.len(), 7);
    }
}
