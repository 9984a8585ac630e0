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
//! A *variable span* is the same idea for two or three consecutive words inside a text (a
//! register's name in a dump, `RAS KERNEL FATAL <name>….0`): the text differs from at least
//! `min_values` baseline texts of its length only there, and each word of the span has held at
//! least three distinct words (or `min_values`, when fewer) in those texts, so a span is never a
//! variable slot plus the fixed word beside it (`job D crashed` after `job A|B|C finished`).
//! At least three words, and no fewer than the span's own, are fixed around it, one on each side
//! at the least: a span never starts or ends a text, where a short text's whole message would be
//! the "value".
//!
//! Words are the text split on single spaces (every renderer writes single-spaced words and
//! `Key=value` pairs, and free-text lines are re-joined that way), and a word with a dot leader
//! (`processor.......0`) split in two at the dots: its name and its value, the number of dots
//! being the name's padding. Only the slot keys' 64-bit hashes are kept, with a count.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

/// Texts longer than this many words are not indexed: their slot keys would cost memory for
/// the rare long line, and a long line that differs in one word is judged by distance alone.
pub const MAX_WORDS: usize = 32;

/// Longest text whose spans are indexed (each text of n words adds about 2·n span keys).
const MAX_SPAN_WORDS: usize = 16;

/// Span lengths indexed: one word is a slot, more than three is a different message.
const SPAN_LENGTHS: std::ops::RangeInclusive<usize> = 2..=3;

/// Fixed words a span needs around it, at the least (and never fewer than the span's own).
const MIN_SPAN_CONTEXT: usize = 3;

/// Span keys kept (about 48 bytes each with the map's overhead, 24 MiB in all); beyond it no new
/// span is added, and slots keep their own budget.
const MAX_SPAN_KEYS: usize = 1 << 19;

/// Distinct words remembered per position of a span: enough to tell three apart, and a fourth
/// when the text looked up is one of them.
const SPAN_WORDS_KEPT: usize = 3;

/// What the baseline holds in one span of one template: how many distinct texts, and at each of
/// the span's words, the distinct words seen there (as 32-bit hashes, up to `SPAN_WORDS_KEPT`,
/// and then a count that stops at one more).
#[derive(Debug, Clone, Default)]
struct SpanValues {
    texts: u32,
    seen: [[u32; SPAN_WORDS_KEPT]; 3],
    distinct: [u8; 3],
}

impl SpanValues {
    fn add(&mut self, span: &[Word]) {
        self.texts = self.texts.saturating_add(1);
        for (offset, word) in span.iter().enumerate() {
            let h = word_hash(word);
            let known = usize::from(self.distinct[offset]).min(SPAN_WORDS_KEPT);
            if self.seen[offset][..known].contains(&h) {
                continue;
            }
            if known < SPAN_WORDS_KEPT {
                self.seen[offset][known] = h;
            }
            self.distinct[offset] = (self.distinct[offset] + 1).min(SPAN_WORDS_KEPT as u8 + 1);
        }
    }

    /// Whether every word of the span held at least `needed` distinct words.
    fn varied(&self, length: usize, needed: u8) -> bool {
        self.distinct[..length].iter().all(|&d| d >= needed)
    }
}

fn word_hash(word: &Word) -> u32 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    word.hash(&mut h);
    // The low half of a 64-bit hash: two words colliding only merge two values.
    h.finish() as u32
}

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
    spans: HashMap<u64, SpanValues>,
    /// Hashes of the texts counted, so that each is counted once, whether it was judged normal
    /// first and joined later or not.
    counted: HashSet<u64>,
}

/// The words of `text` at slot `positions` (as the slot index counts them: a dot leader splits a
/// word into its name and its value), the new value a [`VariableSlots`] names.
pub fn words_at<'t>(text: &'t str, positions: &[usize]) -> Vec<&'t str> {
    let words = slot_words(text);
    positions
        .iter()
        .filter_map(|&p| match words.get(p)? {
            Word::Plain(w) | Word::Leader(w) => Some(*w),
        })
        .collect()
}

/// A text as the slot index sees it, by its words (`x....0` and `x......0` are one text).
fn text_hash(words: &[Word]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    words.hash(&mut h);
    h.finish()
}

