//! The induction and modular-addition tasks end to end: training, their metrics, checkpoints
//! that carry the task, and the CLI's presets, flags, JSON and errors.

mod common;

use common::toylens;
use std::path::Path;
use std::process::Output;

use candle_core::Device;
use serde_json::Value;
use toylens::checkpoint::Checkpoint;
use toylens::metrics::Metrics;
use toylens::model::Transformer;
use toylens::objective::evaluate_induction;
use toylens::task::{InductionConfig, TaskConfig, TaskKind};
use toylens::train::{Control, Preset, Progress, RunConfig, Trainer, drive};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// A small induction run: 2 layers, vocabulary 8, half 4.
fn small_induction() -> RunConfig {
    let mut cfg = RunConfig::from_preset(Preset::Induction);
    cfg.task = TaskConfig::Induction(InductionConfig {
        vocab: 8,
        half: 4,
        val_size: 64,
        ..Default::default()
    });
    cfg.model.d_model = 16;
    cfg.model.d_head = 4;
    cfg.fit_model_to_task();
    cfg.train.batch_size = 16;
    cfg.train.steps = 40;
    cfg.train.eval_every = 10;
    cfg
}

/// The grokking-fast preset's training on a small modular-addition model: 4 heads.
fn small_modular(p: usize, train_frac: f64, d_model: usize, d_mlp: usize) -> RunConfig {
    let mut cfg = RunConfig::from_preset(Preset::GrokkingFast);
    cfg.task = TaskConfig::ModularAddition(toylens::task::ModularAdditionConfig { p, train_frac });
    cfg.model.d_model = d_model;
    cfg.model.d_head = d_model / 4;
    cfg.model.d_mlp = Some(d_mlp);
    cfg.fit_model_to_task();
    cfg
}

/// The model with every query weight and bias zeroed: each head attends uniformly to the causal
/// past, so query q gives each key the weight 1/(q+1).
fn uniform_attention(cfg: &RunConfig, weights: &toylens::model::Weights) -> Transformer {
    let mut flat = weights.clone();
    for name in [
        "blocks.0.attn.W_Q",
        "blocks.1.attn.W_Q",
        "blocks.0.attn.b_Q",
        "blocks.1.attn.b_Q",
    ] {
        flat.get_mut(name).unwrap().fill(0.0);
    }
    Transformer::new(&cfg.model, &flat, &Device::Cpu).unwrap()
}

/// Next-token cross-entropy at every position of one sequence, computed from its logits.
fn next_token_nll(model: &Transformer, seq: &[u32]) -> Vec<f64> {
    let input = candle_core::Tensor::from_slice(seq, (1, seq.len()), &Device::Cpu).unwrap();
    let (logits, _) = model
        .forward_hooked(&input, toylens::model::Capture::Nothing, None)
        .unwrap();
    let rows = logits.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    (0..seq.len() - 1)
        .map(|i| {
            let r = &rows[i];
            let max = r.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let lse = max + r.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
            lse - r[seq[i + 1] as usize] as f64
        })
        .collect()
}

fn run(cfg: RunConfig) -> toylens::train::Outcome {
    drive(Trainer::new(cfg, &Device::Cpu).unwrap(), |_| {
        Control::Continue
    })
    .unwrap()
}

#[test]
fn induction_metrics_follow_each_sequence_s_gap() {
    // With a gap of 0..=3 the copy starts at 4..=7: the scores and losses follow each sequence's
    // own copy. A model whose heads attend uniformly to the causal past gives query q the
    // weight 1/(q+1), so the induction score is the mean of 1/(q+1) over each copy's queries.
    let mut cfg = small_induction();
    let TaskConfig::Induction(task) = &mut cfg.task else {
        unreachable!()
    };
    task.gap_max = 3;
    let task = task.clone();
    cfg.fit_model_to_task();
    assert!(cfg.model.n_ctx >= task.seq_len());
    let uniform = uniform_attention(&cfg, &toylens::model::Weights::init(&cfg.model, 3));
    let tokens = task.val_set(0);
    let e = evaluate_induction(&uniform, &task, &tokens).unwrap();
    let starts: Vec<usize> = tokens
        .chunks_exact(11)
        .map(|s| task.repeat_start(s))
        .collect();
    assert!(starts.iter().any(|&s| s != 4), "some sequences have a gap");
    let expect: f64 = starts
        .iter()
        .map(|&start| {
            (start..start + 4)
                .map(|q| 1.0 / (q as f64 + 1.0))
                .sum::<f64>()
                / 4.0
        })
        .sum::<f64>()
        / starts.len() as f64;
    for l in 0..2 {
        for h in 0..4 {
            let ind = e.induction_score[l][h];
            assert!((ind - expect).abs() < 1e-5, "L{l}H{h}: {ind} vs {expect}");
        }
    }
    // The repeated-half loss of one sequence is over its copy's predictions only.
    let seq = &tokens[..11];
    let start = task.repeat_start(seq);
    let nll = next_token_nll(&uniform, seq);
    let one = evaluate_induction(&uniform, &task, seq).unwrap();
    let repeated = nll[start..start + 3].iter().sum::<f64>() / 3.0;
    assert!((one.loss_repeated_half - repeated).abs() < 1e-5);
    // And a short run trains on the gapped data end to end.
    cfg.train.steps = 20;
    let outcome = run(cfg);
    assert_eq!(outcome.checkpoint.history.len(), 2);
}

