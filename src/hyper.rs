//! The joint space's hyperparameters: what a design may set beside its wiring (hidden width,
//! stacked blocks, a learning-rate factor), the choices a search offers for each
//! (`[search.hyper]`), and seeded sampling, mutation and neighbours over those choices.
//!
//! Why: on small or smooth data the wiring alone is a flat space (BENCHMARKS.md: 32 converged
//! designs within 1% on chickenpox, seed-to-seed tau about 0), so a search has nothing to find.
//! AutoCTS+ searches architecture and the hyperparameters that move the score together; this
//! module is that second half. A design without `hyper` uses the configured model and training
//! settings, so every architecture-only result keeps its hash and meaning.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Upper bounds a design's hyperparameters are checked against whatever the search offers
/// (memory and time stay bounded even for a hand-written design).
pub const MAX_HIDDEN: i64 = 512;
pub const MAX_BLOCKS: i64 = 8;
pub const MAX_LR_SCALE: f64 = 100.0;

/// One design's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyper {
    /// Channels of every hidden state (replaces `model.hidden`; `model.heads` must divide it).
    pub hidden: i64,
    /// How many times the wiring is stacked: each block its own weights, a residual around it.
    pub blocks: i64,
    /// Factor on the learning rate of every training of the design (proxy, rungs, final).
    pub lr_scale: f64,
}

// `lr_scale` is checked finite and positive wherever a `Hyper` is built from input, so equality
// is reflexive on every value that exists.
impl Eq for Hyper {}

impl Hyper {
    /// Checks the bounds every design must respect; the message names the field.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_HIDDEN).contains(&self.hidden) {
            return Err(format!(
                "hyper.hidden must be within 1..={MAX_HIDDEN}, got {}",
                self.hidden
            ));
        }
        if !(1..=MAX_BLOCKS).contains(&self.blocks) {
            return Err(format!(
                "hyper.blocks must be within 1..={MAX_BLOCKS}, got {}",
                self.blocks
            ));
        }
        if !(self.lr_scale.is_finite() && self.lr_scale > 0.0 && self.lr_scale <= MAX_LR_SCALE) {
            return Err(format!(
                "hyper.lr_scale must be within (0, {MAX_LR_SCALE}], got {}",
                self.lr_scale
            ));
        }
        Ok(())
    }

    /// `hidden 32, 2 blocks, lr x0.5`: the summary's and the prompts' spelling.
    pub fn label(&self) -> String {
        format!(
            "hidden {}, {} block{}, lr x{}",
            self.hidden,
            self.blocks,
            if self.blocks == 1 { "" } else { "s" },
            self.lr_scale
        )
    }
}

/// The choices a search offers (`[search.hyper]`). All lists empty: architecture only, designs
/// carry no `hyper`. Any list set: every design carries all three, a list left empty holding
/// the configured value only (see [`HyperSpace::resolved`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HyperSpace {
    pub hidden: Vec<i64>,
    pub blocks: Vec<i64>,
    pub lr_scale: Vec<f64>,
}

impl HyperSpace {
    /// Whether designs carry hyperparameters.
    pub fn is_active(&self) -> bool {
        !(self.hidden.is_empty() && self.blocks.is_empty() && self.lr_scale.is_empty())
    }

    /// The space with empty lists filled by the fixed values (`model.hidden`, one block, a
    /// factor of 1) and each list sorted and deduplicated; inactive stays inactive.
    pub fn resolved(&self, model_hidden: i64) -> HyperSpace {
        if !self.is_active() {
            return HyperSpace::default();
        }
        let mut hidden = self.hidden.clone();
        if hidden.is_empty() {
            hidden.push(model_hidden);
        }
        hidden.sort_unstable();
        hidden.dedup();
        let mut blocks = self.blocks.clone();
        if blocks.is_empty() {
            blocks.push(1);
        }
        blocks.sort_unstable();
        blocks.dedup();
        let mut lr_scale = self.lr_scale.clone();
        if lr_scale.is_empty() {
            lr_scale.push(1.0);
        }
        lr_scale.sort_by(f64::total_cmp);
        lr_scale.dedup();
        HyperSpace {
            hidden,
            blocks,
            lr_scale,
        }
    }

