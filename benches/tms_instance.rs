//! One instance of the feature-geometry experiment (200 features into 20 hidden, batch 1024):
//! its batch drawn, then its loss and gradients, on one thread, at feature probabilities from
//! dense to the sparsest, by the fused kernel and by matrix products, side by side (rounds
//! alternate, so the machine's load moves both alike). Prints medians and GFLOP/s of the dense
//! model's five products (`10·B·n·m`), to compare with one core's FMA peak (`PEAK_GFLOPS`, 113
//! on this machine's cores: 32 FLOP per cycle at 3.55 GHz).
//!
//!   cargo bench --bench tms_instance

use std::time::Instant;

use toylens::superposition::data::Batch;
use toylens::superposition::model::{Kernel, loss_and_grads_with};
use toylens::superposition::{Output, TmsModel, TmsWeights};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (n, m, rows) = (200, 20, 1024);
    let peak: f64 = std::env::var("PEAK_GFLOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(113.0);
    let model = TmsModel {
        kind: Default::default(),
        n_features: n,
        n_hidden: m,
        n_instances: 1,
        output: Output::Relu,
    };
    let weights = TmsWeights::init(&model, 0);
    let importance = vec![1.0f32; n];
    let flops = 10.0 * (rows * n * m) as f64;
    println!("p      draw ms  fused ms  GFLOP/s  of peak  products ms  GFLOP/s  ratio");
    // `TMS_P=1,0.05` for only those probabilities (to profile one).
    let probabilities: Vec<f64> = std::env::var("TMS_P")
        .ok()
        .map(|v| v.split(',').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_else(|| vec![1.0, 0.5, 0.3, 0.15, 0.1, 0.05]);
    for p in probabilities {
        let mut batch = Batch::default();
        let (mut draw, mut fused, mut products) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..9 {
            let t = Instant::now();
            for k in 0..50 {
                batch.draw(rows, n, p, (0, 0), round * 100 + k);
            }
            draw.push(t.elapsed().as_secs_f64() / 50.0);
            let batches = [batch.clone()];
            for (kernel, times) in [
                (Kernel::Fastest, &mut fused),
                (Kernel::Products, &mut products),
            ] {
                let t = Instant::now();
                for _ in 0..50 {
                    let grads =
                        loss_and_grads_with(kernel, &model, &weights, &importance, &batches);
                    std::hint::black_box(grads);
                }
                times.push(t.elapsed().as_secs_f64() / 50.0);
            }
        }
        let (draw, fused, products) = (median(draw), median(fused), median(products));
        let gflops = |s: f64| flops / s / 1e9;
        println!(
            "{p:<6} {:>7.3}  {:>8.3}  {:>7.1}  {:>5.0} %  {:>11.3}  {:>7.1}  {:>5.2}",
            draw * 1e3,
            fused * 1e3,
            gflops(fused),
            100.0 * gflops(fused) / peak,
            products * 1e3,
            gflops(products),
            products / fused,
        );
    }
}