#[test]
fn induction_metrics_are_measured_on_the_definition() {
    let cfg = small_induction();
    let outcome = run(cfg.clone());
    let history = &outcome.checkpoint.history;
    assert_eq!(history.len(), 4);
    let steps: Vec<usize> = history.iter().map(Metrics::progress).collect();
    assert_eq!(steps, [10, 20, 30, 40]);
    let m = history[0].induction().unwrap();
    assert_eq!(m.induction_score.len(), 2);
    assert_eq!(m.induction_score[1].len(), 4);
    // Early on nothing is learned: both halves sit near ln V.
    let ln_v = 8f64.ln();
    assert!((m.loss_first_half - ln_v).abs() < 0.5, "{m:?}");
    // The scores are the mean attention to the named positions: a model whose heads attend
    // uniformly to the causal past gives each query q the weight 1/(q+1).
    let model = Transformer::new(&cfg.model, &outcome.checkpoint.weights, &Device::Cpu).unwrap();
    let task = cfg.task.clone();
    let TaskConfig::Induction(task) = task else {
        unreachable!()
    };
    let uniform = uniform_attention(&cfg, &outcome.checkpoint.weights);
    let tokens = task.val_set(0);
    let e = evaluate_induction(&uniform, &task, &tokens).unwrap();
    let expect_ind: f64 = (4..8).map(|q| 1.0 / (q as f64 + 1.0)).sum::<f64>() / 4.0;
    let expect_prev: f64 = (1..8).map(|q| 1.0 / (q as f64 + 1.0)).sum::<f64>() / 7.0;
    for l in 0..2 {
        for h in 0..4 {
            let (ind, prev) = (e.induction_score[l][h], e.prev_token_score[l][h]);
            assert!(
                (ind - expect_ind).abs() < 1e-5,
                "L{l}H{h}: {ind} vs {expect_ind}"
            );
            assert!(
                (prev - expect_prev).abs() < 1e-5,
                "L{l}H{h}: {prev} vs {expect_prev}"
            );
        }
    }
    // The losses are the mean next-token cross-entropy over each half's predictions.
    let nll = next_token_nll(&model, &tokens[..8]);
    let one = evaluate_induction(&model, &task, &tokens[..8]).unwrap();
    let first = nll[0..3].iter().sum::<f64>() / 3.0;
    let repeated = nll[4..7].iter().sum::<f64>() / 3.0;
    assert!((one.loss_first_half - first).abs() < 1e-5);
    assert!((one.loss_repeated_half - repeated).abs() < 1e-5);
}

#[test]
fn checkpoints_carry_the_task_and_its_history() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [small_induction(), {
        let mut c = small_modular(11, 0.5, 16, 32);
        c.train.epochs = 30;
        c.train.eval_every = 10;
        c
    }] {
        let outcome = run(cfg.clone());
        let path = dir
            .path()
            .join(format!("{}.safetensors", cfg.task.kind().name()));
        outcome.checkpoint.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.config, cfg);
        assert_eq!(back.history, outcome.checkpoint.history);
        assert_eq!(back.snapshots.len(), outcome.checkpoint.snapshots.len());
        assert_eq!(back.snapshots.last().unwrap().epoch, cfg.total_units());
    }
}

#[test]
fn modular_addition_memorises_its_training_pairs() {
    let mut cfg = small_modular(11, 0.5, 32, 64);
    cfg.train.epochs = 300;
    cfg.train.eval_every = 100;
    cfg.train.weight_decay = 0.1;
    let mut path = String::new();
    let outcome = drive(Trainer::new(cfg, &Device::Cpu).unwrap(), |p| {
        if let Progress::Started { path: p, .. } = p {
            path = p;
        }
        Control::Continue
    })
    .unwrap();
    assert!(path.starts_with("fixed-query shortcut, "), "{path}");
    let last = outcome
        .checkpoint
        .history
        .last()
        .unwrap()
        .modular()
        .unwrap()
        .clone();
    assert_eq!(last.train_acc, 1.0, "{last:?}");
    assert!(last.train_loss < 0.1, "{last:?}");
    assert!(last.weight_norm > 0.0);
}

