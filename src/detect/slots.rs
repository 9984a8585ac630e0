//! Template slots of the baseline's texts: for each text and each word position, how many
//! distinct baseline texts share every other word. A position many texts vary in is a *variable
//! slot* of that template (`systemd unit * loaded`, `*: Deactivated successfully.`); one that
//! only ever held one or two values is fixed (`session new user=carol … remote_host=*`).
//!
//! Why: an embedding puts `unit job-9.service loaded` about as far from `unit job-8.service
//! loaded` as a fault lies from its normal neighbour, but the first is a new value where the
//! traffic has shown many, the second a change where it has shown none. The detector judges an
//! event that differs from its nearest baseline text only in variable slots against a higher
//! threshold (`detector.variable_slot_factor`).
//!
//! The texts counted are the baseline's and, once each, those judged normal that did not join
//! (they scored above the join threshold but under their source's): after a daemon's warm-up the
//! first texts of a template are flagged against the floor and never join, so a template whose
//! values the traffic has since shown as normal would otherwise never be known as one. A text
//! that reports a failure is counted only when it joins (the detector's choice), and a text is
//! never counted as a value of its own template.
//!
//! Words are the text split on single spaces (every renderer writes single-spaced words and
//! `Key=value` pairs, and free-text lines are re-joined that way). Only the slot keys' 64-bit
//! hashes are kept, with a count.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// Texts longer than this many words are not indexed: their slot keys would cost memory for
/// the rare long line, and a long line that differs in one word is judged by distance alone.
pub const MAX_WORDS: usize = 32;

/// Slot keys kept. Beyond it no new key is added (about 64 MiB with the map's overhead); texts
/// whose keys are missing are judged by distance alone, the rule without the slot discount.
const MAX_KEYS: usize = 1 << 22;

/// Texts remembered as counted (8 bytes each). Beyond it a baseline text is still counted, and
/// a text judged normal that did not join is not.
const MAX_COUNTED: usize = 1 << 21;

/// What made an event's difference from its nearest text a variable one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableSlots {
    /// Word positions (0-based) where the event differs from its nearest text.
    pub positions: Vec<usize>,
    /// The fewest distinct baseline texts seen in any of those slots.
    pub values: u32,
}

#[derive(Debug, Default)]
pub struct SlotIndex {
    counts: HashMap<u64, u32>,
    /// Hashes of the texts counted, so that each is counted once, whether it was judged normal
    /// first and joined later or not.
    counted: HashSet<u64>,
}

