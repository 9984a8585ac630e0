//! Checkpoints: the chain's head `(seq, hash)` written outside the database, to the journal (a
//! structured entry with its own MESSAGE_ID) and to a checkpoint file, every N records or T seconds.
//! Whoever can rewrite the database cannot also take back what journald and the file already hold,
//! so `anomalyctl verify --checkpoints`/`--journal` catches a truncated or re-hashed tail.
//!
//! Reading them back, a journal entry counts only when journald's trusted fields attribute it to
//! the service ([`JournalTrust`]: `_SYSTEMD_UNIT=anomalyd.service`, `_UID` root's or the service
//! user's), since any local user can log an entry that looks like a checkpoint; the rest are
//! skipped and counted. One seq with two different hashes is reported as tampering.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::error;

pub use crate::journal::CHECKPOINT_MESSAGE_ID;

/// A head the chain must contain: the record `seq` with this `hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, hex::encode(self.hash))
    }
}

impl std::str::FromStr for Checkpoint {
    type Err = CheckpointError;

    /// `SEQ:HEX`, the form `anomalyctl head` prints and the checkpoint file holds.
    fn from_str(s: &str) -> Result<Checkpoint, CheckpointError> {
        let text = || s.to_owned();
        let (seq, hash) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| CheckpointError::NotSeqHex { text: text() })?;
        let seq: u64 = seq.parse().map_err(|_| CheckpointError::SeqNotNumber {
            text: text(),
            seq: seq.to_owned(),
        })?;
        let bytes = hex::decode(hash).map_err(|_| CheckpointError::HashNotHex { text: text() })?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| CheckpointError::HashNot32Bytes { text: text() })?;
        Ok(Checkpoint { seq, hash })
    }
}

/// The systemd unit the daemon runs as: journal checkpoints are believed only from it.
pub const SERVICE_UNIT: &str = "anomalyd.service";
/// The user the unit runs as (`User=` in `systemd/anomalyd.service`).
pub const SERVICE_USER: &str = "anomalyd";

/// Whose journal entries are believed. Only journald's trusted fields count, the ones no client
/// can set: `_SYSTEMD_UNIT` (from the sender's cgroup) and `_UID` (from the socket's
/// credentials). Anyone can log an entry with the checkpoint's `MESSAGE_ID`, `CHECKPOINT_SEQ` and
/// `CHECKPOINT_HASH` (`logger --journald`), but journald marks it with the sender's own uid and
/// unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalTrust {
    /// The `_SYSTEMD_UNIT` an entry must have.
    pub unit: String,
    /// The `_UID`s an entry may have.
    pub uids: Vec<u32>,
    /// Any `_UID` will do (the unit still must match): for a central journal of other hosts,
    /// whose service user has a uid of its own there, and where only root or the service itself
    /// could have logged from the service's cgroup.
    pub any_uid: bool,
}

impl JournalTrust {
    /// The daemon as installed: [`SERVICE_UNIT`], run as root or as [`SERVICE_USER`], whose uid
    /// is looked up in this machine's user database (when there is no such user, only root's
    /// entries are believed).
    pub fn service() -> JournalTrust {
        let mut uids = vec![0];
        uids.extend(uid_of(SERVICE_USER).filter(|&uid| uid != 0));
        JournalTrust {
            unit: SERVICE_UNIT.to_owned(),
            uids,
            any_uid: false,
        }
    }

    /// The service's entries in a central journal: by unit, whatever the uid (see
    /// [`JournalTrust::any_uid`]).
    pub fn service_anywhere() -> JournalTrust {
        JournalTrust {
            any_uid: true,
            ..JournalTrust::service()
        }
    }

    /// Whether journald attributes `entry` to the service.
    fn trusts(&self, entry: &serde_json::Value) -> bool {
        let unit = entry["_SYSTEMD_UNIT"].as_str();
        let uid = entry["_UID"].as_str().and_then(|u| u.parse::<u32>().ok());
        unit == Some(self.unit.as_str())
            && uid.is_some_and(|u| self.any_uid || self.uids.contains(&u))
    }
}

