//! Every operator and every cell order: output shape and a non-zero gradient for every parameter.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::model::{graph_supports, param_count, ModelConfig, ModelShape, StModel};
use ists::ops::GraphSupports;
use ists::space::{Arch, SpaceKind};
use tch::{nn, Device, Kind, Tensor};

fn ring_adjacency(n: usize) -> Vec<f32> {
    let mut a = vec![0f32; n * n];
    for i in 0..n {
        a[i * n + (i + 1) % n] = 1.0;
        a[((i + 1) % n) * n + i] = 0.5;
    }
    a
}

/// The widths of this file's models.
fn small(dropout: f64, highway: bool) -> ModelConfig {
    ModelConfig {
        hidden: 8,
        end_hidden: 8,
        heads: 2,
        order: 2,
        embed: 3,
        dropout,
        highway,
    }
}

/// Runs one test at a time: libtorch's random generator is process-wide and the tests of a
/// file run on parallel threads, so a draw on another thread (inputs, weights, dropout masks)
/// between a test's seed and its build would change its weights. The tests are fast.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds a model with libtorch's generator seeded by `seed` (hold [`serial`]).
fn build(
    seed: i64,
    arch: &Arch,
    shape: ModelShape,
    cfg: &ModelConfig,
    graph: &GraphSupports,
) -> (nn::VarStore, StModel) {
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let model = StModel::new(&vs.root(), arch, shape, cfg, graph).unwrap();
    (vs, model)
}

fn check(arch_json: &str, space: SpaceKind) {
    let _serial = serial();
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let arch = Arch::from_json(arch_json, space).unwrap();
    let (n, tin, h, f) = (5i64, 6i64, 3i64, 2i64);
    let graph = graph_supports(&ring_adjacency(n as usize), n as usize, Device::Cpu).unwrap();
    let cfg = small(0.0, false);
    let shape = ModelShape {
        nodes: n,
        in_features: f,
        input_len: tin,
        horizon: h,
    };
    let (vs, model) = build(0, &arch, shape, &cfg, &graph);
    let x = Tensor::randn([3, tin, n, f], (Kind::Float, Device::Cpu));
    let y = model.forward_t(&x, true).unwrap();
    assert_eq!(y.size(), vec![3, h, n, 1], "{arch_json}");
    assert!(param_count(&vs) > 0);
    y.square().sum(Kind::Float).backward();
    for (name, var) in vs.variables() {
        let g = var.grad();
        assert!(g.defined(), "{arch_json}: no gradient for {name}");
        let norm = g.abs().sum(Kind::Float).double_value(&[]);
        assert!(norm > 0.0, "{arch_json}: zero gradient for {name}");
    }
}

#[test]
fn every_spatial_temporal_pair_in_every_order() {
    for order in ["STT", "TTS", "STP"] {
        for spatial in ["mix_gc", "dgcn", "s_trans"] {
            for temporal in ["linear_attn", "gdcc", "t_trans"] {
                let j = format!(
                    r#"{{"edges":[{{"from":0,"to":1,"op":"{order}","spatial":"{spatial}","temporal":"{temporal}"}},{{"from":1,"to":3,"op":"identity"}}]}}"#
                );
                check(&j, SpaceKind::Ists);
            }
        }
    }
}

#[test]
fn every_autocts_operator() {
    for op in ["gdcc", "dgcn", "t_trans", "s_trans"] {
        let j = format!(
            r#"{{"edges":[{{"from":0,"to":1,"op":"{op}"}},{{"from":1,"to":2,"op":"skip"}},{{"from":2,"to":3,"op":"{op}"}},{{"from":0,"to":3,"op":"none"}}]}}"#
        );
        check(&j, SpaceKind::Autocts);
    }
}

#[test]
fn reference_architecture_builds() {
    let j = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/reference-arch.json"
    ))
    .unwrap();
    check(&j, SpaceKind::Ists);
}

/// A cell, an identity skip and a second cell: every kind of edge the options below touch.
fn three_edges() -> Arch {
    Arch::from_json(
        r#"{"edges":[{"from":0,"to":1,"op":"TTS","spatial":"dgcn","temporal":"gdcc"},{"from":1,"to":3,"op":"identity"},{"from":0,"to":3,"op":"STP","spatial":"mix_gc","temporal":"linear_attn"}]}"#,
        SpaceKind::Ists,
    )
    .unwrap()
}

