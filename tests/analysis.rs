//! The analyses against independent computations.

use std::path::Path;

use candle_core::{Device, Tensor};
use toylens::analysis::{circuits, exhaustive, head_traces, inspect, inspect_ablated, mean_z};
use toylens::checkpoint::Checkpoint;
use toylens::model::{Ablation, HeadMode, Transformer};
use toylens::task::{SkipTrigramConfig, TaskConfig};

fn fixture() -> (Checkpoint, Transformer) {
    let ckpt = Checkpoint::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/skip_trigram_tl/model.safetensors"),
    )
    .unwrap();
    let model = Transformer::new(&ckpt.config.model, &ckpt.weights, &Device::Cpu).unwrap();
    (ckpt, model)
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn circuits_match_independent_matrix_products() {
    let (ckpt, _) = fixture();
    let cfg = &ckpt.config.model;
    let w = &ckpt.weights;
    let c = circuits(cfg, w).unwrap();
    let dev = Device::Cpu;
    let (h_n, v, d) = (cfg.n_heads, cfg.d_vocab, cfg.d_head);
    let t =
        |data: &[f32], shape: (usize, usize, usize)| Tensor::from_slice(data, shape, &dev).unwrap();
    let w_q = t(w.get("blocks.0.attn.W_Q"), (h_n, v, d));
    let w_k = t(w.get("blocks.0.attn.W_K"), (h_n, v, d));
    let w_v = t(w.get("blocks.0.attn.W_V"), (h_n, v, d));
    let w_o = t(w.get("blocks.0.attn.W_O"), (h_n, d, v));
    let bias = |b: &[f32]| Tensor::from_slice(b, (h_n, 1, d), &dev).unwrap();
    let w_e = Tensor::eye(v, candle_core::DType::F32, &dev).unwrap();
    for h in 0..h_n {
        let head = |x: &Tensor| x.get(h).unwrap();
        // W_E (W_V + b_V) W_O W_U, with W_E = W_U = I written out.
        let ov = w_e
            .matmul(
                &head(&w_v)
                    .broadcast_add(&head(&bias(w.get("blocks.0.attn.b_V"))))
                    .unwrap(),
            )
            .unwrap()
            .matmul(&head(&w_o))
            .unwrap()
            .matmul(&w_e)
            .unwrap();
        let ov_plain = w_e
            .matmul(&head(&w_v))
            .unwrap()
            .matmul(&head(&w_o))
            .unwrap();
        let q = w_e
            .matmul(
                &head(&w_q)
                    .broadcast_add(&head(&bias(w.get("blocks.0.attn.b_Q"))))
                    .unwrap(),
            )
            .unwrap();
        let k = w_e
            .matmul(
                &head(&w_k)
                    .broadcast_add(&head(&bias(w.get("blocks.0.attn.b_K"))))
                    .unwrap(),
            )
            .unwrap();
        let qk = (q.matmul(&k.t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
        let qk_plain =
            (head(&w_q).matmul(&head(&w_k).t().unwrap()).unwrap() / (d as f64).sqrt()).unwrap();
        let flat = |m: &Vec<Vec<f32>>| m.iter().flatten().copied().collect::<Vec<f32>>();
        let tv = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(max_diff(&flat(&c.ov[h]), &tv(&ov)) < 1e-5, "OV head {h}");
        assert!(
            max_diff(&flat(&c.ov_no_bias[h]), &tv(&ov_plain)) < 1e-5,
            "OV (no bias) head {h}"
        );
        assert!(max_diff(&flat(&c.qk[h]), &tv(&qk)) < 1e-5, "QK head {h}");
        assert!(
            max_diff(&flat(&c.qk_no_bias[h]), &tv(&qk_plain)) < 1e-5,
            "QK (no bias) head {h}"
        );
    }
    // The folded QK is the exact attention score: compare with the model's own scores.
    let (_, model) = fixture();
    let tokens = [2u32, 5, 3, 0];
    let cache = model.run_with_cache(&tokens).unwrap();
    let scores = cache.get("blocks.0.attn.hook_attn_scores").unwrap(); // masked above the diagonal
    for h in 0..h_n {
        for (qi, &qt) in tokens.iter().enumerate() {
            for (ki, &kt) in tokens.iter().enumerate().take(qi + 1) {
                let want = scores.at(&[0, h, qi, ki]);
                assert!((c.qk[h][qt as usize][kt as usize] - want).abs() < 1e-5);
            }
        }
    }
    // And the folded OV row of a token is what the head writes when it attends only to it.
    let one = model.run_with_cache(&[3]).unwrap(); // a single token attends to itself with weight 1
    for h in 0..h_n {
        let got = one.decomposition.as_ref().unwrap().head_out_last.rows(&[h]);
        assert!(max_diff(got, &c.ov[h][3]) < 1e-5);
    }
    assert_eq!(c.direct[4][4], 1.0);
    assert_eq!(c.direct[4][5], 0.0);
}

#[test]
fn ablating_every_head_leaves_the_direct_path_plus_b_o() {
    let (ckpt, model) = fixture();
    let all = Ablation::of(1, 3, &[(0, 0), (0, 1), (0, 2)], HeadMode::Zero, None);
    for tokens in [
        vec![2u32, 5, 3, 0],
        vec![7, 7, 7, 7],
        vec![1, 9, 4, 0],
        vec![6],
    ] {
        let r = inspect_ablated(&model, &ckpt.config.task, &tokens, Some(&all)).unwrap();
        let last = *tokens.last().unwrap() as usize;
        for (v, &logit) in r.logits_last.iter().enumerate() {
            let direct = if v == last { 1.0 } else { 0.0 };
            assert!(
                (logit - (direct + ckpt.weights.get("blocks.0.attn.b_O")[v])).abs() < 1e-6,
                "{tokens:?} {v}"
            );
        }
        let head_logits = r.head_logits_last.as_ref().unwrap();
        assert!(head_logits.iter().flatten().all(|&x| x == 0.0));
        assert!(r.decomposition_error().unwrap() < 1e-6);
    }
    // Ablating one head removes exactly that head's contribution.
    let tokens = [1u32, 9, 4, 0];
    let full = inspect(&model, &ckpt.config.task, &tokens).unwrap();
    let one = Ablation::of(1, 3, &[(0, 1)], HeadMode::Zero, None);
    let r = inspect_ablated(&model, &ckpt.config.task, &tokens, Some(&one)).unwrap();
    for v in 0..11 {
        let want = full.logits_last[v] - full.head_logits_last.as_ref().unwrap()[1][v];
        assert!((r.logits_last[v] - want).abs() < 1e-5);
    }
}

#[test]
fn mean_ablation_writes_the_mean_z_through_w_o() {
    let (ckpt, model) = fixture();
    // The fixture is TL's state dict, which names no task: the notebook's data are chosen here.
    let val = SkipTrigramConfig::default().val_set(0).unwrap();
    let means = mean_z(&model, &val.tokens, val.seq_len).unwrap();
    assert_eq!(means.shape, vec![1, 4, 3, 1]);
    // Independent mean: average hook_z of each validation sequence.
    let mut sum = vec![0.0f64; 12];
    for i in 0..val.len() {
        let z = model.run_with_cache(val.sample(i)).unwrap();
        for (s, v) in sum
            .iter_mut()
            .zip(&z.get("blocks.0.attn.hook_z").unwrap().data)
        {
            *s += *v as f64;
        }
    }
    for (m, s) in means.data.iter().zip(&sum) {
        assert!((*m as f64 - s / val.len() as f64).abs() < 1e-5);
    }
    let ablation = Ablation::of(1, 3, &[(0, 0)], HeadMode::Mean, Some(means.clone()));
    let r = inspect_ablated(&model, &ckpt.config.task, &[2, 5, 3, 0], Some(&ablation)).unwrap();
    let z_last = means.at(&[0, 3, 0, 0]);
    for v in 0..11 {
        let want = z_last * ckpt.weights.get("blocks.0.attn.W_O")[v]; // W_O[0, 0, v]
        assert!((r.head_out_last.as_ref().unwrap()[0][v] - want).abs() < 1e-5);
    }
    // Without means, mean ablation is refused rather than silently zeroing.
    let missing = Ablation::of(1, 3, &[(0, 0)], HeadMode::Mean, None);
    assert!(inspect_ablated(&model, &ckpt.config.task, &[2, 5, 3, 0], Some(&missing)).is_err());
}

#[test]
fn per_pair_accuracy_agrees_with_a_brute_force_loop() {
    let task = SkipTrigramConfig::default();
    // A partly trained model, so that some pairs are wrong and the table is not all ones.
    let mut cfg = toylens::train::RunConfig::from_preset(toylens::train::Preset::Notebook);
    cfg.task.skip_trigram_mut().unwrap().train_size = 20_000;
    cfg.train.batch_size = 2_000;
    cfg.train.epochs = 20;
    let ckpt = toylens::train::train_to_checkpoint(cfg, &Device::Cpu, |_| {}).unwrap();
    let model = Transformer::new(&ckpt.config.model, &ckpt.weights, &Device::Cpu).unwrap();
    for ablation in [
        None,
        Some(Ablation::of(1, 3, &[(0, 0)], HeadMode::Zero, None)),
    ] {
        let report = exhaustive(&model, &task, ablation.as_ref(), 500, 0).unwrap();
        let mut hits = [[0usize; 4]; 4];
        let mut counts = [[0usize; 4]; 4];
        let mut confusion = vec![vec![0u32; 11]; 11];
        for a in 1..=4u32 {
            for b in 1..=4u32 {
                for n in 5..=10u32 {
                    let seq = [a, n, b, 0];
                    let r = inspect_ablated(
                        &model,
                        &TaskConfig::SkipTrigram(task.clone()),
                        &seq,
                        ablation.as_ref(),
                    )
                    .unwrap();
                    let answer = task.answer(a, b).unwrap();
                    counts[a as usize - 1][b as usize - 1] += 1;
                    hits[a as usize - 1][b as usize - 1] += (r.predicted_token == answer) as usize;
                    confusion[answer as usize][r.predicted_token as usize] += 1;
                }
            }
        }
        for a in 0..4 {
            for b in 0..4 {
                let want = hits[a][b] as f64 / counts[a][b] as f64;
                assert!((report.pair_accuracy[a][b] - want).abs() < 1e-12);
            }
        }
        assert_eq!(report.confusion, confusion);
        assert_eq!(report.signal_sequences, 96);
    }
    let report = exhaustive(&model, &task, None, 500, 0).unwrap();
    assert!(
        report.signal_accuracy < 1.0,
        "20 notebook epochs should leave pairs wrong"
    );
    assert_eq!(
        report.misses.len(),
        96 - (report.signal_accuracy * 96.0).round() as usize
    );
}

#[test]
fn head_traces_are_within_range_and_grow_with_training() {
    let mut cfg = toylens::train::RunConfig::from_preset(toylens::train::Preset::Fast);
    cfg.task.skip_trigram_mut().unwrap().train_size = 20_000;
    cfg.train.batch_size = 2_000;
    cfg.train.epochs = 15;
    let ckpt = toylens::train::train_to_checkpoint(cfg.clone(), &Device::Cpu, |_| {}).unwrap();
    let at = |i: usize| {
        let m = Transformer::new(&cfg.model, &ckpt.snapshots[i].weights, &Device::Cpu).unwrap();
        head_traces(&m, cfg.task.skip_trigram().unwrap()).unwrap()
    };
    let (start, end) = (at(0), at(ckpt.snapshots.len() - 1));
    // The trained model's attention to the triggers, from the inspector's cache of each signal
    // sequence: the last query's weight on positions 0 and p − 2, averaged.
    let task = cfg.task.skip_trigram().unwrap();
    let final_weights = &ckpt.snapshots[ckpt.snapshots.len() - 1].weights;
    let last = Transformer::new(&cfg.model, final_weights, &Device::Cpu).unwrap();
    let seqs = task.signal_sequences(5_000);
    let p = task.seq_len;
    for (h, trace) in end.iter().enumerate() {
        let mean: f64 = seqs
            .iter()
            .map(|seq| {
                let pattern = last.run_with_cache(seq).unwrap().pattern(0, h);
                (pattern[p - 1][0] + pattern[p - 1][p - 2]) as f64
            })
            .sum::<f64>()
            / seqs.len() as f64;
        assert!(
            (trace.attn_to_triggers as f64 - mean).abs() < 1e-4,
            "head {h}: {} vs {mean}",
            trace.attn_to_triggers
        );
    }
    // At init every head attends uniformly: 2 of 4 positions are triggers.
    assert!(
        start
            .iter()
            .all(|t| (t.attn_to_triggers - 0.5).abs() < 0.01)
    );
    assert!(start.iter().all(|t| t.ov_margin.abs() < 0.01));
    let best = end.iter().map(|t| t.ov_margin).fold(f32::MIN, f32::max);
    assert!(
        best > 1.0,
        "after training some head's OV favours the answer ({best})"
    );
}