/// The uid of user `name` in the user database, or `None` when there is no such user.
fn uid_of(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `libc::passwd` is a plain C struct of pointers and integers, for which all-zero
    // bytes are a valid value; getpwnam_r overwrites it.
    let mut user: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: every pointer is valid for the call: `name` is a NUL-terminated string, `user` and
    // `found` are locals, `buffer` is writable for its stated length; the strings the entry points
    // into live in `buffer`, which outlives the only read (`pw_uid`, a plain integer).
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut user,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    (status == 0 && !found.is_null()).then_some(user.pw_uid)
}

/// Checkpoints read from text, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedCheckpoints {
    /// In the order read, each `(seq, hash)` once.
    pub checkpoints: Vec<Checkpoint>,
    /// Journal entries that carried a checkpoint but that journald does not attribute to the
    /// service (see [`JournalTrust`]): skipped, as anyone could have logged them.
    pub untrusted: usize,
    /// The text ended in a part of a `SEQ:HEX` line with no newline (a write cut short by a
    /// crash or a full disk): skipped, since every complete line before it still counts.
    pub torn: bool,
}

/// Why a checkpoint, or checkpoints read from text, could not be read. The first four are a
/// malformed `SEQ:HEX` ([`Checkpoint`]'s `FromStr`), each naming the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// No `:` between the seq and the hash.
    #[error("{text:?} is not SEQ:HEX")]
    NotSeqHex { text: String },
    /// The part before the `:` is not a record number (a u64).
    #[error("{text:?}: {seq:?} is not a record number")]
    SeqNotNumber { text: String, seq: String },
    /// The part after the `:` is not hex.
    #[error("{text:?}: the hash is not hex")]
    HashNotHex { text: String },
    /// The hash is hex, but not of a SHA-256 hash's 32 bytes.
    #[error("{text:?}: the hash is not 32 bytes (64 hex digits)")]
    HashNot32Bytes { text: String },
    /// A line is neither `SEQ:HEX` nor a journal JSON entry with a well-formed checkpoint.
    #[error("line {line}: {problem}")]
    Parse { line: usize, problem: String },
    /// One seq with two different hashes: the checkpoints were tampered with (the chain has one
    /// record per seq, so at most one of them is genuine).
    #[error(
        "checkpoint seq {seq} appears with two different hashes ({} and {}): the checkpoints were tampered with",
        hex::encode(first),
        hex::encode(second)
    )]
    Conflict {
        seq: u64,
        first: [u8; 32],
        second: [u8; 32],
    },
}

/// Why a checkpoint file could not be read; both name the file. Apart from [`CheckpointError`]
/// because an I/O error can be neither cloned nor compared, which that one's users rely on.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointFileError {
    /// The file cannot be read (missing, unreadable, not UTF-8).
    #[error("checkpoint file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Its text holds a malformed line or two hashes for one seq.
    #[error("checkpoint file {}: {source}", path.display())]
    Checkpoints {
        path: PathBuf,
        #[source]
        source: CheckpointError,
    },
}

/// Reads checkpoints from text: `SEQ:HEX` lines (the checkpoint file; `#` comments and blank
/// lines skipped), trusted as they are, or `journalctl -o json` lines (their
/// `CHECKPOINT_SEQ`/`CHECKPOINT_HASH`), kept only when `trust` attributes the entry to the
/// service and counted in [`ParsedCheckpoints::untrusted`] otherwise. An untrusted entry is never
/// an error, whatever it holds. Two different hashes for one seq are a
/// [`CheckpointError::Conflict`].
pub fn parse_checkpoints_trusted(
    text: &str,
    trust: &JournalTrust,
) -> Result<ParsedCheckpoints, CheckpointError> {
    let mut parsed = ParsedCheckpoints::default();
    let mut seen: std::collections::HashMap<u64, [u8; 32]> = std::collections::HashMap::new();
    // The last line, when the text does not end with a newline, may be a torn write.
    let unterminated_last =
        (!text.is_empty() && !text.ends_with('\n')).then(|| text.lines().count().saturating_sub(1));
    for (n, line) in text.lines().enumerate() {
        let parse_error = |problem: String| CheckpointError::Parse {
            line: n + 1,
            problem,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let checkpoint: Checkpoint = if line.starts_with('{') {
            let entry: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| parse_error(format!("not a journal JSON entry: {e}")))?;
            if entry.get("CHECKPOINT_SEQ").is_none() && entry.get("CHECKPOINT_HASH").is_none() {
                continue;
            }
            if !trust.trusts(&entry) {
                parsed.untrusted += 1;
                continue;
            }
            let (Some(seq), Some(hash)) = (
                entry["CHECKPOINT_SEQ"].as_str(),
                entry["CHECKPOINT_HASH"].as_str(),
            ) else {
                continue;
            };
            format!("{seq}:{hash}")
                .parse::<Checkpoint>()
                .map_err(|problem| parse_error(problem.to_string()))?
        } else {
            match line.parse::<Checkpoint>() {
                Ok(checkpoint) => checkpoint,
                Err(_) if unterminated_last == Some(n) => {
                    parsed.torn = true;
                    continue;
                }
                Err(problem) => return Err(parse_error(problem.to_string())),
            }
        };
        match seen.get(&checkpoint.seq) {
            Some(hash) if *hash == checkpoint.hash => {}
            Some(hash) => {
                return Err(CheckpointError::Conflict {
                    seq: checkpoint.seq,
                    first: *hash,
                    second: checkpoint.hash,
                })
            }
            None => {
                seen.insert(checkpoint.seq, checkpoint.hash);
                parsed.checkpoints.push(checkpoint);
            }
        }
    }
    Ok(parsed)
}

