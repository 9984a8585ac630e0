//! Every source against a real private dbus-daemon: a second connection takes each service's
//! well-known name *after* the daemon started (so appearance is picked up), serves the objects the
//! daemon asks about, and emits the signals with the exact signatures the real services use
//! (systemd's org.freedesktop.systemd1(5), NetworkManager's D-Bus API, logind's
//! org.freedesktop.login1(5), udisks2's ObjectManager). The records' texts and fields are asserted,
//! one source to a test. Then bad input, one kind to a test: counted and skipped, or bounded and
//! escaped, without stalling what follows.
//!
//! Each test runs its own daemon on its own private bus in a temporary directory, so the tests
//! share nothing and run in parallel.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{assert_chain_intact, read_rows, Row, RunningDaemon};
use serde_json::Value as Json;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};
use zbus::Connection;

struct Manager;

#[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
impl Manager {
    fn subscribe(&self) {}
}

struct Job;

#[zbus::interface(name = "org.freedesktop.systemd1.Job")]
impl Job {
    #[zbus(property)]
    fn job_type(&self) -> String {
        "restart".into()
    }
}

/// The type-specific interface of db.service, for the daemon's one lookup of its Result.
struct DbService;

#[zbus::interface(name = "org.freedesktop.systemd1.Service")]
impl DbService {
    #[zbus(property)]
    fn result(&self) -> String {
        "timeout".into()
    }
}

struct NmRoot {
    active: Vec<OwnedObjectPath>,
}

#[zbus::interface(name = "org.freedesktop.NetworkManager")]
impl NmRoot {
    #[zbus(property)]
    fn active_connections(&self) -> Vec<OwnedObjectPath> {
        self.active.clone()
    }
}

struct NmDevice;

#[zbus::interface(name = "org.freedesktop.NetworkManager.Device")]
impl NmDevice {
    #[zbus(property)]
    fn interface(&self) -> String {
        "eth0".into()
    }
}

struct NmActive;

#[zbus::interface(name = "org.freedesktop.NetworkManager.Connection.Active")]
impl NmActive {
    #[zbus(property)]
    fn id(&self) -> String {
        "Wired connection 1".into()
    }
    #[zbus(property, name = "Type")]
    fn kind(&self) -> String {
        "802-3-ethernet".into()
    }
    #[zbus(property)]
    fn devices(&self) -> Vec<OwnedObjectPath> {
        vec![OwnedObjectPath::try_from("/org/freedesktop/NetworkManager/Devices/3").unwrap()]
    }
}

struct LoginSession;

#[zbus::interface(name = "org.freedesktop.login1.Session")]
impl LoginSession {
    #[zbus(property)]
    fn name(&self) -> String {
        "alice".into()
    }
    #[zbus(property)]
    fn seat(&self) -> (String, OwnedObjectPath) {
        (
            "seat0".into(),
            OwnedObjectPath::try_from("/org/freedesktop/login1/seat/seat0").unwrap(),
        )
    }
    #[zbus(property)]
    fn class(&self) -> String {
        "user".into()
    }
    #[zbus(property, name = "Type")]
    fn kind(&self) -> String {
        "tty".into()
    }
    #[zbus(property)]
    fn service(&self) -> String {
        "login".into()
    }
    #[zbus(property)]
    fn remote_host(&self) -> String {
        String::new()
    }
}

struct LoginUser;

#[zbus::interface(name = "org.freedesktop.login1.User")]
impl LoginUser {
    #[zbus(property)]
    fn name(&self) -> String {
        "alice".into()
    }
}

const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const PROPS: &str = "org.freedesktop.DBus.Properties";

fn path(p: &str) -> ObjectPath<'_> {
    ObjectPath::try_from(p).unwrap()
}

/// A connection that owns every service's name and serves the objects asked about.
async fn services(address: &str) -> Connection {
    zbus::connection::Builder::address(address)
        .unwrap()
        .serve_at("/org/freedesktop/systemd1", Manager)
        .unwrap()
        .serve_at("/org/freedesktop/systemd1/job/7", Job)
        .unwrap()
        .serve_at("/org/freedesktop/systemd1/unit/db_2eservice", DbService)
        .unwrap()
        .serve_at(
            "/org/freedesktop/NetworkManager",
            NmRoot { active: Vec::new() },
        )
        .unwrap()
        .serve_at("/org/freedesktop/NetworkManager/Devices/3", NmDevice)
        .unwrap()
        .serve_at(
            "/org/freedesktop/NetworkManager/ActiveConnection/5",
            NmActive,
        )
        .unwrap()
        .serve_at("/org/freedesktop/login1/session/c7", LoginSession)
        .unwrap()
        .serve_at("/org/freedesktop/login1/user/_1000", LoginUser)
        .unwrap()
        .name("org.freedesktop.systemd1")
        .unwrap()
        .name("org.freedesktop.NetworkManager")
        .unwrap()
        .name("org.freedesktop.login1")
        .unwrap()
        .name("org.freedesktop.UDisks2")
        .unwrap()
        .build()
        .await
        .unwrap()
}

