//! Property test of every renderer against generated bodies: arbitrary D-Bus values (nested
//! variants, dictionaries, structures, byte strings with invalid UTF-8, strings with line breaks,
//! `=`, bidi controls, 100 KiB runs) under the interfaces, members and paths each source
//! subscribes to. No body may panic a renderer, and every text it produces must be one bounded line
//! of single-space-separated tokens starting with the source's name. Lookups go to a real private
//! dbus-daemon where the services are absent, as on a host without them.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use proptest::prelude::*;
use zbus::zvariant::{ObjectPath, StructureBuilder, Value};
use zbus::Message;

use super::{login1, network_manager, systemd, udisks2, Context, Renderer};
use crate::event::Source;
use crate::render::MAX_TEXT_BYTES;

#[derive(Debug, Clone)]
enum Arg {
    U8(u8),
    Bool(bool),
    I32(i32),
    U32(u32),
    U64(u64),
    F64(f64),
    Str(String),
    Path(String),
    Bytes(Vec<u8>),
    Strs(Vec<String>),
    Paths(Vec<String>),
    Dict(Vec<(String, Arg)>),
    Nested(Vec<(String, Vec<(String, Arg)>)>),
    Struct(Vec<Arg>),
    Variant(Box<Arg>),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        3 => "[a-z0-9_@.-]{0,24}",
        2 => "[a-zA-Z =%\n\r\t]{0,40}",
        1 => Just("failed".to_owned()),
        1 => Just("x\u{202E}y\u{2028}z=1 ActiveState=failed\nnext".to_owned()),
        1 => (1usize..100_000).prop_map(|n| "v".repeat(n)),
    ]
    .prop_map(|s| s.replace('\0', ""))
}

fn object_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        "(/[A-Za-z0-9_]{1,8}){1,4}",
        Just("/org/freedesktop/NetworkManager/ActiveConnection/5".to_owned()),
        Just("/org/freedesktop/UDisks2/block_devices/sda1".to_owned()),
    ]
}

fn arg() -> impl Strategy<Value = Arg> {
    let leaf = prop_oneof![
        any::<u8>().prop_map(Arg::U8),
        any::<bool>().prop_map(Arg::Bool),
        any::<i32>().prop_map(Arg::I32),
        any::<u32>().prop_map(Arg::U32),
        any::<u64>().prop_map(Arg::U64),
        any::<f64>().prop_map(Arg::F64),
        text().prop_map(Arg::Str),
        object_path().prop_map(Arg::Path),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Arg::Bytes),
        proptest::collection::vec(text(), 0..5).prop_map(Arg::Strs),
        proptest::collection::vec(object_path(), 0..4).prop_map(Arg::Paths),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let key = prop_oneof![
            Just("ActiveState".to_owned()),
            Just("Result".to_owned()),
            Just("Connectivity".to_owned()),
            Just("ActiveConnections".to_owned()),
            Just("org.freedesktop.UDisks2.Block".to_owned()),
            Just("Device".to_owned()),
            text(),
        ];
        prop_oneof![
            proptest::collection::vec((key.clone(), inner.clone()), 0..6).prop_map(Arg::Dict),
            proptest::collection::vec(
                (
                    key.clone(),
                    proptest::collection::vec((key, inner.clone()), 0..4)
                ),
                0..3
            )
            .prop_map(Arg::Nested),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(Arg::Struct),
            inner.prop_map(|a| Arg::Variant(Box::new(a))),
        ]
    })
}

fn dict_value(entries: &[(String, Arg)]) -> Value<'static> {
    let map: HashMap<String, Value<'static>> = entries
        .iter()
        .map(|(k, v)| (k.clone(), Value::Value(Box::new(v.to_value()))))
        .collect();
    Value::from(map)
}

