//! The automatic alert threshold of one source: a high quantile of the recent scores of its
//! scored events (after warm-up, suppressed events aside), never below the configured floor and
//! never above the ceiling. A quiet source (a bus whose normal events repeat texts it has seen)
//! keeps the floor; a chatty one (a log where normal traffic brings new lines all day) is
//! raised until about `1 − quantile` of its events score above it, but never past the ceiling,
//! so a text that far from everything normal alerts (unless it differs from a known one only in
//! variable template slots, which the detector judges against a raised threshold).
//!
//! Anomalies' scores stay in the window on purpose. A window of only the events let through is
//! censored at the threshold, and its quantile can only fall: each recomputation lands below the
//! last, down to the floor. With every score in it the quantile is stable; the price is that a
//! storm of anomalies lifts the threshold for as long as it fills the window. Joining the baseline
//! does not follow this threshold but the floor, so calibration never lets a fault into the
//! baseline.

use std::collections::VecDeque;

/// Scores observed before the threshold is first computed from them.
const MIN_SAMPLES: usize = 50;
/// The quantile is recomputed after this many new scores (a sort of the window each time).
const RECOMPUTE_EVERY: usize = 64;

#[derive(Debug, Clone)]
pub struct Calibrator {
    /// 0 turns calibration off: the threshold is `floor`, fixed.
    quantile: f64,
    floor: f32,
    ceiling: f32,
    capacity: usize,
    window: VecDeque<f32>,
    threshold: f32,
    since_recompute: usize,
}

impl Calibrator {
    pub fn new(quantile: f64, floor: f32, ceiling: f32, capacity: usize) -> Calibrator {
        Calibrator {
            quantile,
            floor,
            ceiling: ceiling.max(floor),
            capacity: capacity.max(1),
            window: VecDeque::new(),
            threshold: floor,
            since_recompute: 0,
        }
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Scores the window keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_calibrating(&self) -> bool {
        self.quantile > 0.0
    }

    /// Whether the threshold has been computed from scores (enough of them observed).
    pub fn is_settled(&self) -> bool {
        self.is_calibrating() && self.window.len() >= MIN_SAMPLES
    }

    /// Records the score of a scored event.
    pub fn observe(&mut self, score: f32) {
        if !self.is_calibrating() || !score.is_finite() {
            return;
        }
        if self.window.len() == self.capacity {
            self.window.pop_front();
        }
        self.window.push_back(score);
        self.since_recompute += 1;
        if self.window.len() >= MIN_SAMPLES
            && (self.since_recompute >= RECOMPUTE_EVERY || self.window.len() == MIN_SAMPLES)
        {
            self.recompute();
        }
    }

    fn recompute(&mut self) {
        self.since_recompute = 0;
        let mut sorted: Vec<f32> = self.window.iter().copied().collect();
        sorted.sort_by(f32::total_cmp);
        let rank = ((sorted.len() as f64 - 1.0) * self.quantile).ceil() as usize;
        self.threshold = sorted[rank.min(sorted.len() - 1)].clamp(self.floor, self.ceiling);
    }
}

#[cfg(test)]
mod tests {
    use super::Calibrator;

    #[test]
    fn the_threshold_is_the_quantile_with_a_floor() {
        let mut c = Calibrator::new(0.99, 0.05, 2.0, 1000);
        // A permutation of 0, 0.001, …, 0.999, so every prefix is spread evenly.
        for i in 0..1000 {
            c.observe((i * 37 % 1000) as f32 / 1000.0);
        }
        assert!((c.threshold() - 0.99).abs() < 0.01, "{}", c.threshold());
        let mut quiet = Calibrator::new(0.99, 0.05, 2.0, 1000);
        for _ in 0..1000 {
            quiet.observe(0.0);
        }
        assert_eq!(quiet.threshold(), 0.05, "never below the floor");
        let mut off = Calibrator::new(0.0, 0.2, 2.0, 1000);
        for _ in 0..1000 {
            off.observe(0.9);
        }
        assert_eq!(off.threshold(), 0.2, "fixed when calibration is off");
        let mut chatty = Calibrator::new(0.97, 0.05, 0.25, 1000);
        for i in 0..1000 {
            chatty.observe((i * 37 % 1000) as f32 / 1000.0);
        }
        assert_eq!(chatty.threshold(), 0.25, "never above the ceiling");
    }
}