/// [`parse_checkpoints_trusted`] for the installed service ([`JournalTrust::service`]), without
/// the count of untrusted entries.
pub fn parse_checkpoints(text: &str) -> Result<Vec<Checkpoint>, CheckpointError> {
    parse_checkpoints_trusted(text, &JournalTrust::service()).map(|parsed| parsed.checkpoints)
}

/// Reads a checkpoint file (see [`parse_checkpoints_trusted`]); errors name the file.
pub fn read_checkpoint_file_trusted(
    path: &std::path::Path,
    trust: &JournalTrust,
) -> Result<ParsedCheckpoints, CheckpointFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| CheckpointFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_checkpoints_trusted(&text, trust).map_err(|source| CheckpointFileError::Checkpoints {
        path: path.to_owned(),
        source,
    })
}

/// Reads a checkpoint file (see [`parse_checkpoints`]); errors name the file.
pub fn read_checkpoint_file(
    path: &std::path::Path,
) -> Result<Vec<Checkpoint>, CheckpointFileError> {
    read_checkpoint_file_trusted(path, &JournalTrust::service()).map(|parsed| parsed.checkpoints)
}

/// When and where checkpoints go.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    pub every_records: u64,
    pub interval: Duration,
    pub file: Option<PathBuf>,
}

/// Owned by the audit thread with the writer; decides when a checkpoint is due and writes it.
pub struct Checkpointer {
    policy: CheckpointPolicy,
    last_seq: u64,
    last_at: Instant,
}

impl Checkpointer {
    pub fn new(policy: CheckpointPolicy, head_seq: u64) -> Checkpointer {
        Checkpointer {
            policy,
            last_seq: head_seq,
            last_at: Instant::now(),
        }
    }

    /// Writes a checkpoint if the head moved and enough records or time have passed.
    pub fn maybe(&mut self, head: Checkpoint) {
        let moved = head.seq > self.last_seq;
        let due = head.seq >= self.last_seq + self.policy.every_records
            || self.last_at.elapsed() >= self.policy.interval;
        if moved && due {
            self.write(head);
        }
    }

    /// Writes a checkpoint now (at shutdown) if the head moved since the last one.
    pub fn finish(&mut self, head: Checkpoint) {
        if head.seq > self.last_seq {
            self.write(head);
        }
    }

    fn write(&mut self, head: Checkpoint) {
        crate::journal::checkpoint(head.seq, &head.hash);
        if let Some(path) = &self.policy.file {
            if let Err(e) = append_line(path, &format!("{head}\n")) {
                error!(path = %path.display(), error = %e, "cannot write the audit checkpoint file");
            }
        }
        self.last_seq = head.seq;
        self.last_at = Instant::now();
    }
}