/// A word as the slot index compares words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Word<'a> {
    Plain(&'a str),
    /// What follows a dot leader (`0` of `processor.......0`).
    Leader(&'a str),
}

fn slot_words(text: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    for word in text.split(' ') {
        match split_dot_leader(word) {
            Some((name, value)) => {
                out.push(Word::Plain(name));
                out.push(Word::Leader(value));
            }
            None => out.push(Word::Plain(word)),
        }
    }
    out
}

/// `name.......value` as (name, value): a run of three or more dots after a name.
fn split_dot_leader(word: &str) -> Option<(&str, &str)> {
    let start = word.find("...")?;
    if start == 0 {
        return None;
    }
    let end = start
        + word[start..]
            .find(|c| c != '.')
            .unwrap_or(word.len() - start);
    Some((&word[..start], &word[end..]))
}

fn key(words: &[Word], position: usize) -> u64 {
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

/// The key of the span of `length` words at `start`: the words around it, each side apart.
fn span_key(words: &[Word], start: usize, length: usize) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    "\u{0}span".hash(&mut h);
    words.len().hash(&mut h);
    start.hash(&mut h);
    length.hash(&mut h);
    words[..start].hash(&mut h);
    words[start + length..].hash(&mut h);
    h.finish()
}

/// The spans (start, length) of a text of `count` words that are indexed.
fn spans(count: usize) -> impl Iterator<Item = (usize, usize)> {
    let indexed = count <= MAX_SPAN_WORDS;
    SPAN_LENGTHS
        .filter(move |&length| indexed && count >= length + MIN_SPAN_CONTEXT.max(length))
        .flat_map(move |length| (1..count - length).map(move |start| (start, length)))
}

impl SlotIndex {
    /// Counts a new distinct baseline text in each of its slots, unless it was counted when it
    /// was judged normal.
    pub fn insert(&mut self, text: &str) {
        let words = slot_words(text);
        let hash = text_hash(&words);
        if self.counted.contains(&hash) {
            return;
        }
        if self.counted.len() < MAX_COUNTED {
            self.counted.insert(hash);
        }
        self.count_slots(&words);
    }

    /// Counts a text judged normal that did not join, the first time only (and only while the
    /// set of counted texts has room, since beyond it a repeat could not be told apart).
    pub fn insert_normal(&mut self, text: &str) {
        let words = slot_words(text);
        if self.counted.len() >= MAX_COUNTED || !self.counted.insert(text_hash(&words)) {
            return;
        }
        self.count_slots(&words);
    }

    /// 1 when the text of these `words` is itself one of the texts counted: a text is not a
    /// value of its own template's slots.
    fn own(&self, words: &[Word]) -> u32 {
        u32::from(self.counted.contains(&text_hash(words)))
    }

    fn count_slots(&mut self, words: &[Word]) {
        if words.len() > MAX_WORDS {
            return;
        }
        for k in (0..words.len()).map(|position| key(words, position)) {
            if let Some(count) = self.counts.get_mut(&k) {
                *count = count.saturating_add(1);
            } else if self.counts.len() < MAX_KEYS {
                self.counts.insert(k, 1);
            }
        }
        for (start, length) in spans(words.len()) {
            let k = span_key(words, start, length);
            let room = self.spans.len() < MAX_SPAN_KEYS;
            let values = match self.spans.get_mut(&k) {
                Some(values) => values,
                None if room => self.spans.entry(k).or_default(),
                None => continue,
            };
            values.add(&words[start..start + length]);
        }
    }

    /// The word position of `text` where the baseline holds the most distinct texts that equal
    /// `text` in every other word, when they are at least `min_values`: `text` is then a new
    /// value in a variable slot of a template the baseline knows, whichever texts a nearest-
    /// neighbour search returns (a unit's own other states can fill all k of them). None
    /// otherwise.
    pub fn variable_position(&self, text: &str, min_values: u32) -> Option<VariableSlots> {
        let words = slot_words(text);
        if words.len() > MAX_WORDS {
            return None;
        }
        let own = self.own(&words);
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

    /// The span of two or three words inside `text` where the baseline holds the most distinct
    /// texts that equal `text` around it, when they are at least `min_values` and each word of
    /// the span held at least `min_values` (at most three) distinct words: `text` is then a new
    /// value, a few words long, in a template the baseline knows. None otherwise.
    pub fn variable_span(&self, text: &str, min_values: u32) -> Option<VariableSlots> {
        let words = slot_words(text);
        if words.len() > MAX_WORDS {
            return None;
        }
        let own = self.own(&words);
        // Each word of the span must have varied among the others: the text's own words are
        // among those seen when it is itself counted.
        let needed =
            u8::try_from(min_values.min(SPAN_WORDS_KEPT as u32)).unwrap_or(1) + u8::from(own == 1);
        spans(words.len())
            .filter_map(|(start, length)| {
                let span = self.spans.get(&span_key(&words, start, length))?;
                let values = span.texts.saturating_sub(own);
                (values >= min_values && span.varied(length, needed))
                    .then_some((start, length, values))
            })
            .max_by_key(|&(start, length, values)| {
                (values, std::cmp::Reverse(length), std::cmp::Reverse(start))
            })
            .map(|(start, length, values)| VariableSlots {
                positions: (start..start + length).collect(),
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
        let words = slot_words(text);
        let near = slot_words(nearest);
        if words.len() != near.len() || words.len() > MAX_WORDS {
            return None;
        }
        let positions: Vec<usize> = (0..words.len()).filter(|&i| words[i] != near[i]).collect();
        if positions.is_empty() || positions.len() > max_positions {
            return None;
        }
        let own = self.own(&words);
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

    #[test]
    fn a_new_name_in_a_dump_is_a_variable_span_but_not_at_a_text_edge_or_with_little_around_it() {
        let mut slots = SlotIndex::default();
        let span = |slots: &SlotIndex, text: &str, min_values: u32| {
            slots
                .variable_span(text, min_values)
                .map(|v| (v.positions, v.values))
        };
        for name in [
            "machine check enable..............0",
            "byte ordering exception.....................0",
            "data address space................0",
        ] {
            slots.insert(&format!("RAS KERNEL FATAL {name}"));
        }
        // Dot leaders of any length: the name and its value are the words.
        let depth = "RAS KERNEL FATAL icache prefetch depth....................0";
        assert_eq!(span(&slots, depth, 3), Some((vec![3, 4, 5], 3)));
        // Each case: the text, the values asked for, why it is no span.
        let none = [
            (
                "RAS KERNEL FATAL icache prefetch depth.....1",
                3,
                "a value never seen after the names",
            ),
            (
                "RAS KERNEL FATAL icache prefetch depth....0",
                4,
                "three texts of the template",
            ),
        ];
        for (text, min_values, why) in none {
            assert_eq!(span(&slots, text, min_values), None, "{why}");
        }
        // The last words of a text are its message, not a span.
        for tail in ["a b", "c d", "e f"] {
            slots.insert(&format!("kernel: md0 raid1 {tail}"));
        }
        // Three words fixed around a span at the least, and as many as it has.
        for middle in ["a b c", "d e f", "g h i"] {
            slots.insert(&format!("x {middle} y z"));
            slots.insert(&format!("x {middle} y"));
        }
        assert_eq!(span(&slots, "x j k l y z", 3), Some((vec![1, 2, 3], 3)));
        // A variable slot and the fixed word beside it are not a span.
        for job in ["A", "B", "C", "D"] {
            slots.insert(&format!("cron job {job} finished with code 0"));
        }
        slots.insert("cron job E started with code 0");
        // A dump text whose dots differ is the same text: it counts once, and is its own.
        slots.insert("RAS KERNEL FATAL data address space.....0");
        let none = [
            ("kernel: md0 raid1 degraded now", 3, "at the text's end"),
            ("x j k l y", 3, "two words around"),
            (
                "cron job F crashed with code 0",
                3,
                "`finished` and `started` only",
            ),
            (
                "RAS KERNEL FATAL data address space..0",
                3,
                "two dots are not a leader",
            ),
            (
                "RAS KERNEL FATAL data address space.......0",
                3,
                "two texts besides its own",
            ),
        ];
        for (text, min_values, why) in none {
            assert_eq!(span(&slots, text, min_values), None, "{why}");
        }
        assert_eq!(
            split_dot_leader("Filesystems..."),
            Some(("Filesystems", ""))
        );
        assert_eq!(split_dot_leader("...0"), None, "no name before the dots");
        assert_eq!(split_dot_leader("a.b"), None);
    }
}