async fn emit<B>(conn: &Connection, path_: &str, iface: &str, member: &str, body: &B)
where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    conn.emit_signal(None::<&str>, path_, iface, member, body)
        .await
        .unwrap();
}

async fn unit_props(
    conn: &Connection,
    unit_path: &str,
    iface: &str,
    props: HashMap<&str, Value<'_>>,
) {
    emit(
        conn,
        unit_path,
        PROPS,
        "PropertiesChanged",
        &(iface, props, Vec::<&str>::new()),
    )
    .await;
}

/// A daemon on a private bus under `dir`, with `extra_config`, and then the services appearing
/// after it subscribed; returns it and the connection that owns the services' names.
async fn daemon_then_services(dir: &Path, extra_config: &str) -> (RunningDaemon, Connection) {
    let daemon = RunningDaemon::start(dir, extra_config).await;
    let svc = services(daemon.bus.address()).await;
    daemon
        .wait_for("sources to see their services", |_| true)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    (daemon, svc)
}

/// Waits until `events` events are received and committed (after the genesis and start records);
/// returns the stats.
async fn wait_for_events(daemon: &RunningDaemon, events: u64) -> HashMap<String, u64> {
    daemon
        .wait_for("every event recorded", |s| {
            s.get("EventsReceived") >= Some(&events) && s.get("HeadSeq") >= Some(&(events + 2))
        })
        .await
}

/// Nothing malformed or forged, and `unchanged` signals that repeated a known state.
#[track_caller]
fn assert_well_formed(stats: &HashMap<String, u64>, unchanged: u64) {
    assert_eq!(stats["SignalsUnchanged"], unchanged, "{stats:?}");
    assert_eq!(stats["SignalsMalformed"], 0, "{stats:?}");
    assert_eq!(stats["EventsForged"], 0, "{stats:?}");
}

/// Bad input's counters: `malformed` signals of the wrong shape, `oversized` ones too big.
#[track_caller]
fn assert_skipped(stats: &HashMap<String, u64>, malformed: u64, oversized: u64) {
    assert_eq!(stats["SignalsMalformed"], malformed, "{stats:?}");
    assert_eq!(stats["SignalsOversized"], oversized, "{stats:?}");
}

/// Stops the daemon (it drains first) and returns its records, whose chain must be intact.
async fn stop_and_read(daemon: RunningDaemon) -> Vec<Row> {
    let db = daemon.db();
    daemon.stop().await;
    let rows = read_rows(&db);
    assert_chain_intact(&rows);
    rows
}

/// The records of kind `event`.
fn events_of(rows: &[Row]) -> Vec<&Row> {
    rows.iter().filter(|r| r.kind == "event").collect()
}

/// A source test's ending: waits for its `events`, checks that no signal was malformed or forged
/// (and `unchanged` of them unchanged), stops the daemon and returns the rows it recorded.
async fn recorded_cleanly(daemon: RunningDaemon, events: u64, unchanged: u64) -> Vec<Row> {
    let stats = wait_for_events(&daemon, events).await;
    assert_well_formed(&stats, unchanged);
    stop_and_read(daemon).await
}

fn by_source(rows: &[Row]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for row in events_of(rows) {
        map.entry(row.source.clone())
            .or_default()
            .push(row.text.clone());
    }
    map
}

fn fields_of(rows: &[Row], text: &str) -> Json {
    let row = rows
        .iter()
        .find(|r| r.text == text)
        .unwrap_or_else(|| panic!("no record with text {text:?}"));
    serde_json::from_str(&row.fields).unwrap()
}

/// A custom source for the operator's own signals.
const BACKUP_CONFIG: &str =
    "[[sources.custom]]\nrule = \"type='signal',interface='org.example.Backup1'\"\n";