    /// Checks the lists (`heads` must divide every width); the message names the key.
    pub fn check(&self, heads: i64) -> Result<(), String> {
        for &h in &self.hidden {
            if !(1..=MAX_HIDDEN).contains(&h) {
                return Err(format!(
                    "search.hyper.hidden must hold widths within 1..={MAX_HIDDEN}, got {h}"
                ));
            }
            if heads > 0 && h % heads != 0 {
                return Err(format!(
                    "search.hyper.hidden: model.heads ({heads}) must divide every width, got {h}"
                ));
            }
        }
        if let Some(b) = self.blocks.iter().find(|b| !(1..=MAX_BLOCKS).contains(*b)) {
            return Err(format!(
                "search.hyper.blocks must hold counts within 1..={MAX_BLOCKS}, got {b}"
            ));
        }
        if let Some(s) = self
            .lr_scale
            .iter()
            .find(|s| !(s.is_finite() && **s > 0.0 && **s <= MAX_LR_SCALE))
        {
            return Err(format!(
                "search.hyper.lr_scale must hold factors within (0, {MAX_LR_SCALE}], got {s}"
            ));
        }
        for (key, n) in [
            ("hidden", self.hidden.len()),
            ("blocks", self.blocks.len()),
            ("lr_scale", self.lr_scale.len()),
        ] {
            if n > 16 {
                return Err(format!(
                    "search.hyper.{key} offers at most 16 choices, got {n}"
                ));
            }
        }
        Ok(())
    }

    /// Checks a design's `hyper` against this (resolved) space: present exactly when the space
    /// is active, each value one of the choices. The message names the field and the choices.
    pub fn admit(&self, hyper: Option<&Hyper>) -> Result<(), String> {
        match (self.is_active(), hyper) {
            (false, None) => Ok(()),
            (false, Some(_)) => Err(
                "hyper: this search tunes the wiring only; leave `hyper` out (it is set by \
                 [search.hyper])"
                    .into(),
            ),
            (true, None) => Err(format!(
                "hyper: this search also tunes hyperparameters; give \"hyper\": {{\"hidden\": \
                 one of {:?}, \"blocks\": one of {:?}, \"lr_scale\": one of {:?}}}",
                self.hidden, self.blocks, self.lr_scale
            )),
            (true, Some(h)) => {
                h.check()?;
                if !self.hidden.contains(&h.hidden) {
                    return Err(format!(
                        "hyper.hidden: {} is not offered (choices: {:?})",
                        h.hidden, self.hidden
                    ));
                }
                if !self.blocks.contains(&h.blocks) {
                    return Err(format!(
                        "hyper.blocks: {} is not offered (choices: {:?})",
                        h.blocks, self.blocks
                    ));
                }
                if !self.lr_scale.contains(&h.lr_scale) {
                    return Err(format!(
                        "hyper.lr_scale: {} is not offered (choices: {:?})",
                        h.lr_scale, self.lr_scale
                    ));
                }
                Ok(())
            }
        }
    }

    /// The middle choice of each list: what a design that leaves `hyper` out is given (a tree
    /// of thought whose output decision named none). None when inactive.
    pub fn middle(&self) -> Option<Hyper> {
        if !self.is_active() {
            return None;
        }
        let mid = |n: usize| n.saturating_sub(1) / 2;
        Some(Hyper {
            hidden: self.hidden[mid(self.hidden.len())],
            blocks: self.blocks[mid(self.blocks.len())],
            lr_scale: self.lr_scale[mid(self.lr_scale.len())],
        })
    }

    /// `h`, or [`HyperSpace::middle`] when the space is active and `h` is none.
    pub fn complete(&self, h: Option<Hyper>) -> Option<Hyper> {
        h.or_else(|| self.middle())
    }

    /// A uniformly drawn choice per dimension (None when inactive).
    pub fn sample<R: Rng>(&self, rng: &mut R) -> Option<Hyper> {
        if !self.is_active() {
            return None;
        }
        Some(Hyper {
            hidden: self.hidden[rng.gen_range(0..self.hidden.len())],
            blocks: self.blocks[rng.gen_range(0..self.blocks.len())],
            lr_scale: self.lr_scale[rng.gen_range(0..self.lr_scale.len())],
        })
    }

    /// Every setting one step away along one dimension (the adjacent choice up or down, lists
    /// being sorted), in a fixed order: hidden, blocks, lr_scale, down before up.
    pub fn neighbours(&self, h: &Hyper) -> Vec<Hyper> {
        fn adjacent<T: Copy + PartialEq>(list: &[T], v: T) -> Vec<T> {
            let Some(i) = list.iter().position(|x| *x == v) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            if i > 0 {
                out.push(list[i - 1]);
            }
            if i + 1 < list.len() {
                out.push(list[i + 1]);
            }
            out
        }
        let mut out = Vec::new();
        for hidden in adjacent(&self.hidden, h.hidden) {
            out.push(Hyper { hidden, ..*h });
        }
        for blocks in adjacent(&self.blocks, h.blocks) {
            out.push(Hyper { blocks, ..*h });
        }
        for lr_scale in adjacent(&self.lr_scale, h.lr_scale) {
            out.push(Hyper { lr_scale, ..*h });
        }
        out
    }

