//! Masked metrics against values computed by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use ists::metrics::{masked_mae, masked_mape, masked_rmse, report_horizons, MetricsTable};
use tch::Tensor;

fn t(v: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(v).reshape(shape)
}

#[test]
fn masked_values_match_hand_computation() {
    // Targets: 2, 0 (missing), 4, 5; predictions: 1, 9, 5, 5.
    let y = t(&[2.0, 0.0, 4.0, 5.0], &[4]);
    let p = t(&[1.0, 9.0, 5.0, 5.0], &[4]);
    // Valid entries: errors 1, 1, 0 -> MAE 2/3; squared 1, 1, 0 -> RMSE sqrt(2/3);
    // APE 1/2, 1/4, 0 -> MAPE 100 * 0.75 / 3 = 25 %.
    let mae = masked_mae(&p, &y, Some(0.0)).unwrap().double_value(&[]);
    let rmse = masked_rmse(&p, &y, Some(0.0)).unwrap().double_value(&[]);
    let mape = masked_mape(&p, &y, Some(0.0)).unwrap().double_value(&[]);
    assert!((mae - 2.0 / 3.0).abs() < 1e-6, "{mae}");
    assert!((rmse - (2.0f64 / 3.0).sqrt()).abs() < 1e-6, "{rmse}");
    assert!((mape - 25.0).abs() < 1e-4, "{mape}");
    // Without a null value the zero counts for MAE (error 9): (1 + 9 + 1 + 0) / 4.
    let mae_all = masked_mae(&p, &y, None).unwrap().double_value(&[]);
    assert!((mae_all - 11.0 / 4.0).abs() < 1e-6);
    // All missing: zero, not NaN.
    let z = t(&[0.0, 0.0], &[2]);
    assert_eq!(
        masked_mae(&t(&[1.0, 2.0], &[2]), &z, Some(0.0))
            .unwrap()
            .double_value(&[]),
        0.0
    );
}

#[test]
fn table_reports_horizons_3_6_12_and_average() {
    assert_eq!(report_horizons(12), vec![3, 6, 12]);
    assert_eq!(report_horizons(4), vec![3, 4]);
    // [S=1, H=12, N=1]: error h at horizon h (1-based).
    let y: Vec<f32> = (0..12).map(|_| 10.0).collect();
    let p: Vec<f32> = (1..=12).map(|h| 10.0 + h as f32).collect();
    let table = MetricsTable::compute(&t(&p, &[1, 12, 1]), &t(&y, &[1, 12, 1]), Some(0.0)).unwrap();
    let maes: Vec<(usize, f64)> = table.horizons.iter().map(|(h, s)| (*h, s.mae)).collect();
    assert_eq!(maes, vec![(3, 3.0), (6, 6.0), (12, 12.0)]);
    assert!((table.average.mae - 6.5).abs() < 1e-6);
    assert!((table.horizons[0].1.mape - 30.0).abs() < 1e-4);
    let text = table.to_string();
    assert!(text.contains("| @12 | 12.0000 |"), "{text}");
}
