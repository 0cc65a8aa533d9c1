//! A real short training run on the bundled METR-LA week: the validation loss goes down, runs
//! are repeatable, and the proxy reports a score.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::data::{load, prepare, DataSpec, PrepareConfig};
use ists::model::ModelConfig;
use ists::space::{Arch, SpaceKind};
use ists::train::{
    proxy_eval, train_full, train_full_resumable, EvalStatus, Loss, ProxyConfig, Schedule,
    TrainConfig, TrainData,
};
use std::path::Path;

fn data() -> TrainData {
    tch::set_num_threads(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let spec = DataSpec::resolve("metr-la-week", &dir).unwrap();
    let p = prepare(&load(&spec).unwrap(), &PrepareConfig::default()).unwrap();
    TrainData::new(&p, tch::Device::Cpu).unwrap()
}

fn arch() -> Arch {
    Arch::from_json(
        r#"{"edges":[{"from":0,"to":1,"op":"STT"},{"from":1,"to":3,"op":"TTS","temporal":"gdcc"},{"from":0,"to":3,"op":"identity"}]}"#,
        SpaceKind::Ists,
    )
    .unwrap()
}

fn small() -> ModelConfig {
    ModelConfig {
        hidden: 8,
        end_hidden: 32,
        heads: 2,
        order: 2,
        embed: 4,
        dropout: 0.0,
        highway: false,
    }
}

#[test]
fn validation_loss_goes_down_on_metr_la_week() {
    let d = data();
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 3e-3,
        max_batches_per_epoch: 12,
        eval_batch_size: 200,
        patience: 5,
        ..TrainConfig::default()
    };
    let mut seen = Vec::new();
    let (report, _) =
        train_full(&arch(), &d, &small(), &cfg, &mut |e| seen.push(e.val_mae)).unwrap();
    assert_eq!(report.status, EvalStatus::Ok);
    assert_eq!(seen.len(), 3);
    assert!(
        seen[2] < seen[0],
        "validation MAE did not go down: {seen:?}"
    );
    let test = report.test.expect("test metrics");
    assert_eq!(test.horizons.len(), 3);
    assert!(test.average.mae.is_finite() && test.average.mae > 0.0);
}

/// A cancelled final training stops at its next step with `Cancelled`, whatever its epochs; a
/// schedule (warm-up then cosine) trains like the constant rate does, epoch by epoch.
#[test]
fn final_training_stops_when_cancelled_and_runs_with_a_schedule() {
    let d = data();
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 16,
        max_batches_per_epoch: 4,
        eval_batch_size: 200,
        schedule: Schedule::Cosine,
        warmup_epochs: 1,
        ..TrainConfig::default()
    };
    let stop = std::sync::atomic::AtomicBool::new(true);
    let r = train_full_resumable(&arch(), &d, &small(), &cfg, &mut |_| {}, &stop, None);
    assert!(matches!(r, Err(ists::Error::Cancelled)), "{:?}", r.err());
    let mut epochs = 0;
    let (report, _) = train_full(&arch(), &d, &small(), &cfg, &mut |_| epochs += 1).unwrap();
    assert_eq!((epochs, report.status), (2, EvalStatus::Ok));
}

/// `loss = "mse"` trains on squared error and keeps the epoch with the best validation RMSE,
/// which every epoch's log records; an MAE training's logs carry no RMSE.
#[test]
fn squared_error_training_chooses_its_epoch_on_validation_rmse() {
    let d = data();
    let cfg = TrainConfig {
        epochs: 4,
        batch_size: 16,
        lr: 3e-3,
        max_batches_per_epoch: 6,
        eval_batch_size: 200,
        patience: 5,
        ..TrainConfig::default()
    };
    let (mae, _) = train_full(&arch(), &d, &small(), &cfg, &mut |_| {}).unwrap();
    assert!(mae.history.iter().all(|e| e.val_rmse.is_none()));
    let mse_cfg = TrainConfig {
        loss: Loss::Mse,
        ..cfg
    };
    let (mse, _) = train_full(&arch(), &d, &small(), &mse_cfg, &mut |_| {}).unwrap();
    assert_eq!(mse.status, EvalStatus::Ok);
    let rmse: Vec<f64> = mse.history.iter().map(|e| e.val_rmse.unwrap()).collect();
    assert_eq!(rmse.len(), 4);
    // RMSE is never below MAE on the same forecasts.
    for e in &mse.history {
        assert!(e.val_rmse.unwrap() >= e.val_mae, "{e:?}");
    }
    let best = (0..rmse.len())
        .min_by(|&a, &b| rmse[a].total_cmp(&rmse[b]))
        .unwrap();
    assert_eq!(mse.best_epoch, best + 1, "{rmse:?}");
    // The same batches, another loss: squared errors in mph^2 are far above absolute ones.
    assert!(
        mse.history[0].train_loss > 4.0 * mae.history[0].train_loss,
        "{} vs {}",
        mse.history[0].train_loss,
        mae.history[0].train_loss
    );
}