impl Arg {
    fn to_value(&self) -> Value<'static> {
        match self {
            Arg::U8(v) => Value::from(*v),
            Arg::Bool(v) => Value::from(*v),
            Arg::I32(v) => Value::from(*v),
            Arg::U32(v) => Value::from(*v),
            Arg::U64(v) => Value::from(*v),
            Arg::F64(v) => Value::from(*v),
            Arg::Str(s) => Value::from(s.clone()),
            Arg::Path(p) => Value::from(ObjectPath::try_from(p.clone()).expect("valid path")),
            Arg::Bytes(b) => Value::from(b.clone()),
            Arg::Strs(v) => Value::from(v.clone()),
            Arg::Paths(v) => Value::from(
                v.iter()
                    .map(|p| ObjectPath::try_from(p.clone()).expect("valid path"))
                    .collect::<Vec<_>>(),
            ),
            Arg::Dict(entries) => dict_value(entries),
            Arg::Nested(outer) => {
                // a{sa{sv}}, as udisks2's InterfacesAdded carries.
                let map: HashMap<String, HashMap<String, Value<'static>>> = outer
                    .iter()
                    .map(|(k, inner)| {
                        let props = inner
                            .iter()
                            .map(|(pk, v)| (pk.clone(), Value::Value(Box::new(v.to_value()))))
                            .collect();
                        (k.clone(), props)
                    })
                    .collect();
                Value::from(map)
            }
            Arg::Struct(fields) => {
                let mut b = StructureBuilder::new();
                for f in fields {
                    b = b.append_field(f.to_value());
                }
                Value::Structure(b.build().expect("a structure with fields"))
            }
            Arg::Variant(inner) => Value::Value(Box::new(inner.to_value())),
        }
    }
}

/// Arguments of the types the signal really has (values arbitrary), so the generator reaches the
/// renderers' deeper paths and not only their signature checks.
fn typed_args(member: &'static str) -> BoxedStrategy<Vec<Arg>> {
    let u32_ = || any::<u32>().prop_map(Arg::U32);
    let str_ = || text().prop_map(Arg::Str);
    let path_ = || object_path().prop_map(Arg::Path);
    let key = || {
        prop_oneof![
            Just("ActiveState".to_owned()),
            Just("SubState".to_owned()),
            Just("Result".to_owned()),
            Just("Connectivity".to_owned()),
            Just("ActiveConnections".to_owned()),
            Just("org.freedesktop.UDisks2.Block".to_owned()),
            Just("org.freedesktop.systemd1.Unit".to_owned()),
            Just("Device".to_owned()),
            text(),
        ]
    };
    let props = proptest::collection::vec((key(), arg()), 0..6).prop_map(Arg::Dict);
    match member {
        "PropertiesChanged" => (
            prop_oneof![
                Just("org.freedesktop.systemd1.Unit".to_owned()),
                Just("org.freedesktop.systemd1.Service".to_owned()),
                Just("org.freedesktop.NetworkManager".to_owned()),
                text(),
            ]
            .prop_map(Arg::Str),
            props,
            proptest::collection::vec(text(), 0..3).prop_map(Arg::Strs),
        )
            .prop_map(|(a, b, c)| vec![a, b, c])
            .boxed(),
        "JobNew" => (u32_(), path_(), str_())
            .prop_map(|(a, b, c)| vec![a, b, c])
            .boxed(),
        "JobRemoved" => (u32_(), path_(), str_(), str_())
            .prop_map(|(a, b, c, d)| vec![a, b, c, d])
            .boxed(),
        "UnitNew" | "SessionNew" => (str_(), path_()).prop_map(|(a, b)| vec![a, b]).boxed(),
        "UserRemoved" => (u32_(), path_()).prop_map(|(a, b)| vec![a, b]).boxed(),
        "StartupFinished" => proptest::collection::vec(any::<u64>().prop_map(Arg::U64), 6).boxed(),
        "StateChanged" => proptest::collection::vec(
            prop_oneof![any::<u32>(), 0u32..130].prop_map(Arg::U32),
            1..=3,
        )
        .boxed(),
        "PrepareForSleep" => any::<bool>().prop_map(|b| vec![Arg::Bool(b)]).boxed(),
        "InterfacesAdded" => (
            path_(),
            proptest::collection::vec(
                (key(), proptest::collection::vec((key(), arg()), 0..4)),
                0..3,
            )
            .prop_map(Arg::Nested),
        )
            .prop_map(|(a, b)| vec![a, b])
            .boxed(),
        "InterfacesRemoved" => (
            path_(),
            proptest::collection::vec(text(), 0..4).prop_map(Arg::Strs),
        )
            .prop_map(|(a, b)| vec![a, b])
            .boxed(),
        _ => proptest::collection::vec(arg(), 0..4).boxed(),
    }
}