/// Bad input's daemon: signals over 64 KiB skipped, and a custom source for the noise.
const NOISE_CONFIG: &str = "[sources]\nmax_signal_bytes = 65536\n[[sources.custom]]\nrule = \"type='signal',interface='org.example.Noise1'\"\n";

/// systemd: a unit's change (its type interface first, for Result, then the Unit interface, for
/// its states, as systemd sends them), the same state again, a job, a transient unit, a failed
/// unit whose Result the daemon asks systemd for, a reload and the start-up's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_signals_become_records_with_their_volatile_values_in_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, svc) = daemon_then_services(dir.path(), "").await;

    let nginx = "/org/freedesktop/systemd1/unit/nginx_2eservice";
    unit_props(
        &svc,
        nginx,
        "org.freedesktop.systemd1.Service",
        HashMap::from([
            ("Result", Value::from("exit-code")),
            ("MainPID", Value::from(0u32)),
            ("ExecMainStatus", Value::from(1i32)),
        ]),
    )
    .await;
    let unit_state = |active: &'static str, sub: &'static str| {
        HashMap::from([
            ("ActiveState", Value::from(active)),
            ("SubState", Value::from(sub)),
            (
                "ActiveEnterTimestamp",
                Value::from(1_763_700_000_000_000u64),
            ),
            ("InvocationID", Value::from(vec![0xabu8; 16])),
            ("Job", Value::from((0u32, path("/")))),
        ])
    };
    unit_props(&svc, nginx, UNIT_IFACE, unit_state("failed", "failed")).await;
    // The same state again (a job came and went): counted, not recorded.
    unit_props(&svc, nginx, UNIT_IFACE, unit_state("failed", "failed")).await;
    emit(
        &svc,
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "JobNew",
        &(
            7u32,
            path("/org/freedesktop/systemd1/job/7"),
            "nginx.service",
        ),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "JobRemoved",
        &(
            7u32,
            path("/org/freedesktop/systemd1/job/7"),
            "nginx.service",
            "failed",
        ),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "UnitNew",
        &(
            "run-u42.service",
            path("/org/freedesktop/systemd1/unit/run_2du42_2eservice"),
        ),
    )
    .await;
    unit_props(
        &svc,
        "/org/freedesktop/systemd1/unit/run_2du42_2eservice",
        UNIT_IFACE,
        unit_state("active", "running"),
    )
    .await;
    // No Result seen for db.service: the daemon asks systemd for it.
    unit_props(
        &svc,
        "/org/freedesktop/systemd1/unit/db_2eservice",
        UNIT_IFACE,
        unit_state("failed", "failed"),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "Reloading",
        &(true,),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StartupFinished",
        &(
            0u64,
            0u64,
            1_200_000u64,
            800_000u64,
            4_000_000u64,
            6_000_000u64,
        ),
    )
    .await;

    let rows = recorded_cleanly(daemon, 8, 1).await;
    assert_eq!(
        by_source(&rows)["systemd"],
        [
            "systemd unit nginx.service ActiveState=failed SubState=failed Result=exit-code",
            "systemd job nginx.service new",
            "systemd job nginx.service result=failed",
            "systemd unit run-*.service loaded",
            "systemd unit run-*.service ActiveState=active SubState=running",
            "systemd unit db.service ActiveState=failed SubState=failed Result=timeout",
            "systemd manager reloading=start",
            "systemd manager startup-finished",
        ]
    );

    // Volatile values left the text but not the record.
    let nginx = fields_of(
        &rows,
        "systemd unit nginx.service ActiveState=failed SubState=failed Result=exit-code",
    );
    assert_eq!(nginx["unit"], "nginx.service");
    assert_eq!(nginx["ActiveEnterTimestamp"], 1_763_700_000_000_000u64);
    assert_eq!(
        nginx["InvocationID"],
        "hex:abababababababababababababababab"
    );
    let transient = fields_of(&rows, "systemd unit run-*.service loaded");
    assert_eq!(transient["unit"], "run-u42.service");
    let job = fields_of(&rows, "systemd job nginx.service new");
    assert_eq!(job["job_id"], 7);
    // The job's type is kept in the record, out of the text.
    assert_eq!(job["job_type"], "restart");
    let removed = fields_of(&rows, "systemd job nginx.service result=failed");
    assert_eq!(removed["job_type"], "restart");
}