/// `model.dropout`: off at 0 (training forwards repeat), random while training when on, and
/// absent at evaluation, where the model computes what the same weights compute without it.
#[test]
fn dropout_acts_only_while_training() {
    let _serial = serial();
    tch::set_num_threads(1);
    let arch = three_edges();
    let (n, tin) = (5i64, 6i64);
    let graph = graph_supports(&ring_adjacency(n as usize), n as usize, Device::Cpu).unwrap();
    let shape = ModelShape {
        nodes: n,
        in_features: 2,
        input_len: tin,
        horizon: 3,
    };
    let build = |dropout: f64| {
        let cfg = small(dropout, false);
        cfg.validate().unwrap();
        build(7, &arch, shape, &cfg, &graph)
    };
    let x = Tensor::randn([4, tin, n, 2], (Kind::Float, Device::Cpu));
    let (_vs0, plain) = build(0.0);
    let (_vs1, dropped) = build(0.5);
    let same = |a: &Tensor, b: &Tensor| a.allclose(b, 1e-6, 1e-6, false);

    let (a, b) = (
        plain.forward_t(&x, true).unwrap(),
        plain.forward_t(&x, true).unwrap(),
    );
    assert!(same(&a, &b), "without dropout, training forwards repeat");
    let (a, b) = (
        dropped.forward_t(&x, true).unwrap(),
        dropped.forward_t(&x, true).unwrap(),
    );
    assert!(!same(&a, &b), "with dropout 0.5, training forwards differ");
    // Same seed, same weights: at evaluation the dropout model is the plain one.
    let eval = dropped.forward_t(&x, false).unwrap();
    assert!(same(&eval, &dropped.forward_t(&x, false).unwrap()));
    assert!(same(&eval, &plain.forward_t(&x, false).unwrap()));
}

#[test]
fn dropout_outside_zero_to_one_is_refused_by_name() {
    for bad in [-0.1, 1.0, f64::NAN] {
        let cfg = ModelConfig {
            dropout: bad,
            ..ModelConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("model.dropout"), "{bad}: {err}");
    }
}

/// `model.highway`: it starts at zero and draws no random numbers, so a model with it begins as
/// the same seed's model without it; its weight `[horizon, T_in * F]` reads input step `t`'s
/// feature `f` at `t * F + f` (set to pick the last step's target, every forecast step moves by
/// that value, node by node); and it trains (a gradient for its weights).
#[test]
fn highway_starts_as_the_plain_model_and_reads_each_nodes_own_inputs() {
    let _serial = serial();
    tch::set_num_threads(1);
    let arch = three_edges();
    let (n, tin, f, h) = (5i64, 6i64, 3i64, 4i64);
    let graph = graph_supports(&ring_adjacency(n as usize), n as usize, Device::Cpu).unwrap();
    let shape = ModelShape {
        nodes: n,
        in_features: f,
        input_len: tin,
        horizon: h,
    };
    let build = |highway: bool| build(11, &arch, shape, &small(0.0, highway), &graph);
    let x = Tensor::randn([2, tin, n, f], (Kind::Float, Device::Cpu));
    let (plain_vs, plain) = build(false);
    let (vs, with) = build(true);
    let base = plain.forward_t(&x, false).unwrap();
    assert!(base.allclose(&with.forward_t(&x, false).unwrap(), 1e-6, 1e-6, false));
    let vars = vs.variables();
    assert_eq!(vars.len(), plain_vs.variables().len() + 2);
    let weight = &vars["highway.weight"];
    assert_eq!(weight.size(), [h, tin * f, 1, 1]);

    // Pick input step tin-1, feature 0 for every forecast step.
    tch::no_grad(|| {
        let mut w = weight.shallow_clone();
        let _ = w.zero_();
        for step in 0..h {
            let _ = w.get(step).get((tin - 1) * f).fill_(1.0);
        }
    });
    let moved = with.forward_t(&x, false).unwrap() - &base; // [B,H,N,1]
    let last = x.select(1, tin - 1).select(2, 0).unsqueeze(1).unsqueeze(-1); // [B,1,N,1]
    assert!(moved.allclose(&last.expand([2, h, n, 1], false), 1e-5, 1e-5, false));

    let loss = with.forward_t(&x, true).unwrap().square().mean(None);
    loss.backward();
    let grad = vars["highway.weight"].grad();
    assert!(grad.defined() && grad.abs().sum(None).double_value(&[]) > 0.0);
}

#[test]
fn highway_counts_in_the_parameters() {
    let _serial = serial();
    let arch = three_edges();
    let shape = ModelShape {
        nodes: 4,
        in_features: 2,
        input_len: 6,
        horizon: 3,
    };
    let cfg = ModelConfig::default();
    let on = ModelConfig {
        highway: true,
        ..cfg.clone()
    };
    let count = |cfg: &ModelConfig| {
        let graph = graph_supports(&ring_adjacency(4), 4, Device::Cpu).unwrap();
        let (vs, _m) = build(0, &arch, shape, cfg, &graph);
        param_count(&vs)
    };
    // 6 steps x 2 features to 3 forecast steps, and a bias per step.
    assert_eq!(count(&on), count(&cfg) + 6 * 2 * 3 + 3);
}
