//! Checkpoints: the chain's head `(seq, hash)` written outside the database, to the journal (a
//! structured entry with its own MESSAGE_ID) and to a checkpoint file, every N records or T seconds.
//! Whoever can rewrite the database cannot also take back what journald and the file already hold,
//! so `anomalyctl verify --checkpoints`/`--journal` catches a truncated or re-hashed tail.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tracing::{error, info};

/// MESSAGE_ID of the journal entry that carries a checkpoint (`journalctl MESSAGE_ID=…`).
pub const CHECKPOINT_MESSAGE_ID: &str = "5b1c0e2a9f7d4e3c8a6b2d1f0e9c8b7a";

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
    type Err = String;

    /// `SEQ:HEX`, the form `anomalyctl head` prints and the checkpoint file holds.
    fn from_str(s: &str) -> Result<Checkpoint, String> {
        let (seq, hash) = s
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not SEQ:HEX"))?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| format!("{s:?}: {seq:?} is not a record number"))?;
        let bytes = hex::decode(hash).map_err(|_| format!("{s:?}: the hash is not hex"))?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("{s:?}: the hash is not 32 bytes (64 hex digits)"))?;
        Ok(Checkpoint { seq, hash })
    }
}

/// Reads checkpoints from text: `SEQ:HEX` lines (the checkpoint file; `#` comments and blank
/// lines skipped) or `journalctl -o json` lines (their `CHECKPOINT_SEQ`/`CHECKPOINT_HASH`).
pub fn parse_checkpoints(text: &str) -> Result<Vec<Checkpoint>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let checkpoint = if line.starts_with('{') {
            let entry: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("line {}: not a journal JSON entry: {e}", n + 1))?;
            let (Some(seq), Some(hash)) = (
                entry["CHECKPOINT_SEQ"].as_str(),
                entry["CHECKPOINT_HASH"].as_str(),
            ) else {
                continue;
            };
            format!("{seq}:{hash}").parse()
        } else {
            line.parse()
        };
        out.push(checkpoint.map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}

/// Reads a checkpoint file (see [`parse_checkpoints`]); errors name the file.
pub fn read_checkpoint_file(path: &std::path::Path) -> Result<Vec<Checkpoint>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("checkpoint file {}: {e}", path.display()))?;
    parse_checkpoints(&text).map_err(|e| format!("checkpoint file {}: {e}", path.display()))
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
        let hash = hex::encode(head.hash);
        info!(
            message_id = CHECKPOINT_MESSAGE_ID,
            checkpoint_seq = head.seq,
            checkpoint_hash = %hash,
            "audit checkpoint {head}"
        );
        if let Some(path) = &self.policy.file {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| {
                    f.write_all(format!("{head}\n").as_bytes())?;
                    f.sync_data()
                });
            if let Err(e) = appended {
                error!(path = %path.display(), error = %e, "cannot write the audit checkpoint file");
            }
        }
        self.last_seq = head.seq;
        self.last_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_parse_from_the_file_and_the_journal() {
        let hash = "ab".repeat(32);
        let text = format!(
            "# anomalyd checkpoints\n12:{hash}\n\n{{\"MESSAGE_ID\":\"{CHECKPOINT_MESSAGE_ID}\",\"CHECKPOINT_SEQ\":\"40\",\"CHECKPOINT_HASH\":\"{hash}\"}}\n"
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
        assert!(parse_checkpoints("12:abc").unwrap_err().contains("line 1"));
        assert!(parse_checkpoints("x:00").is_err());
    }
}