fn case() -> impl Strategy<Value = (usize, Vec<Arg>)> {
    (0..SHAPES.len()).prop_flat_map(|shape| {
        let args = prop_oneof![
            1 => proptest::collection::vec(arg(), 0..4),
            2 => typed_args(SHAPES[shape].2),
        ];
        (Just(shape), args)
    })
}

/// (interface, member, path) triples each renderer subscribes to, and the renderer to use.
const SHAPES: &[(Source, &str, &str, &str)] = &[
    (
        Source::Systemd,
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        "/org/freedesktop/systemd1/unit/nginx_2eservice",
    ),
    (
        Source::Systemd,
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        "/org/freedesktop/systemd1/unit/bad_2",
    ),
    (
        Source::Systemd,
        "org.freedesktop.systemd1.Manager",
        "JobNew",
        "/org/freedesktop/systemd1",
    ),
    (
        Source::Systemd,
        "org.freedesktop.systemd1.Manager",
        "JobRemoved",
        "/org/freedesktop/systemd1",
    ),
    (
        Source::Systemd,
        "org.freedesktop.systemd1.Manager",
        "UnitNew",
        "/org/freedesktop/systemd1",
    ),
    (
        Source::Systemd,
        "org.freedesktop.systemd1.Manager",
        "StartupFinished",
        "/org/freedesktop/systemd1",
    ),
    (
        Source::NetworkManager,
        "org.freedesktop.NetworkManager.Device",
        "StateChanged",
        "/org/freedesktop/NetworkManager/Devices/1",
    ),
    (
        Source::NetworkManager,
        "org.freedesktop.NetworkManager",
        "StateChanged",
        "/org/freedesktop/NetworkManager",
    ),
    (
        Source::NetworkManager,
        "org.freedesktop.DBus.Properties",
        "PropertiesChanged",
        "/org/freedesktop/NetworkManager",
    ),
    (
        Source::Login1,
        "org.freedesktop.login1.Manager",
        "SessionNew",
        "/org/freedesktop/login1",
    ),
    (
        Source::Login1,
        "org.freedesktop.login1.Manager",
        "UserRemoved",
        "/org/freedesktop/login1",
    ),
    (
        Source::Login1,
        "org.freedesktop.login1.Manager",
        "PrepareForSleep",
        "/org/freedesktop/login1",
    ),
    (
        Source::Udisks2,
        "org.freedesktop.DBus.ObjectManager",
        "InterfacesAdded",
        "/org/freedesktop/UDisks2",
    ),
    (
        Source::Udisks2,
        "org.freedesktop.DBus.ObjectManager",
        "InterfacesRemoved",
        "/org/freedesktop/UDisks2",
    ),
    (
        Source::Custom,
        "org.example.Any1",
        "Anything",
        "/org/example/Any1",
    ),
];

struct Harness {
    runtime: tokio::runtime::Runtime,
    cx: Context,
    renderers: Mutex<HashMap<&'static str, Renderer>>,
    _bus: crate::bus::PrivateBus,
    _dir: tempfile::TempDir,
}

/// The harness's bus daemon and folder, for [`stop_harness_bus`].
static HARNESS_BUS: OnceLock<(i32, std::path::PathBuf)> = OnceLock::new();

