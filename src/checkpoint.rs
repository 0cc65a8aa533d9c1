//! A full training's state after an epoch, kept on disk so that a training killed mid-way
//! resumes from its last finished epoch instead of from the first
//! ([`crate::train::train_full_resumable`]).
//!
//! The state is everything the next epoch depends on: the weights, Adam's moments and step
//! count, the position of the batch-order generator, the early-stopping count, the best
//! epochs' weights (one, or `average_top`) and the epochs' logs. Restored, the training goes on
//! exactly as the uninterrupted one would have, to the last digit on a CPU. A training with
//! dropout is the exception and keeps no checkpoint: its masks come from libtorch's global
//! generator, whose state tch cannot read back.
//!
//! One file, written whole beside it and renamed over it, so a kill while writing leaves the
//! previous epoch's checkpoint. A file that does not load, or holds another training's key, is
//! not resumed from (the training starts at epoch 1 and overwrites it), and one that cannot be
//! written is logged and the training goes on: a checkpoint only ever saves time, it never
//! decides a result.

use crate::error::{Error, Result};
use crate::train::{Adam, EpochLog, Snapshot, Trained};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Tensor};

/// Where a full training keeps its state after every epoch, and what identifies it.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The file (written to `<path>.tmp`, then renamed over it). The caller removes it once
    /// the training's result is safely kept elsewhere.
    pub path: PathBuf,
    /// Identifies the very training (design, training settings and seed, widths, data); a
    /// file holding another key is never resumed from.
    pub key: String,
}

/// The part of the state that is not tensors, stored as JSON inside the file.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    key: String,
    /// The last finished epoch (1-based).
    epoch: usize,
    /// Adam's step count.
    adam_steps: i32,
    /// The batch-order generator's position (a u128, as text).
    rng_word_pos: String,
    since_best: usize,
    /// Score and epoch of each kept best epoch, best first; their weights are `top<k>.*`.
    top: Vec<(f64, usize)>,
    history: Vec<EpochLog>,
    /// Wall seconds of the training up to this checkpoint, earlier sessions included.
    seconds: f64,
}

/// A training's state at the end of an epoch, as [`Checkpoint::load`] gives it back.
pub(crate) struct State {
    pub epoch: usize,
    pub rng_word_pos: u128,
    pub since_best: usize,
    pub top: Vec<(f64, usize, Snapshot)>,
    pub history: Vec<EpochLog>,
    pub seconds: f64,
}

/// The state to save, borrowed from the training loop.
pub(crate) struct StateRef<'a> {
    pub epoch: usize,
    pub rng_word_pos: u128,
    pub since_best: usize,
    pub top: &'a [(f64, usize, Snapshot)],
    pub history: &'a [EpochLog],
    pub seconds: f64,
}

fn to_cpu(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_to_device(Device::Cpu)?.f_detach()?)
}

impl Checkpoint {
    /// The checkpoint `<name>.ckpt` of a study's training in the folder beside its results
    /// file, `<results>.checkpoints/` (made here; git-ignored), under `key`. The name is kept
    /// to ASCII letters and digits, the rest becoming `-`. None when the folder cannot be
    /// made: the training then runs without one.
    pub fn beside(results: &Path, name: &str, key: &serde_json::Value) -> Option<Checkpoint> {
        let dir = crate::jsonl::beside(results, ".checkpoints");
        std::fs::create_dir_all(&dir).ok()?;
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Some(Checkpoint {
            path: dir.join(format!("{name}.ckpt")),
            key: key.to_string(),
        })
    }

    /// Removes the file, once the training's result is kept elsewhere (a checkpoint already
    /// gone, or never written, is no error: it only ever saved time).
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Saves `state`, the model's weights and the optimizer's moments.
    pub(crate) fn save(&self, state: &StateRef, trained: &Trained, opt: &Adam) -> Result<()> {
        let meta = Meta {
            key: self.key.clone(),
            epoch: state.epoch,
            adam_steps: opt.t,
            rng_word_pos: state.rng_word_pos.to_string(),
            since_best: state.since_best,
            top: state.top.iter().map(|(s, e, _)| (*s, *e)).collect(),
            history: state.history.to_vec(),
            seconds: state.seconds,
        };
        let json = serde_json::to_vec(&meta).map_err(|e| Error::File {
            path: self.path.clone(),
            msg: format!("checkpoint metadata: {e}"),
        })?;
        let mut named: Vec<(String, Tensor)> = vec![("meta".into(), Tensor::from_slice(&json))];
        for (k, t) in trained.vs.variables() {
            named.push((format!("w.{k}"), to_cpu(&t)?));
        }
        for (i, (m, v)) in opt.m.iter().zip(&opt.v).enumerate() {
            named.push((format!("m.{i}"), to_cpu(m)?));
            named.push((format!("v.{i}"), to_cpu(v)?));
        }
        for (r, (_, _, snap)) in state.top.iter().enumerate() {
            for (k, t) in snap {
                named.push((format!("top{r}.{k}"), to_cpu(t)?));
            }
        }
        let tmp = PathBuf::from(format!("{}.tmp", self.path.display()));
        Tensor::save_multi(&named, &tmp)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }

