//! One SAE step's parts (4096 activations of a superposition model's 20 hidden dimensions, 200
//! latents, the standard SAE), on both cores: making the activations, the encoder's dense
//! product, and the whole loss and gradients, at initialisation (about half the latents fire)
//! and after training (L0 ≈ 28). Medians of 5 × 100.
//!
//!   cargo bench --bench sae_step

use std::time::Instant;

use toylens::sae::{Activations, Architecture, SaeRun, SaeTrainer, SaeWeights, TmsHidden};
use toylens::superposition::{TmsRun, TmsTrainer};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // The ground-truth model: 100 features into 20 at p 0.02.
    let run = TmsRun::from_json(
        r#"{"model": {"kind": "tms", "n_features": 100, "n_hidden": 20, "n_instances": 1},
            "task": {"feature_probability": {"constant": 0.02}, "importance": {"decay": 1.0}},
            "train": {"steps": 4000, "eval_every": 4000}}"#,
    )
    .expect("a valid run");
    let mut tms = TmsTrainer::new(run.clone()).expect("a valid run");
    while !tms.is_finished() {
        tms.step().expect("training runs");
    }
    let weights = tms.weights().clone();
    let source = || Box::new(TmsHidden::new(&run, &weights, 0).expect("instance 0"));
    let architecture = Architecture::Standard {
        l1_coefficient: 0.1,
    };
    let mut sae_run = SaeRun::standard(200, 0.1);
    sae_run.steps = 2000;
    let mut trainer = SaeTrainer::new(sae_run, source()).expect("a valid SAE");
    while !trainer.is_finished() {
        trainer.step().expect("training runs");
    }
    let rows = 4096;
    let mut src = source();
    let mut x = Vec::new();
    let dead = vec![false; 200];
    for (label, w) in [
        ("initialised", SaeWeights::init(20, 200, 0.1, 0)),
        ("trained", trainer.weights().clone()),
    ] {
        let (mut fill, mut pre, mut full, mut l0) = (vec![], vec![], vec![], 0.0);
        for round in 0..5 {
            let t = Instant::now();
            for k in 0..100 {
                src.fill(&mut x, rows, round * 100 + k)
                    .expect("a superposition model's activations");
            }
            fill.push(t.elapsed().as_secs_f64() * 10.0);
            let t = Instant::now();
            for _ in 0..100 {
                std::hint::black_box(w.pre_activations(&x, rows));
            }
            pre.push(t.elapsed().as_secs_f64() * 10.0);
            let t = Instant::now();
            for _ in 0..100 {
                let (out, grads) = w.loss_and_grads(&x, rows, architecture, &dead);
                l0 = out.active as f64 / rows as f64;
                std::hint::black_box(grads);
            }
            full.push(t.elapsed().as_secs_f64() * 10.0);
        }
        println!(
            "{label:<12} L0 {l0:>5.1}: activations {:.3} ms, encoder {:.3} ms, loss and gradients {:.3} ms",
            median(fill),
            median(pre),
            median(full)
        );
    }
}