fn text_hash(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn key(words: &[&str], position: usize) -> u64 {
    // A fixed hasher: keys must be the same in every process (they are rebuilt, never stored,
    // but a randomly seeded hasher would make tests irreproducible in their memory use).
    let mut h = std::collections::hash_map::DefaultHasher::new();
    words.len().hash(&mut h);
    position.hash(&mut h);
    for (i, w) in words.iter().enumerate() {
        if i != position {
            w.hash(&mut h);
        } else {
            "\u{0}*".hash(&mut h);
        }
    }
    h.finish()
}

impl SlotIndex {
    /// Counts a new distinct baseline text in each of its slots, unless it was counted when it
    /// was judged normal.
    pub fn insert(&mut self, text: &str) {
        let hash = text_hash(text);
        if self.counted.contains(&hash) {
            return;
        }
        if self.counted.len() < MAX_COUNTED {
            self.counted.insert(hash);
        }
        self.count_slots(text);
    }

    /// Counts a text judged normal that did not join, the first time only (and only while the
    /// set of counted texts has room, since beyond it a repeat could not be told apart).
    pub fn insert_normal(&mut self, text: &str) {
        let hash = text_hash(text);
        if self.counted.len() >= MAX_COUNTED || !self.counted.insert(hash) {
            return;
        }
        self.count_slots(text);
    }

    /// 1 when `text` itself is one of the texts counted: a text is not a value of its own
    /// template's slots.
    fn own(&self, text: &str) -> u32 {
        u32::from(self.counted.contains(&text_hash(text)))
    }

    fn count_slots(&mut self, text: &str) {
        let words: Vec<&str> = text.split(' ').collect();
        if words.len() > MAX_WORDS {
            return;
        }
        for position in 0..words.len() {
            let k = key(&words, position);
            if let Some(count) = self.counts.get_mut(&k) {
                *count = count.saturating_add(1);
            } else if self.counts.len() < MAX_KEYS {
                self.counts.insert(k, 1);
            }
        }
    }

    /// The word position of `text` where the baseline holds the most distinct texts that equal
    /// `text` in every other word, when they are at least `min_values`: `text` is then a new
    /// value in a variable slot of a template the baseline knows, whichever texts a nearest-
    /// neighbour search returns (a unit's own other states can fill all k of them). None
    /// otherwise.
    pub fn variable_position(&self, text: &str, min_values: u32) -> Option<VariableSlots> {
        let words: Vec<&str> = text.split(' ').collect();
        if words.len() > MAX_WORDS {
            return None;
        }
        let own = self.own(text);
        (0..words.len())
            .filter_map(|p| {
                let values = self
                    .counts
                    .get(&key(&words, p))
                    .copied()?
                    .saturating_sub(own);
                (values >= min_values).then_some((p, values))
            })
            .max_by_key(|&(p, values)| (values, std::cmp::Reverse(p)))
            .map(|(p, values)| VariableSlots {
                positions: vec![p],
                values,
            })
    }

    /// When `text` differs from the baseline text `nearest` in at most `max_positions` words,
    /// each of them a slot in which the baseline holds at least `min_values` distinct texts:
    /// those positions. None otherwise (different lengths, too many or fixed differences).
    pub fn variable_difference(
        &self,
        text: &str,
        nearest: &str,
        max_positions: usize,
        min_values: u32,
    ) -> Option<VariableSlots> {
        let words: Vec<&str> = text.split(' ').collect();
        let near: Vec<&str> = nearest.split(' ').collect();
        if words.len() != near.len() || words.len() > MAX_WORDS {
            return None;
        }
        let positions: Vec<usize> = (0..words.len()).filter(|&i| words[i] != near[i]).collect();
        if positions.is_empty() || positions.len() > max_positions {
            return None;
        }
        let own = self.own(text);
        let mut fewest = u32::MAX;
        for &p in &positions {
            let values = self
                .counts
                .get(&key(&near, p))
                .copied()
                .unwrap_or(0)
                .saturating_sub(own);
            if values < min_values {
                return None;
            }
            fewest = fewest.min(values);
        }
        Some(VariableSlots {
            positions,
            values: fewest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_value_where_many_were_seen_is_variable_and_a_new_one_where_few_were_is_not() {
        let mut slots = SlotIndex::default();
        for unit in ["nginx", "cron", "job-7", "job-8", "sshd"] {
            slots.insert(&format!("systemd unit {unit}.service loaded"));
        }
        slots.insert("login1 session new user=carol remote_host=10.0.7.5");
        slots.insert("login1 session new user=alice remote_host=10.0.7.9");

        let new_unit = slots.variable_difference(
            "systemd unit job-9.service loaded",
            "systemd unit job-8.service loaded",
            2,
            3,
        );
        assert_eq!(
            new_unit,
            Some(VariableSlots {
                positions: vec![2],
                values: 5
            })
        );
        // One user ever seen from that host, and a host never seen: fixed slots.
        assert_eq!(
            slots.variable_difference(
                "login1 session new user=root remote_host=203.0.113.66",
                "login1 session new user=carol remote_host=10.0.7.5",
                2,
                3
            ),
            None
        );
        // A state change is not a new value of a variable slot when the state never varied.
        assert_eq!(
            slots.variable_difference(
                "systemd unit nginx.service failed",
                "systemd unit nginx.service loaded",
                2,
                3
            ),
            None
        );
        // Found from the text alone, whatever its nearest texts are.
        assert_eq!(
            slots.variable_position("systemd unit job-9.service loaded", 3),
            Some(VariableSlots {
                positions: vec![2],
                values: 5
            })
        );
        assert_eq!(
            slots.variable_position("login1 session new user=root remote_host=203.0.113.66", 3),
            None,
            "no template of it holds many texts"
        );
        assert_eq!(
            slots.variable_position("login1 session new user=root remote_host=10.0.7.5", 2),
            None,
            "one text shares every other word"
        );
        assert_eq!(
            slots.variable_difference("a b", "a b c", 2, 1),
            None,
            "different lengths"
        );
        assert_eq!(
            slots.variable_difference(
                "systemd unit job-8.service loaded",
                "systemd unit job-8.service loaded",
                2,
                1
            ),
            None,
            "no difference"
        );
    }

    #[test]
    fn a_text_judged_normal_counts_once_as_a_value_of_its_template_but_not_of_its_own() {
        let mut slots = SlotIndex::default();
        slots.insert("networkmanager device wlan0 state=secondaries");
        slots.insert_normal("networkmanager device eth0 state=secondaries");
        // Judged normal again and again, and then joined: still one text.
        for _ in 0..5 {
            slots.insert_normal("networkmanager device eth0 state=secondaries");
        }
        slots.insert("networkmanager device eth0 state=secondaries");
        assert_eq!(
            slots.variable_position("networkmanager device bond0 state=secondaries", 3),
            None,
            "two texts of the template so far"
        );
        slots.insert_normal("networkmanager device eth1 state=secondaries");
        assert_eq!(
            slots.variable_position("networkmanager device bond0 state=secondaries", 3),
            Some(VariableSlots {
                positions: vec![2],
                values: 3
            })
        );
        // A counted text is judged against the others only.
        assert_eq!(
            slots.variable_position("networkmanager device eth1 state=secondaries", 3),
            None,
            "two others"
        );
        assert_eq!(
            slots.variable_difference(
                "networkmanager device eth1 state=secondaries",
                "networkmanager device eth0 state=secondaries",
                2,
                2
            ),
            Some(VariableSlots {
                positions: vec![2],
                values: 2
            })
        );
    }
}