/// NetworkManager: a device's state, the manager's state, connectivity, and an active connection
/// added (named from the objects the daemon asks about) and removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networkmanager_signals_become_records() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, svc) = daemon_then_services(dir.path(), "").await;

    emit(
        &svc,
        "/org/freedesktop/NetworkManager/Devices/3",
        "org.freedesktop.NetworkManager.Device",
        "StateChanged",
        &(100u32, 70u32, 0u32),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/NetworkManager",
        "org.freedesktop.NetworkManager",
        "StateChanged",
        &(70u32,),
    )
    .await;
    let active = vec![path("/org/freedesktop/NetworkManager/ActiveConnection/5")];
    emit(
        &svc,
        "/org/freedesktop/NetworkManager",
        PROPS,
        "PropertiesChanged",
        &(
            "org.freedesktop.NetworkManager",
            HashMap::from([
                ("Connectivity", Value::from(4u32)),
                ("ActiveConnections", Value::from(active)),
            ]),
            Vec::<&str>::new(),
        ),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/NetworkManager",
        PROPS,
        "PropertiesChanged",
        &(
            "org.freedesktop.NetworkManager",
            HashMap::from([("ActiveConnections", Value::from(Vec::<ObjectPath>::new()))]),
            Vec::<&str>::new(),
        ),
    )
    .await;

    let rows = recorded_cleanly(daemon, 5, 0).await;
    assert_eq!(
        by_source(&rows)["networkmanager"],
        [
            "networkmanager device eth0 state=activated old=ip-config reason=none",
            "networkmanager state=connected-global",
            "networkmanager connectivity=full",
            "networkmanager active-connection added id=Wired_connection_1 type=802-3-ethernet devices=eth0",
            "networkmanager active-connection removed id=Wired_connection_1 type=802-3-ethernet devices=eth0",
        ]
    );
}

/// logind: a session and its user (named from the objects the daemon asks about) coming and
/// going, and a suspend; the session's id kept in the fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logind_signals_become_records() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, svc) = daemon_then_services(dir.path(), "").await;

    let login = "org.freedesktop.login1.Manager";
    emit(
        &svc,
        "/org/freedesktop/login1",
        login,
        "SessionNew",
        &("c7", path("/org/freedesktop/login1/session/c7")),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/login1",
        login,
        "UserNew",
        &(1000u32, path("/org/freedesktop/login1/user/_1000")),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/login1",
        login,
        "PrepareForSleep",
        &(true,),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/login1",
        login,
        "SessionRemoved",
        &("c7", path("/org/freedesktop/login1/session/c7")),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/login1",
        login,
        "UserRemoved",
        &(1000u32, path("/org/freedesktop/login1/user/_1000")),
    )
    .await;

    let rows = recorded_cleanly(daemon, 5, 0).await;
    assert_eq!(
        by_source(&rows)["login1"],
        [
            "login1 session new user=alice seat=seat0 class=user type=tty service=login",
            "login1 user new name=alice",
            "login1 prepare-for-sleep start",
            "login1 session removed user=alice class=user",
            "login1 user removed name=alice",
        ]
    );
    let session = fields_of(
        &rows,
        "login1 session new user=alice seat=seat0 class=user type=tty service=login",
    );
    assert_eq!(session["session_id"], "c7");
}

/// udisks2: a block device with its filesystem added and removed, and a job whose volatile
/// object path leaves the text for the fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udisks2_signals_become_records() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, svc) = daemon_then_services(dir.path(), "").await;

    let om = "org.freedesktop.DBus.ObjectManager";
    let sdb1 = path("/org/freedesktop/UDisks2/block_devices/sdb1");
    let block: HashMap<&str, Value> = HashMap::from([
        ("Device", Value::from(b"/dev/sdb1\0".to_vec())),
        ("IdUsage", Value::from("filesystem")),
        ("IdType", Value::from("ext4")),
        ("Size", Value::from(512_000_000_000u64)),
    ]);
    let filesystem: HashMap<&str, Value> =
        HashMap::from([("MountPoints", Value::from(Vec::<Vec<u8>>::new()))]);
    let added: HashMap<&str, HashMap<&str, Value>> = HashMap::from([
        ("org.freedesktop.UDisks2.Block", block),
        ("org.freedesktop.UDisks2.Filesystem", filesystem),
        ("org.freedesktop.DBus.Properties", HashMap::new()),
    ]);
    emit(
        &svc,
        "/org/freedesktop/UDisks2",
        om,
        "InterfacesAdded",
        &(sdb1.clone(), added),
    )
    .await;
    let job: HashMap<&str, HashMap<&str, Value>> = HashMap::from([(
        "org.freedesktop.UDisks2.Job",
        HashMap::from([("Operation", Value::from("filesystem-mount"))]),
    )]);
    emit(
        &svc,
        "/org/freedesktop/UDisks2",
        om,
        "InterfacesAdded",
        &(path("/org/freedesktop/UDisks2/jobs/118"), job),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/UDisks2",
        om,
        "InterfacesRemoved",
        &(
            sdb1,
            vec![
                "org.freedesktop.UDisks2.Block",
                "org.freedesktop.UDisks2.Filesystem",
            ],
        ),
    )
    .await;

    let rows = recorded_cleanly(daemon, 3, 0).await;
    assert_eq!(
        by_source(&rows)["udisks2"],
        [
            "udisks2 added object=block_devices/sdb1 interfaces=Block,Filesystem Device=/dev/sdb1 IdUsage=filesystem IdType=ext4",
            "udisks2 added object=jobs/* interfaces=Job Operation=filesystem-mount",
            "udisks2 removed object=block_devices/sdb1 interfaces=Block,Filesystem Device=/dev/sdb1 IdUsage=filesystem IdType=ext4",
        ]
    );
    let udisks_job = fields_of(
        &rows,
        "udisks2 added object=jobs/* interfaces=Job Operation=filesystem-mount",
    );
    assert_eq!(udisks_job["object"], "/org/freedesktop/UDisks2/jobs/118");
}

