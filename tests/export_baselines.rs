//! Export -> load -> predict gives the same outputs; baselines use the model's split and match
//! hand computations.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::baselines::{historical_average, last_value, score, targets};
use ists::data::{load, prepare, DataSpec, Graph, PrepareConfig, RawDataset, Signal};
use ists::model::ModelConfig;
use ists::space::{Arch, SpaceKind};
use ists::train::{spread, TrainData, Trained};
use std::path::{Path, PathBuf};

#[test]
fn export_load_predict_round_trip() {
    tch::set_num_threads(1);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let spec = DataSpec::resolve("metr-la-week", &dir).unwrap();
    let p = prepare(&load(&spec).unwrap(), &PrepareConfig::default()).unwrap();
    let data = TrainData::new(&p, tch::Device::Cpu).unwrap();
    let arch = Arch::from_json(
        r#"{"edges":[{"from":0,"to":1,"op":"STT","temporal":"gdcc"},{"from":1,"to":3,"op":"TTS","spatial":"dgcn"}]}"#,
        SpaceKind::Ists,
    )
    .unwrap();
    let cfg = ModelConfig {
        hidden: 8,
        end_hidden: 16,
        heads: 2,
        order: 2,
        embed: 4,
        dropout: 0.0,
        highway: false,
    };
    let trained = Trained::build(&arch, &data, &cfg, 3).unwrap();
    let idx = spread(&data.test, 20);
    let (before, _) = trained.predict(&data, &idx, 8).unwrap();
    let out = tempfile::tempdir().unwrap();
    ists::export::save(out.path(), &trained, &arch, &data, &cfg).unwrap();
    let (loaded, arch2, meta) = ists::export::load(out.path(), &data).unwrap();
    assert_eq!(arch2.hash(), arch.hash());
    assert_eq!(meta.nodes, 207);
    let (after, _) = loaded.predict(&data, &idx, 8).unwrap();
    assert!(
        before.allclose(&after, 0.0, 0.0, false),
        "outputs changed after export/load"
    );
    // A fresh model with another seed differs (so the comparison above can fail).
    let other = Trained::build(&arch, &data, &cfg, 4).unwrap();
    let (o, _) = other.predict(&data, &idx, 8).unwrap();
    assert!(!before.allclose(&o, 1e-6, 1e-6, false));
}

fn tiny_series(values: &[f32], n: usize, spd: usize) -> ists::data::Prepared {
    let t = values.len() / n;
    let raw = RawDataset {
        name: "tiny".into(),
        signal: Signal {
            values: values.to_vec(),
            t,
            n,
            f: 1,
        },
        graph: Graph {
            n,
            adj: vec![1.0; n * n],
            node_ids: None,
        },
        signal_path: PathBuf::from("mem"),
        graph_path: PathBuf::from("mem"),
        steps_per_day: spd,
        null_value: Some(0.0),
        first_weekday: None,
    };
    let cfg = PrepareConfig {
        input_len: 2,
        output_len: 1,
        split: [0.5, 0.25, 0.25],
        time_of_day: true,
        ..PrepareConfig::default()
    };
    prepare(&raw, &cfg).unwrap()
}

#[test]
fn historical_average_and_last_value_by_hand() {
    // One sensor, period 2: steps 0..11 with values 1,10,3,12,5,14,7,16,9,18,11,20.
    let v: Vec<f32> = (0..12)
        .map(|i| {
            if i % 2 == 0 {
                1.0 + i as f32
            } else {
                9.0 + i as f32 + 0.0
            }
        })
        .collect();
    let p = tiny_series(&v, 1, 2);
    // 10 samples (12 - 2 - 1 + 1): train 5, test 3 (round(2.5)=3 with DCRNN rounding), val rest.
    let train_end = p.splits.train.end;
    let test = p.splits.test.clone();
    // Fit on the steps the training windows read: 0 .. train_end + input_len + output_len - 1.
    let fit_end = train_end + 2 + 1 - 1;
    let even: Vec<f32> = (0..fit_end).filter(|s| s % 2 == 0).map(|s| v[s]).collect();
    let odd: Vec<f32> = (0..fit_end).filter(|s| s % 2 == 1).map(|s| v[s]).collect();
    let mean = |x: &[f32]| x.iter().sum::<f32>() / x.len() as f32;
    let ha = historical_average(&p, &test);
    for (k, s) in test.clone().enumerate() {
        let step = s + 2;
        let want = if step % 2 == 0 {
            mean(&even)
        } else {
            mean(&odd)
        };
        assert!(
            (ha[k] - want).abs() < 1e-5,
            "sample {s}: {} vs {want}",
            ha[k]
        );
    }
    let lv = last_value(&p, &test);
    for (k, s) in test.clone().enumerate() {
        assert_eq!(lv[k], v[s + 1]);
    }
    // Scored on the same samples whose targets the models see.
    assert_eq!(
        targets(&p, &test),
        test.clone().map(|s| v[s + 2]).collect::<Vec<_>>()
    );
    let m = score(&p, &test, &lv).unwrap();
    assert!(m.average.mae > 0.0);
    assert!(score(&p, &test, &lv[1..]).is_err());
}
