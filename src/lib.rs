//! # ists: LLM-instructed neural architecture search for spatial-temporal forecasting
//!
//! This crate is the domain core: everything that does not need an actor system. The actors,
//! the supervisor, the daemon and the `ists` binary live in the `ists-actors` crate (`actors/`),
//! which depends on this one and never the other way round.
//!
//! # Layout
//! - [`space`]: architectures as DAGs of cells, JSON form, validation, canonical hash,
//!   sampling, mutation and crossover; [`hyper`]: the joint space's hyperparameters (width,
//!   stacked blocks, learning-rate factor) a design may carry beside its wiring.
//! - [`ops`]: the operators in tch (MixGC, linear attention, diffusion GCN, gated dilated
//!   convolution, temporal and spatial transformers) and the tensor layout they share.
//! - [`model`]: an architecture built into a forecaster (input projection, DAG, head).
//! - [`data`]: loaders for the formats users have (PEMS npz, DCRNN pickle, T-GCN csv,
//!   PyG-Temporal json), windows, splits, scaling, graph normalizations.
//! - [`train`]: batches, Adam, the one-step-tuning proxy and full training with early stopping;
//!   [`checkpoint`]: a full training's state after an epoch, so a killed one resumes there.
//! - [`metrics`]: masked MAE / RMSE / MAPE per horizon.
//! - [`ensemble`]: the mean forecast of a design's seeds (`final.ensemble`), scored like one
//!   model.
//! - [`baselines`]: historical average and last value on the same split; [`gru`]: the GRU
//!   baseline of T-GCN's table (one GRU per sensor series, weights shared), trained by us.
//! - [`protocol`]: the T-GCN protocol table: every model on T-GCN's Los-loop split and metrics,
//!   resumable JSON rows, the published values quoted with their citation.
//! - [`export`]: save a trained model (safetensors) and load it back.
//! - [`stats`]: Kendall's tau, Spearman's rho, the paired Wilcoxon test, seed summaries.
//! - [`fidelity`]: the proxy-fidelity study: cheap proxies against a multi-seed ground truth,
//!   resumable results, their correlations and costs.
//! - [`footprint`]: the memory one candidate's training needs, estimated before allocating.
//! - [`devcheck`]: one architecture on two devices (GPU against CPU): agreement and speed.
//! - [`prompt`], [`parse`], [`memory`]: prompt rendering from template files, extraction and
//!   validation of architectures from LLM replies, and the sorted memory bank.
//! - [`profile`]: what the instructor is told about the task: a profile of the training split
//!   (sensors, steps per day, missing share, graph density, autocorrelations) and each
//!   operator's traits (what it models, receptive field, parameters at the configured widths).
//! - [`prior`]: what earlier searches' memory banks say about which choices win, as one
//!   surrogate that ranks designs before they are scored (`search.prior`).
//! - [`rungs`]: successive-halving rungs (ASHA) inside a search: who is promoted next.
//! - [`schema`]: JSON schemas of replies, for servers that constrain decoding.
//! - [`config`]: the settings of a search, shared by the CLI, the actors and the daemon.
//! - [`jsonl`]: the one reader of append-only JSON-lines files (journals, study results).
//! - [`error`]: the crate's error type.

pub mod baselines;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod devcheck;
pub mod ensemble;
pub mod error;
pub mod export;
pub mod fidelity;
pub mod footprint;
pub mod gru;
pub mod hyper;
pub mod jsonl;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod parse;
pub mod prior;
pub mod profile;
pub mod prompt;
pub mod protocol;
pub mod rungs;
pub mod schema;
pub mod space;
pub mod stats;
pub mod train;

pub use error::{Error, Result};