#[test]
fn proxy_is_seeded_and_repeatable() {
    let d = data();
    let cfg = ProxyConfig {
        steps: 4,
        batch_size: 8,
        val_samples: 32,
        ..ProxyConfig::default()
    };
    let a = proxy_eval(&arch(), &d, &small(), &cfg).unwrap();
    let b = proxy_eval(&arch(), &d, &small(), &cfg).unwrap();
    assert_eq!(a.status, EvalStatus::Ok);
    assert!(a.val_mae.unwrap() > 0.0);
    assert_eq!(a.val_mae, b.val_mae, "same seed, different score");
    assert_eq!(a.last_loss, b.last_loss);
}

#[test]
fn divergence_is_a_result_not_a_crash() {
    let d = data();
    let cfg = ProxyConfig {
        steps: 3,
        batch_size: 8,
        lr: 3e38,
        clip: 0.0,
        val_samples: 16,
        ..ProxyConfig::default()
    };
    let r = proxy_eval(&arch(), &d, &small(), &cfg).unwrap();
    assert!(
        matches!(r.status, EvalStatus::Diverged { .. }),
        "expected divergence, got {:?}",
        r.status
    );
    assert!(r.val_mae.is_none());
}

/// A design's `hyper` acts as the joint space says: its width replaces `model.hidden` and its
/// learning-rate factor scales the proxy's rate (the same run as the plain design at that
/// width and rate, to the bit), and stacked blocks add the wiring's weights once per block.
#[test]
fn a_joint_space_design_trains_with_its_own_width_depth_and_rate() {
    use ists::space::Hyper;
    let d = data();
    let cfg = ProxyConfig {
        steps: 3,
        batch_size: 8,
        val_samples: 32,
        ..ProxyConfig::default()
    };
    let with = |hidden, blocks, lr_scale| Arch {
        hyper: Some(Hyper {
            hidden,
            blocks,
            lr_scale,
        }),
        ..arch()
    };
    let joint = proxy_eval(&with(16, 1, 2.0), &d, &small(), &cfg).unwrap();
    let wide = ModelConfig {
        hidden: 16,
        ..small()
    };
    let fast = ProxyConfig {
        lr: cfg.lr * 2.0,
        ..cfg.clone()
    };
    let plain = proxy_eval(&arch(), &d, &wide, &fast).unwrap();
    assert_eq!(joint.status, EvalStatus::Ok);
    assert_eq!(joint.params, plain.params);
    assert_eq!(
        joint.val_mae, plain.val_mae,
        "hyper is not the configured run"
    );
    assert_eq!(joint.last_loss, plain.last_loss);

    let one = proxy_eval(&with(8, 1, 1.0), &d, &small(), &cfg).unwrap();
    let two = proxy_eval(&with(8, 2, 1.0), &d, &small(), &cfg).unwrap();
    let three = proxy_eval(&with(8, 3, 1.0), &d, &small(), &cfg).unwrap();
    assert_eq!(two.status, EvalStatus::Ok);
    let block = two.params - one.params;
    assert!(block > 0, "a second block added no weights");
    assert_eq!(three.params - two.params, block, "blocks differ in size");
    assert_eq!(
        one.params,
        proxy_eval(&arch(), &d, &small(), &cfg).unwrap().params
    );

    // Heads that do not divide the design's width: an error naming the field, not a panic.
    let err = proxy_eval(&with(9, 1, 1.0), &d, &small(), &cfg)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("hyper.hidden (9) must be a multiple of model.heads (2)"),
        "{err}"
    );
}