/// Stops the harness's `dbus-daemon` and removes its folder when the test process exits: a
/// static is never dropped, and the daemon would outlive the tests (holding whatever file
/// descriptors it inherited, such as a build lock).
extern "C" fn stop_harness_bus() {
    if let Some((pid, dir)) = HARNESS_BUS.get() {
        // SAFETY: kill(2) on the pid of the child we started; it touches no memory of ours.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bus = crate::bus::PrivateBus::spawn(dir.path()).expect("dbus-daemon starts");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = runtime
            .block_on(crate::bus::connect(&bus.target()))
            .unwrap();
        let cx = Context::for_tests(conn);
        let renderers = HashMap::from([
            ("systemd", Renderer::Systemd(systemd::Renderer::default())),
            (
                "networkmanager",
                Renderer::NetworkManager(network_manager::Renderer::default()),
            ),
            ("login1", Renderer::Login1(login1::Renderer::default())),
            ("udisks2", Renderer::Udisks2(udisks2::Renderer::default())),
            ("custom", Renderer::Generic(Source::Custom)),
        ]);
        // Registered once the harness is whole: a panic above drops the bus, which stops it.
        let pid = i32::try_from(bus.pid()).expect("a pid fits in pid_t");
        if HARNESS_BUS.set((pid, dir.path().to_owned())).is_ok() {
            // SAFETY: registers a plain function without arguments; it only reads a static
            // that is set before, and calls kill(2) and remove_dir_all.
            let registered = unsafe { libc::atexit(stop_harness_bus) };
            assert_eq!(registered, 0, "atexit registers the bus's stop");
        }
        Harness {
            runtime,
            cx,
            renderers: Mutex::new(renderers),
            _bus: bus,
            _dir: dir,
        }
    })
}

/// Signals rendered to nothing, to events, and refused as malformed; the test asserts each kind
/// was reached, so the generator keeps meeting every path.
static OUTCOMES: [std::sync::atomic::AtomicU64; 3] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 3];

fn assert_canonical(source: Source, text: &str) {
    assert!(text.starts_with(source.as_str()), "{text:?}");
    assert!(
        text.len() <= MAX_TEXT_BYTES + " …".len(),
        "{} bytes",
        text.len()
    );
    assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
    assert!(text.split(' ').all(|t| !t.is_empty()), "{text:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12_000, failure_persistence: None, ..ProptestConfig::default() })]

    fn no_body_panics_a_renderer_or_escapes_its_token((shape, args) in case()) {
        let (source, interface, member, path) = SHAPES[shape];
        let mut body = StructureBuilder::new();
        for a in &args {
            body = body.append_field(a.to_value());
        }
        let builder = Message::signal(path, interface, member)
            .unwrap()
            .sender(":1.42")
            .unwrap();
        let built = if args.is_empty() {
            builder.build(&())
        } else {
            builder.build(&body.build().unwrap())
        };
        // A body D-Bus itself cannot carry (too deep, too large) is not a renderer's problem.
        prop_assume!(built.is_ok());
        let msg = built.unwrap();
        let h = harness();
        let mut renderers = h.renderers.lock().unwrap();
        let renderer = renderers.get_mut(source.as_str()).unwrap();
        let rendered = h.runtime.block_on(renderer.render(&msg, &h.cx));
        OUTCOMES[match &rendered { Ok(e) if e.is_empty() => 0, Ok(_) => 1, Err(_) => 2 }]
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(events) = rendered {
            for event in events {
                assert_canonical(source, &event.text);
                serde_json::to_string(&event.fields).unwrap();
            }
        }
    }
}

#[test]
fn renderers_survive_generated_bodies() {
    no_body_panics_a_renderer_or_escapes_its_token();
    let [ignored, rendered, malformed] = OUTCOMES
        .each_ref()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed));
    eprintln!("fuzz: {ignored} ignored, {rendered} rendered, {malformed} malformed");
    assert!(ignored + rendered + malformed >= 10_000);
    assert!(rendered >= 500 && malformed >= 500 && ignored >= 100);
}