    /// The saved state, restored into `trained` and `opt` (on `device`), when the file holds
    /// this training's key, its tensors fit the model, and it is not past `max_epochs`.
    /// `Ok(None)` otherwise, and then nothing was changed: everything is checked before
    /// anything is restored.
    pub(crate) fn load(
        &self,
        trained: &Trained,
        opt: &mut Adam,
        device: Device,
        max_epochs: usize,
    ) -> Result<Option<State>> {
        let Some(found) = self.read(trained, opt, device, max_epochs) else {
            return Ok(None);
        };
        let Found {
            meta,
            rng_word_pos,
            weights,
            moments,
            top,
        } = found;
        trained.restore(&weights)?;
        tch::no_grad(|| -> Result<()> {
            for ((m, v), (sm, sv)) in opt.m.iter_mut().zip(opt.v.iter_mut()).zip(&moments) {
                m.f_copy_(sm)?;
                v.f_copy_(sv)?;
            }
            Ok(())
        })?;
        opt.t = meta.adam_steps;
        Ok(Some(State {
            epoch: meta.epoch,
            rng_word_pos,
            since_best: meta.since_best,
            top,
            history: meta.history,
            seconds: meta.seconds,
        }))
    }

    /// The file's state when it is usable for this training, read and checked, not applied.
    fn read(
        &self,
        trained: &Trained,
        opt: &Adam,
        device: Device,
        max_epochs: usize,
    ) -> Option<Found> {
        let named = Tensor::load_multi(&self.path).ok()?;
        let mut map: HashMap<String, Tensor> = named.into_iter().collect();
        let bytes = Vec::<u8>::try_from(map.remove("meta")?).ok()?;
        let meta: Meta = serde_json::from_slice(&bytes).ok()?;
        if meta.key != self.key || meta.epoch == 0 || meta.epoch > max_epochs {
            return None;
        }
        let rng_word_pos = meta.rng_word_pos.parse::<u128>().ok()?;
        // A tensor of the shape and kind of `like`, moved to the training's device.
        let mut take = |name: String, like: &Tensor| -> Option<Tensor> {
            let t = map.remove(&name)?;
            (t.size() == like.size() && t.kind() == like.kind())
                .then(|| t.f_to_device(device).ok())
                .flatten()
        };
        let mut vars: Vec<(String, Tensor)> = trained.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let weights = vars
            .iter()
            .map(|(k, t)| Some((k.clone(), take(format!("w.{k}"), t)?)))
            .collect::<Option<Snapshot>>()?;
        let moments = opt
            .m
            .iter()
            .zip(&opt.v)
            .enumerate()
            .map(|(i, (m, v))| Some((take(format!("m.{i}"), m)?, take(format!("v.{i}"), v)?)))
            .collect::<Option<Vec<_>>>()?;
        let top = meta
            .top
            .iter()
            .enumerate()
            .map(|(r, &(score, epoch))| {
                let snap = vars
                    .iter()
                    .map(|(k, t)| Some((k.clone(), take(format!("top{r}.{k}"), t)?)))
                    .collect::<Option<Snapshot>>()?;
                Some((score, epoch, snap))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Found {
            meta,
            rng_word_pos,
            weights,
            moments,
            top,
        })
    }
}

/// A checkpoint file's contents, checked against the training that would resume from it.
struct Found {
    meta: Meta,
    rng_word_pos: u128,
    weights: Snapshot,
    /// Adam's first and second moments, one pair per parameter, in the optimizer's order.
    moments: Vec<(Tensor, Tensor)>,
    top: Vec<(f64, usize, Snapshot)>,
}