    /// One random neighbour (None when the space offers no other setting).
    pub fn mutate<R: Rng>(&self, h: &Hyper, rng: &mut R) -> Option<Hyper> {
        let n = self.neighbours(h);
        (!n.is_empty()).then(|| n[rng.gen_range(0..n.len())])
    }

    /// A child taking each dimension from one parent or the other.
    pub fn cross<R: Rng>(a: &Hyper, b: &Hyper, rng: &mut R) -> Hyper {
        Hyper {
            hidden: if rng.gen_bool(0.5) {
                a.hidden
            } else {
                b.hidden
            },
            blocks: if rng.gen_bool(0.5) {
                a.blocks
            } else {
                b.blocks
            },
            lr_scale: if rng.gen_bool(0.5) {
                a.lr_scale
            } else {
                b.lr_scale
            },
        }
    }

    /// Number of distinct settings (1 when inactive).
    pub fn size(&self) -> usize {
        self.hidden.len().max(1) * self.blocks.len().max(1) * self.lr_scale.len().max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn space() -> HyperSpace {
        HyperSpace {
            hidden: vec![32, 8, 16],
            blocks: vec![],
            lr_scale: vec![2.0, 0.5, 1.0],
        }
        .resolved(24)
    }

    #[test]
    fn resolving_fills_sorts_and_keeps_inactive_inactive() {
        let s = space();
        assert_eq!(s.hidden, [8, 16, 32]);
        assert_eq!(s.blocks, [1]);
        assert_eq!(s.lr_scale, [0.5, 1.0, 2.0]);
        assert_eq!(s.size(), 9);
        assert!(!HyperSpace::default().resolved(24).is_active());
        let only_blocks = HyperSpace {
            blocks: vec![2, 1],
            ..HyperSpace::default()
        }
        .resolved(24);
        assert_eq!(only_blocks.hidden, [24]);
        assert_eq!(only_blocks.blocks, [1, 2]);
        assert_eq!(only_blocks.lr_scale, [1.0]);
    }

    #[test]
    fn checks_name_the_key_and_the_choices() {
        let err = HyperSpace {
            hidden: vec![8, 12],
            ..HyperSpace::default()
        }
        .check(8)
        .unwrap_err();
        assert!(
            err.contains("model.heads (8) must divide every width, got 12"),
            "{err}"
        );
        let err = HyperSpace {
            lr_scale: vec![f64::NAN],
            ..HyperSpace::default()
        }
        .check(1)
        .unwrap_err();
        assert!(err.starts_with("search.hyper.lr_scale"), "{err}");
        let s = space();
        let h = Hyper {
            hidden: 12,
            blocks: 1,
            lr_scale: 1.0,
        };
        let err = s.admit(Some(&h)).unwrap_err();
        assert_eq!(
            err,
            "hyper.hidden: 12 is not offered (choices: [8, 16, 32])"
        );
        assert!(s
            .admit(None)
            .unwrap_err()
            .starts_with("hyper: this search also tunes"));
        assert!(HyperSpace::default()
            .admit(Some(&h))
            .unwrap_err()
            .starts_with("hyper: this search tunes the wiring only"));
        let ok = Hyper { hidden: 16, ..h };
        s.admit(Some(&ok)).unwrap();
        let err = Hyper { blocks: 0, ..ok }.check().unwrap_err();
        assert!(
            err.starts_with("hyper.blocks must be within 1..=8"),
            "{err}"
        );
    }

    #[test]
    fn neighbours_step_one_dimension_and_sampling_is_seeded() {
        let s = space();
        let h = Hyper {
            hidden: 8,
            blocks: 1,
            lr_scale: 1.0,
        };
        let n = s.neighbours(&h);
        assert_eq!(
            n,
            [
                Hyper { hidden: 16, ..h },
                Hyper { lr_scale: 0.5, ..h },
                Hyper { lr_scale: 2.0, ..h },
            ]
        );
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..20 {
            let x = s.sample(&mut a).unwrap();
            assert_eq!(Some(x), s.sample(&mut b));
            s.admit(Some(&x)).unwrap();
            let m = s.mutate(&x, &mut a).unwrap();
            assert_ne!(m, x);
            s.admit(Some(&m)).unwrap();
            let _ = s.mutate(&x, &mut b);
        }
        assert_eq!(HyperSpace::default().sample(&mut a), None);
    }
}
