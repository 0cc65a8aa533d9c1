//! The device check of `ists bench gpu`, run CPU against CPU (CI has no GPU): the comparison
//! and the timing work end to end, identical devices agree exactly, and a bound that cannot
//! hold is reported as a failure rather than passed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::data::{load, prepare, DataSpec, PrepareConfig, Prepared};
use ists::devcheck::{compare, time_proxy, Tolerance};
use ists::model::ModelConfig;
use ists::space::{Arch, SpaceKind};
use ists::train::{ProxyConfig, TrainData};
use rand::SeedableRng;
use std::path::Path;
use tch::Device;

fn prepared() -> Prepared {
    tch::set_num_threads(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let spec = DataSpec::resolve("metr-la-week", &dir).unwrap();
    prepare(&load(&spec).unwrap(), &PrepareConfig::default()).unwrap()
}

fn small() -> (ModelConfig, ProxyConfig) {
    let model = ModelConfig {
        hidden: 8,
        end_hidden: 16,
        heads: 2,
        order: 2,
        embed: 4,
        dropout: 0.0,
        highway: false,
    };
    let proxy = ProxyConfig {
        steps: 3,
        batch_size: 8,
        val_samples: 16,
        ..ProxyConfig::default()
    };
    (model, proxy)
}

fn arch() -> Arch {
    Arch::from_json(
        r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"TTS","temporal":"gdcc"},{"from":0,"to":3,"op":"identity"}]}"#,
        SpaceKind::Ists,
    )
    .unwrap()
}

#[test]
fn cpu_against_cpu_agrees_exactly_and_impossible_bounds_fail() {
    let p = prepared();
    let (model, proxy) = small();
    let (first, second) = (
        TrainData::new(&p, Device::Cpu).unwrap(),
        TrainData::new(&p, Device::Cpu).unwrap(),
    );
    let cpu_vs_cpu = |tol| compare(&arch(), &first, &second, &model, &proxy, tol);
    let a = cpu_vs_cpu(Tolerance::default()).unwrap();
    assert!(a.passed(), "{:?}", a.failures);
    assert_eq!(a.forward_max_abs, 0.0);
    assert_eq!(a.first_loss.0, a.first_loss.1);
    assert!(a.val_mae.0.is_some() && a.val_mae.0 == a.val_mae.1);
    let impossible = Tolerance {
        forward: -1.0,
        first_loss: -1.0,
        val_mae: -1.0,
    };
    let b = cpu_vs_cpu(impossible).unwrap();
    assert_eq!(b.failures.len(), 3, "{:?}", b.failures);
}

#[test]
fn timing_covers_every_candidate_after_a_warmup() {
    let p = prepared();
    let (model, proxy) = small();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let archs = vec![arch(), Arch::sample(SpaceKind::Ists, &mut rng)];
    let data = TrainData::new(&p, Device::Cpu).unwrap();
    let t = time_proxy(&archs, &data, &model, &proxy).unwrap();
    assert_eq!(t.device, "cpu");
    assert_eq!(t.seconds.len(), 2);
    assert!(t.warmup_seconds > 0.0 && t.seconds.iter().all(|s| *s > 0.0));
    assert!(t.median() >= t.seconds.iter().cloned().fold(f64::INFINITY, f64::min));
    assert!(t.val_mae.iter().all(|v| v.is_some()));
    assert!(time_proxy(&[], &data, &model, &proxy).is_err());
}