#[test]
fn cli_trains_every_new_preset_with_the_documented_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ind.safetensors");
    let o = toylens(&[
        "train",
        "--preset",
        "induction",
        "--steps",
        "50",
        "--eval-every",
        "25",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    for key in [
        "step",
        "loss_first_half",
        "loss_repeated_half",
        "induction_score",
        "prev_token_score",
        "elapsed_s",
    ] {
        assert!(lines[0].get(key).is_some(), "no {key} in {}", lines[0]);
    }
    assert_eq!(lines[1]["step"], 50);
    assert_eq!(lines[0]["induction_score"].as_array().unwrap().len(), 2);
    // The checkpoint opens as an induction run: eval measures the task's own metrics.
    let o = toylens(&["eval", out.to_str().unwrap(), "--json", "--samples", "64"]);
    let report = &json_lines(&o)[0];
    assert_eq!(report["task"], "induction");
    assert!(report["loss_repeated_half"].as_f64().unwrap() > 0.0);
    assert_eq!(report["ablation"], "");
    // Heads of any layer can be ablated: zero or mean, the metrics move, the report says so.
    for mode in ["zero", "mean"] {
        let o = toylens(&[
            "eval",
            out.to_str().unwrap(),
            "--json",
            "--samples",
            "64",
            "--ablate",
            "L1H0,L1H1,L1H2,L1H3",
            "--ablate-mode",
            mode,
        ]);
        let ablated = &json_lines(&o)[0];
        assert_eq!(
            ablated["ablation"],
            format!(
                "L1H0 {m}-ablated, L1H1 {m}-ablated, L1H2 {m}-ablated, L1H3 {m}-ablated",
                m = mode
            )
        );
        assert_ne!(ablated["loss_repeated_half"], report["loss_repeated_half"]);
        // An ablated head attends as before: the ablation changes z, not the pattern (to
        // rounding: unablated, the evaluation takes the direct forward pass, not the graph).
        let scores = |r: &Value| -> Vec<f64> {
            let layer = r["prev_token_score"][1].as_array().unwrap();
            layer.iter().map(|s| s.as_f64().unwrap()).collect()
        };
        let (a, b) = (scores(ablated), scores(report));
        assert_eq!(a.len(), 4);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{mode}: {a:?} against {b:?}");
        }
    }

    let out = dir.path().join("mod.safetensors");
    let o = toylens(&[
        "train",
        "--task",
        "modular_addition",
        "--p",
        "11",
        "--train-frac",
        "0.5",
        "--epochs",
        "20",
        "--eval-every",
        "10",
        "--seed",
        "3",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2);
    for key in [
        "epoch",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "weight_norm",
        "elapsed_s",
    ] {
        assert!(lines[1].get(key).is_some(), "no {key} in {}", lines[1]);
    }
    let ckpt = Checkpoint::load(&out).unwrap();
    assert_eq!(ckpt.config.task.kind(), TaskKind::ModularAddition);
    assert_eq!(ckpt.config.seed, 3);
    assert_eq!(ckpt.config.model.d_vocab_out(), 11);
    let o = toylens(&["eval", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("test  loss"),
        "{}",
        text(&o.stdout)
    );
    // Ablated, through the general path: the losses move and the progress measures (of the
    // unablated MLP) are not reported. Ablating nothing that matters gives the same numbers.
    let eval_json = |extra: &[&str]| -> Value {
        let mut args = vec!["eval", out.to_str().unwrap(), "--json"];
        args.extend(extra);
        json_lines(&toylens(&args))[0].clone()
    };
    let plain = eval_json(&[]);
    let ablated = eval_json(&["--ablate", "L0H0,L0H1,L0H2,L0H3"]);
    assert_eq!(
        ablated["ablation"],
        "head 0 zero-ablated, head 1 zero-ablated, head 2 zero-ablated, head 3 zero-ablated"
    );
    assert!(ablated["progress"].is_null() && !plain["progress"].is_null());
    assert_ne!(ablated["test_loss"], plain["test_loss"]);
    let mean = eval_json(&["--ablate", "L0H1", "--ablate-mode", "mean"]);
    assert!(mean["test_loss"].as_f64().unwrap().is_finite());
    let o = toylens(&["inspect", out.to_str().unwrap(), "3", "4"]);
    assert!(
        text(&o.stdout).contains("expected 7"),
        "{}",
        text(&o.stdout)
    );
    // Its circuits: the OV circuit reads p + 1 tokens and writes p, so the copying score is
    // taken over the p numbers (this panicked on the non-square circuit).
    let o = toylens(&["circuits", out.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let c: Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    assert_eq!(c["ov_full"][0][0].as_array().unwrap().len(), 12);
    assert_eq!(c["ov_full"][0][0][0].as_array().unwrap().len(), 11);
    let scores = c["copying_score"][0].as_array().unwrap();
    assert_eq!(scores.len(), 4);
    assert!(scores.iter().all(|s| s.as_f64().unwrap().abs() <= 1.0));
}

#[test]
fn cli_flags_that_do_not_fit_the_task_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--preset", "induction", "--epochs", "5"],
            "use --steps",
        ),
        (vec!["--preset", "grokking", "--steps", "5"], "use --epochs"),
        (
            vec!["--preset", "fast", "--half", "5"],
            "--half is a setting of the induction",
        ),
        (
            vec!["--preset", "induction", "--p", "7"],
            "--p is a setting of the modular_addition",
        ),
        (
            vec!["--task", "induction", "--half", "1"],
            "half must be at least 2",
        ),
        (
            vec!["--task", "modular_addition", "--train-frac", "1.5"],
            "train_frac",
        ),
        (
            vec!["--preset", "induction", "--task", "modular_addition"],
            "contradicts",
        ),
        (
            vec!["--task", "induction", "--eval-every", "0"],
            "eval_every",
        ),
    ] {
        let mut all = vec!["train"];
        all.extend(args.iter().copied());
        all.extend(["--out", out]);
        let o = toylens(&all);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{all:?} succeeded");
        assert!(!err.contains("panicked"), "{all:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{all:?}: {err}");
        assert!(
            err.contains(needle),
            "{all:?}: \"{err}\" lacks \"{needle}\""
        );
        assert!(!Path::new(out).exists());
    }
}

#[test]
fn sweep_runs_a_task_preset_and_summarises_its_milestone() {
    let dir = tempfile::tempdir().unwrap();
    let o = toylens(&[
        "sweep",
        "--preset",
        "induction",
        "--seeds",
        "0,1",
        "--steps",
        "30",
        "--json",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows: Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["task"], "induction");
    assert_eq!(rows[0]["trained"], 30);
    assert_eq!(
        (rows[0]["seed"].as_u64(), rows[1]["seed"].as_u64()),
        (Some(0), Some(1))
    );
    // The best last-layer induction score is the run's score, within [−1, 1].
    let score = rows[0]["metrics"]["score"].as_f64().unwrap();
    assert!((-1.0..=1.0).contains(&score), "{score}");
    assert!(rows[0]["metrics"]["loss_repeated_half"].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(dir.path().join("summary.csv")).unwrap();
    assert!(
        csv.starts_with("index,train.steps,seed,status,regime,unit,trained,"),
        "{csv}"
    );
    assert!(csv.contains("\n1,30,1,done,,step,30,"), "{csv}");
}

#[test]
fn progress_measures_follow_their_definitions() {
    use toylens::analysis::progress_measures;
    use toylens::model::Weights;
    let p = 13;
    let cfg = small_modular(p, 0.4, 16, 24);
    let weights = Weights::init(&cfg.model, 5);
    let model = Transformer::new(&cfg.model, &weights, &Device::Cpu).unwrap();
    let TaskConfig::ModularAddition(task) = &cfg.task else {
        unreachable!()
    };
    let split = task.split(5);
    let m = progress_measures(&model, &split).unwrap().unwrap();
    // Parseval: the frequencies' squared norms and the constant's add up to ‖W_E[:p]‖².
    let w_e = &weights.get("embed.W_E")[..p * 16];
    let total: f64 = w_e.iter().map(|&v| (v as f64).powi(2)).sum();
    let mean_sq: f64 = (0..16)
        .map(|j| {
            let mean = (0..p).map(|t| w_e[t * 16 + j] as f64).sum::<f64>() / p as f64;
            p as f64 * mean * mean
        })
        .sum();
    let freqs: f64 = m.fourier_norms.iter().map(|n| n * n).sum();
    assert_eq!(m.fourier_norms.len(), 6);
    assert!(
        (freqs + mean_sq - total).abs() < 1e-4 * total,
        "{freqs} + {mean_sq} vs {total}"
    );
    // Five distinct key frequencies in 1..=6, and finite losses near chance for a random model.
    let mut keys = m.key_frequencies.clone();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 5);
    assert!(keys.iter().all(|k| (1..=6).contains(k)));
    for loss in [m.restricted_loss, m.excluded_loss] {
        assert!(
            loss.is_finite() && (loss - (p as f64).ln()).abs() < 1.0,
            "{m:?}"
        );
    }
    // An attention-only model has no neurons to measure.
    let mut attn_only = cfg.model.clone();
    attn_only.attn_only = true;
    attn_only.d_mlp = None;
    attn_only.act_fn = None;
    let model = Transformer::new(&attn_only, &Weights::init(&attn_only, 5), &Device::Cpu).unwrap();
    assert!(progress_measures(&model, &split).unwrap().is_none());
}
