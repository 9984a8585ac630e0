//! The baseline's own bookkeeping: each distinct text once, with how many events it stands for and
//! its vector. Ids are dense (0, 1, 2, … in the order texts first joined) and are the ids the
//! FAISS index and the audit database's `baseline` table use.
//!
//! The raw vectors are kept next to the index: candidates found by an approximate index are
//! re-scored exactly against them, a retrain needs them, and a snapshot saves them so a restart
//! does not re-embed the whole history.

use std::collections::HashMap;
use std::sync::Arc;

use super::slots::{SlotIndex, VariableSlots};
use super::DIM;

/// Vectors per storage chunk. A background retrain borrows the full chunks instead of copying
/// the whole history; only the last, partial chunk is copied if it grows meanwhile.
const CHUNK_ROWS: usize = 4096;

/// The first `rows` vectors of a baseline, shared with a background thread.
#[derive(Clone)]
pub struct SharedRows {
    chunks: Vec<Arc<Vec<f32>>>,
    rows: usize,
}

impl SharedRows {
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows in id order, chunk by chunk.
    pub fn slices(&self) -> impl Iterator<Item = &[f32]> {
        let mut left = self.rows * DIM;
        self.chunks.iter().map(move |c| {
            let take = left.min(c.len());
            left -= take;
            &c[..take]
        })
    }

    /// Every `step`-th row, copied: a training sample.
    pub fn sample(&self, step: usize) -> Vec<f32> {
        let step = step.max(1);
        let mut out = Vec::with_capacity(self.rows.div_ceil(step) * DIM);
        for row in (0..self.rows).step_by(step) {
            let chunk = &self.chunks[row / CHUNK_ROWS];
            let start = (row % CHUNK_ROWS) * DIM;
            out.extend_from_slice(&chunk[start..start + DIM]);
        }
        out
    }
}

/// One distinct text as the audit database's `baseline` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaselineRow {
    pub id: u64,
    pub text: String,
    pub count: u64,
}

#[derive(Debug, Default)]
pub struct Baseline {
    texts: Vec<String>,
    counts: Vec<u64>,
    chunks: Vec<Arc<Vec<f32>>>,
    ids_by_text: HashMap<String, u64>,
    /// Events the baseline stands for, repeats included.
    events: u64,
    slots: SlotIndex,
}

impl Baseline {
    /// Distinct texts.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn id_of(&self, text: &str) -> Option<u64> {
        self.ids_by_text.get(text).copied()
    }

    pub fn count(&self, id: u64) -> u64 {
        self.counts.get(id as usize).copied().unwrap_or(0)
    }

    pub fn text(&self, id: u64) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub fn vector(&self, id: u64) -> &[f32] {
        let id = id as usize;
        let start = (id % CHUNK_ROWS) * DIM;
        &self.chunks[id / CHUNK_ROWS][start..start + DIM]
    }

    /// The vectors as they stand now, without copying them.
    pub fn shared_rows(&self) -> SharedRows {
        SharedRows {
            chunks: self.chunks.clone(),
            rows: self.len(),
        }
    }

    /// Counts one more event of a text already in the baseline.
    pub fn repeat(&mut self, id: u64, weight: u64) {
        self.counts[id as usize] += weight;
        self.events += weight;
    }

    /// Adds a new distinct text and returns its id.
    pub fn insert(&mut self, text: &str, vector: &[f32], count: u64) -> u64 {
        debug_assert_eq!(vector.len(), DIM);
        let id = self.counts.len() as u64;
        self.texts.push(text.to_owned());
        self.counts.push(count);
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK_ROWS * DIM => {
                Arc::make_mut(last).extend_from_slice(vector)
            }
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK_ROWS * DIM);
                chunk.extend_from_slice(vector);
                self.chunks.push(Arc::new(chunk));
            }
        }
        self.ids_by_text.insert(text.to_owned(), id);
        self.slots.insert(text);
        self.events += count;
        id
    }

    /// Counts a text judged normal that did not join as a value of its template's slots (see
    /// [`SlotIndex::insert_normal`]); a baseline text was counted when it joined.
    pub fn count_normal(&mut self, text: &str) {
        if !self.ids_by_text.contains_key(text) {
            self.slots.insert_normal(text);
        }
    }

    /// How `text` differs from the baseline text `nearest`, when only in variable slots (see
    /// [`SlotIndex::variable_difference`]).
    pub fn variable_difference(
        &self,
        text: &str,
        nearest: u64,
        max_positions: usize,
        min_values: u32,
    ) -> Option<VariableSlots> {
        let near = self.text(nearest)?;
        self.slots
            .variable_difference(text, near, max_positions, min_values)
    }

    /// Where `text` is a new value in a variable slot of a known template (see
    /// [`SlotIndex::variable_position`]).
    pub fn variable_position(&self, text: &str, min_values: u32) -> Option<VariableSlots> {
        self.slots.variable_position(text, min_values)
    }

    /// The span of a few words in which `text` is a new value of a template the baseline holds
    /// many texts of (see [`SlotIndex::variable_span`]).
    pub fn variable_span(&self, text: &str, min_values: u32) -> Option<VariableSlots> {
        self.slots.variable_span(text, min_values)
    }

    /// Exact distance `‖a − b‖² / 2` between `query` and the vector of `id`.
    pub fn distance(&self, query: &[f32], id: u64) -> f32 {
        let v = self.vector(id);
        let squared: f32 = query.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum();
        squared / 2.0
    }

    pub fn texts(&self) -> &[String] {
        &self.texts
    }
}