/// A custom rule's signal, from a connection that owns no name at all: its arguments rendered,
/// and kept whole in the fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_rule_records_a_signal_from_any_sender() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _svc) = daemon_then_services(dir.path(), BACKUP_CONFIG).await;

    let other = anomalyd::bus::connect(&daemon.bus.target()).await.unwrap();
    let details: HashMap<&str, Value> = HashMap::from([
        ("Status", Value::from("ok")),
        ("DurationUSec", Value::from(1234u64)),
        ("Pid", Value::from(4242u32)),
    ]);
    emit(
        &other,
        "/org/example/Backup1",
        "org.example.Backup1",
        "Finished",
        &("nightly job done", 3u32, details),
    )
    .await;

    let rows = recorded_cleanly(daemon, 1, 0).await;
    assert_eq!(
        by_source(&rows)["custom"],
        ["custom org.example.Backup1.Finished path=/org/example/Backup1 arg0=nightly_job_done arg1=3 arg2.Status=ok"]
    );
    let custom = fields_of(
        &rows,
        "custom org.example.Backup1.Finished path=/org/example/Backup1 arg0=nightly_job_done arg1=3 arg2.Status=ok",
    );
    assert_eq!(custom["args"][2]["Pid"], 4242);
    assert_eq!(custom["args"][2]["DurationUSec"], 1234);
}

/// Wrong signatures, a wrong variant type and an unknown object path are counted and skipped, and
/// a good signal after all of them still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_of_the_wrong_shape_are_counted_and_skipped_without_stalling() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, svc) = daemon_then_services(dir.path(), NOISE_CONFIG).await;
    let manager = "org.freedesktop.systemd1.Manager";

    emit(
        &svc,
        "/org/freedesktop/systemd1",
        manager,
        "JobNew",
        &("7", "nginx.service"),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/systemd1",
        manager,
        "Reloading",
        &(1u32,),
    )
    .await;
    unit_props(
        &svc,
        "/org/freedesktop/systemd1/unit/bad_2",
        UNIT_IFACE,
        HashMap::from([("ActiveState", Value::from("failed"))]),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/NetworkManager",
        PROPS,
        "PropertiesChanged",
        &(
            "org.freedesktop.NetworkManager",
            HashMap::from([("Connectivity", Value::from("full"))]),
            Vec::<&str>::new(),
        ),
    )
    .await;
    emit(
        &svc,
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
        "SessionNew",
        &(7u32,),
    )
    .await;
    // And a good signal after all of it still gets through.
    emit(
        &svc,
        "/org/freedesktop/systemd1",
        manager,
        "Reloading",
        &(false,),
    )
    .await;

    let stats = daemon
        .wait_for("the good signal recorded", |s| {
            s.get("SignalsMalformed") >= Some(&5) && s.get("EventsReceived") >= Some(&1)
        })
        .await;
    assert_skipped(&stats, 5, 0);
    daemon
        .wait_for("1 event committed", |s| s.get("HeadSeq") >= Some(&3))
        .await;
    let rows = stop_and_read(daemon).await;
    let events = events_of(&rows);
    assert_eq!(events.len(), 1, "{events:#?}");
    let texts: Vec<&str> = events.iter().map(|r| r.text.as_str()).collect();
    assert!(
        texts.contains(&"systemd manager reloading=done"),
        "{texts:?}"
    );
}