/// Appends `line` to the checkpoint file, durably: the data is synced, and when the file is new
/// its directory too (else a crash can lose the file's name with its first checkpoint). A torn
/// last line left by an earlier crash (no newline) is cut off first: it names no head, and left
/// in place it would become an unreadable line in the middle.
fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let existed = path.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    let length = file.metadata()?.len();
    if length > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(length - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            let mut text = Vec::new();
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut text)?;
            let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let tail = String::from_utf8_lossy(&text[whole..]);
            if tail.parse::<Checkpoint>().is_ok() {
                // Complete but for its newline: a checkpoint worth keeping.
                file.write_all(b"\n")?;
            } else {
                file.set_len(whole as u64)?;
            }
        }
    }
    file.write_all(line.as_bytes())?;
    file.sync_data()?;
    if !existed {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_checkpoint_starts_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoints");
        let first = Checkpoint {
            seq: 7,
            hash: [0x11; 32],
        };
        append_line(&path, &format!("{first}\n")).unwrap();
        // A crash in the middle of the next write.
        let mut torn = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        torn.write_all(b"12:ab").unwrap();
        drop(torn);
        let parsed = read_checkpoint_file_trusted(&path, &trust()).unwrap();
        assert_eq!(parsed.checkpoints, vec![first]);
        assert!(parsed.torn);
        // A last line complete but for its newline is kept: it ends the line first.
        let kept_dir = tempfile::tempdir().unwrap();
        let kept = kept_dir.path().join("checkpoints");
        std::fs::write(&kept, format!("{first}")).unwrap();
        let later = Checkpoint {
            seq: 9,
            hash: [0x33; 32],
        };
        append_line(&kept, &format!("{later}\n")).unwrap();
        assert_eq!(
            std::fs::read_to_string(&kept).unwrap(),
            format!("{first}\n{later}\n")
        );
        // The next write cuts the torn part off: the file is whole lines again.
        let next = Checkpoint {
            seq: 20,
            hash: [0x22; 32],
        };
        append_line(&path, &format!("{next}\n")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{first}\n{next}\n"));
        let parsed = parse_checkpoints_trusted(&text, &trust()).unwrap();
        assert_eq!(parsed.checkpoints, vec![first, next]);
        assert!(!parsed.torn);
    }

    /// The service as the tests see it: run as root or as uid 998.
    fn trust() -> JournalTrust {
        JournalTrust {
            unit: SERVICE_UNIT.to_owned(),
            uids: vec![0, 998],
            any_uid: false,
        }
    }

    /// A `journalctl -o json` line carrying a checkpoint, with journald's trusted fields `marks`.
    fn entry(seq: &str, hash: &str, marks: &[(&str, &str)]) -> String {
        let mut entry = serde_json::json!({
            "MESSAGE_ID": CHECKPOINT_MESSAGE_ID,
            "SYSLOG_IDENTIFIER": "anomalyd",
            "CHECKPOINT_SEQ": seq,
            "CHECKPOINT_HASH": hash,
        });
        for (key, value) in marks {
            entry[*key] = serde_json::json!(value);
        }
        entry.to_string()
    }

    const GENUINE: &[(&str, &str)] = &[("_UID", "998"), ("_SYSTEMD_UNIT", "anomalyd.service")];

    #[test]
    fn checkpoints_parse_from_the_file_and_the_journal() {
        let hash = "ab".repeat(32);
        let text = format!(
            "# anomalyd checkpoints\n12:{hash}\n\n{}\n",
            entry(
                "40",
                &hash,
                &[("_UID", "0"), ("_SYSTEMD_UNIT", "anomalyd.service")]
            )
        );
        let parsed = parse_checkpoints(&text).unwrap();
        assert_eq!(
            parsed,
            [
                Checkpoint {
                    seq: 12,
                    hash: [0xab; 32]
                },
                Checkpoint {
                    seq: 40,
                    hash: [0xab; 32]
                }
            ]
        );
        assert_eq!(parsed[0].to_string(), format!("12:{hash}"));
        // A complete bad line is an error; the same text without its newline is a torn write.
        assert!(parse_checkpoints("12:abc\n")
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        assert!(parse_checkpoints("x:00\n").is_err());
        assert_eq!(parse_checkpoints("12:abc"), Ok(Vec::new()));
    }

    #[test]
    fn the_service_is_its_unit_run_as_root_or_its_user() {
        let service = JournalTrust::service();
        assert_eq!(service.unit, "anomalyd.service");
        assert_eq!(service.uids[0], 0);
        assert!(service.uids.len() <= 2, "{service:?}");
        assert_eq!(uid_of("root"), Some(0));
        assert_eq!(uid_of("no-such-user-anomalyd-test"), None);
    }

    #[test]
    fn forged_journal_entries_are_skipped_and_counted() {
        let zero = "00".repeat(32);
        let real = "ab".repeat(32);
        let text = [
            // `logger --journald` as an ordinary user: its own uid, no unit.
            entry("999999999", &zero, &[("_UID", "1000")]),
            // The unit's name without its user, and its user from another unit.
            entry(
                "999999999",
                &zero,
                &[("_UID", "1000"), ("_SYSTEMD_UNIT", "anomalyd.service")],
            ),
            entry(
                "999999999",
                &zero,
                &[("_UID", "998"), ("_SYSTEMD_UNIT", "user@998.service")],
            ),
            // No trusted fields at all; a user unit named like the service.
            entry("40", &zero, &[]),
            entry(
                "40",
                &zero,
                &[
                    ("_UID", "1000"),
                    ("_SYSTEMD_UNIT", "user@1000.service"),
                    ("_SYSTEMD_USER_UNIT", "anomalyd.service"),
                ],
            ),
            // Garbage in a forged entry is no error either.
            entry("not a number", "zz", &[("_UID", "1000")]),
            // The genuine one.
            entry("40", &real, GENUINE),
            // An entry of the service that is no checkpoint is neither kept nor counted.
            serde_json::json!({"MESSAGE": "audit chain opened", "_UID": "998"}).to_string(),
        ]
        .join("\n");
        let parsed = parse_checkpoints_trusted(&text, &trust()).unwrap();
        assert_eq!(
            parsed,
            ParsedCheckpoints {
                checkpoints: vec![Checkpoint {
                    seq: 40,
                    hash: [0xab; 32]
                }],
                untrusted: 6,
                torn: false,
            }
        );
        // The installed service's trust never includes uid 1000's own entries.
        let forged = entry("999999999", &zero, &[("_UID", "1000")]);
        assert!(parse_checkpoints(&forged).unwrap().is_empty());
    }

    #[test]
    fn genuine_journal_entries_are_kept() {
        let hash = "cd".repeat(32);
        let text = [
            entry("20", &hash, GENUINE),
            entry(
                "40",
                &hash,
                &[("_UID", "0"), ("_SYSTEMD_UNIT", "anomalyd.service")],
            ),
        ]
        .join("\n");
        let parsed = parse_checkpoints_trusted(&text, &trust()).unwrap();
        assert_eq!(parsed.untrusted, 0);
        assert_eq!(
            parsed.checkpoints,
            [
                Checkpoint {
                    seq: 20,
                    hash: [0xcd; 32]
                },
                Checkpoint {
                    seq: 40,
                    hash: [0xcd; 32]
                }
            ]
        );
        // A malformed checkpoint in a genuine entry is an error, as in the file.
        let bad = entry("20", "cd", GENUINE);
        let error = parse_checkpoints_trusted(&bad, &trust()).unwrap_err();
        assert!(
            matches!(error, CheckpointError::Parse { line: 1, .. }),
            "{error}"
        );
    }

    #[test]
    fn two_hashes_for_one_seq_are_tampering() {
        let ab = "ab".repeat(32);
        let cd = "cd".repeat(32);
        let conflict = CheckpointError::Conflict {
            seq: 40,
            first: [0xab; 32],
            second: [0xcd; 32],
        };
        // Between two journal entries, and between the file and the journal.
        for text in [
            format!(
                "{}\n{}",
                entry("40", &ab, GENUINE),
                entry("40", &cd, GENUINE)
            ),
            format!("40:{ab}\n{}", entry("40", &cd, GENUINE)),
            format!("40:{ab}\n40:{cd}"),
        ] {
            assert_eq!(
                parse_checkpoints_trusted(&text, &trust()),
                Err(conflict.clone()),
                "{text}"
            );
        }
        let message = conflict.to_string();
        assert!(
            message.starts_with("checkpoint seq 40 appears with two different hashes"),
            "{message}"
        );
        assert!(message.contains("tampered"), "{message}");
        assert!(parse_checkpoints(&format!("40:{ab}\n40:{cd}"))
            .unwrap_err()
            .to_string()
            .contains("checkpoint seq 40 appears with two different hashes"));
        // The same checkpoint twice (the file and the journal agree) is kept once.
        let twice = format!("40:{ab}\n{}", entry("40", &ab, GENUINE));
        assert_eq!(
            parse_checkpoints_trusted(&twice, &trust())
                .unwrap()
                .checkpoints,
            [Checkpoint {
                seq: 40,
                hash: [0xab; 32]
            }]
        );
    }
}
