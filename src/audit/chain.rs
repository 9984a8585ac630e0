//! The hash chain, apart from SQLite: `hash = SHA-256(prev_hash ‖ encode(record))`.
//!
//! Encoding version 1: one byte `0x01`, then each field as a 4-byte big-endian length followed by
//! its bytes, in this order: seq (u64 BE), ts_usec (u64 BE), kind, source, text, fields (the JSON
//! exactly as stored), score (f64 BE bits; zero length when absent), verdict, neighbours (JSON as
//! stored), model. Text fields are UTF-8. The genesis record's prev_hash is 32 zero bytes.

use sha2::{Digest, Sha256};

pub const ENCODING_VERSION: u8 = 1;
pub const GENESIS_PREV_HASH: [u8; 32] = [0u8; 32];

/// Every hashed field of a record, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    pub seq: u64,
    pub ts_usec: u64,
    pub kind: &'a str,
    pub source: &'a str,
    pub text: &'a str,
    pub fields: &'a str,
    pub score: Option<f64>,
    pub verdict: &'a str,
    pub neighbours: &'a str,
    pub model: &'a str,
}

pub fn record_hash(prev_hash: &[u8; 32], record: &RecordFields<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update([ENCODING_VERSION]);
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u32).to_be_bytes());
        h.update(bytes);
    };
    field(&record.seq.to_be_bytes());
    field(&record.ts_usec.to_be_bytes());
    field(record.kind.as_bytes());
    field(record.source.as_bytes());
    field(record.text.as_bytes());
    field(record.fields.as_bytes());
    match record.score {
        Some(s) => field(&s.to_bits().to_be_bytes()),
        None => field(&[]),
    }
    field(record.verdict.as_bytes());
    field(record.neighbours.as_bytes());
    field(record.model.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>() -> RecordFields<'a> {
        RecordFields {
            seq: 2,
            ts_usec: 1_700_000_000_000_000,
            kind: "event",
            source: "systemd",
            text: "systemd unit a.service ActiveState=failed",
            fields: "{}",
            score: Some(0.5),
            verdict: "anomaly",
            neighbours: "[]",
            model: "m",
        }
    }

    #[test]
    fn every_field_and_the_link_change_the_hash() {
        let base = record_hash(&GENESIS_PREV_HASH, &sample());
        assert_eq!(base, record_hash(&GENESIS_PREV_HASH, &sample()));
        assert_ne!(base, record_hash(&[1u8; 32], &sample()));
        let variants = [
            RecordFields { seq: 3, ..sample() },
            RecordFields {
                ts_usec: 1,
                ..sample()
            },
            RecordFields {
                kind: "gap",
                ..sample()
            },
            RecordFields {
                source: "login1",
                ..sample()
            },
            RecordFields {
                text: "systemd unit a.service ActiveState=active",
                ..sample()
            },
            RecordFields {
                fields: "{\"pid\":1}",
                ..sample()
            },
            RecordFields {
                score: None,
                ..sample()
            },
            RecordFields {
                verdict: "normal",
                ..sample()
            },
            RecordFields {
                neighbours: "[[1,0.0]]",
                ..sample()
            },
            RecordFields {
                model: "n",
                ..sample()
            },
        ];
        for v in variants {
            assert_ne!(base, record_hash(&GENESIS_PREV_HASH, &v), "{v:?}");
        }
        // Length prefixes keep field boundaries: moving a byte between fields changes the hash.
        let shifted = RecordFields {
            kind: "eventsystem",
            source: "d",
            ..sample()
        };
        let shifted2 = RecordFields {
            kind: "event",
            source: "systemd",
            ..sample()
        };
        assert_ne!(
            record_hash(&GENESIS_PREV_HASH, &shifted),
            record_hash(&GENESIS_PREV_HASH, &shifted2)
        );
    }
}