/// Absurd sizes: a 1 MiB value is skipped and counted; a 40 KiB one is rendered, bounded (its
/// text cut, its field strings too), with its forged line escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_signal_is_skipped_and_a_long_value_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _svc) = daemon_then_services(dir.path(), NOISE_CONFIG).await;
    let noise = anomalyd::bus::connect(&daemon.bus.target()).await.unwrap();

    let huge = "x".repeat(1 << 20);
    emit(
        &noise,
        "/org/example/Noise1",
        "org.example.Noise1",
        "Said",
        &(huge.as_str(),),
    )
    .await;
    let big = format!(
        "{}\nsystemd unit sshd.service ActiveState=failed",
        "y".repeat(40_000)
    );
    emit(
        &noise,
        "/org/example/Noise1",
        "org.example.Noise1",
        "Said",
        &(big.as_str(),),
    )
    .await;

    let stats = daemon
        .wait_for("the long signal recorded", |s| {
            s.get("SignalsOversized") >= Some(&1) && s.get("EventsReceived") >= Some(&1)
        })
        .await;
    assert_skipped(&stats, 0, 1);
    daemon
        .wait_for("1 event committed", |s| s.get("HeadSeq") >= Some(&3))
        .await;
    let rows = stop_and_read(daemon).await;
    let events = events_of(&rows);
    assert_eq!(events.len(), 1, "{events:#?}");
    let said = events
        .iter()
        .find(|r| {
            r.text
                .starts_with("custom org.example.Noise1.Said path=/org/example/Noise1 arg0=yyy")
        })
        .unwrap();
    assert!(said.text.len() <= anomalyd::render::MAX_TEXT_BYTES);
    assert!(
        said.text.ends_with('…'),
        "long values are cut: {}",
        said.text
    );
    let fields: Json = serde_json::from_str(&said.fields).unwrap();
    let kept = fields["args"][0].as_str().unwrap();
    assert!(
        kept.starts_with("yyyy") && kept.contains("(+"),
        "field strings are bounded"
    );
}

/// A value with a newline and a `key=value` in it is escaped: it cannot forge a line of its own
/// or a pair of the record's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_cannot_forge_a_line_or_a_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _svc) = daemon_then_services(dir.path(), NOISE_CONFIG).await;
    let noise = anomalyd::bus::connect(&daemon.bus.target()).await.unwrap();

    let forging = "ok\nsystemd unit sshd.service ActiveState=failed";
    emit(
        &noise,
        "/org/example/Noise1",
        "org.example.Noise1",
        "Said",
        &(forging,),
    )
    .await;

    let stats = wait_for_events(&daemon, 1).await;
    assert_skipped(&stats, 0, 0);
    let rows = stop_and_read(daemon).await;
    let events = events_of(&rows);
    assert_eq!(events.len(), 1, "{events:#?}");
    let texts: Vec<&str> = events.iter().map(|r| r.text.as_str()).collect();
    assert!(
        texts.contains(&"custom org.example.Noise1.Said path=/org/example/Noise1 arg0=ok%0Asystemd_unit_sshd.service_ActiveState%3Dfailed"),
        "a value cannot forge a line or a pair: {texts:?}"
    );
}

/// Bytes that are not UTF-8, in a byte array, are recorded as hex.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_utf8_are_recorded_as_hex() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _svc) = daemon_then_services(dir.path(), NOISE_CONFIG).await;
    let noise = anomalyd::bus::connect(&daemon.bus.target()).await.unwrap();

    emit(
        &noise,
        "/org/example/Noise1",
        "org.example.Noise1",
        "Bytes",
        &(vec![0xffu8, 0xfe, b'a'],),
    )
    .await;

    let stats = wait_for_events(&daemon, 1).await;
    assert_skipped(&stats, 0, 0);
    let rows = stop_and_read(daemon).await;
    let events = events_of(&rows);
    assert_eq!(events.len(), 1, "{events:#?}");
    let bytes = events
        .iter()
        .find(|r| r.text.starts_with("custom org.example.Noise1.Bytes"))
        .unwrap();
    assert_eq!(
        bytes.text,
        "custom org.example.Noise1.Bytes path=/org/example/Noise1 arg0=hex:fffe61"
    );
}
