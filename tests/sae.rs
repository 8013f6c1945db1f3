//! The SAE's losses and gradients against PyTorch's autograd on fixed weights and activations
//! (`tests/fixtures/sae`, written by `scripts/make-sae-fixture.py`): the standard architecture
//! with its decoder-norm-weighted L1, and TopK with its auxiliary loss over dead latents.

use toylens::sae::{Architecture, SaeWeights};

fn floats(file: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    file.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The largest difference relative to `want`'s largest magnitude.
fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-12f32, |m, v| m.max(v.abs())) as f64;
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() as f64)
        .fold(0.0, f64::max)
        / scale
}

#[test]
fn losses_and_gradients_equal_pytorchs() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sae/sae.safetensors"
    ))
    .unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (rows, d, s) = (16, 6, 10);
    let weights = SaeWeights {
        d_in: d,
        d_sae: s,
        w_enc: floats(&file, "W_enc"),
        b_enc: floats(&file, "b_enc"),
        w_dec: floats(&file, "W_dec"),
        b_dec: floats(&file, "b_dec"),
    };
    let x = floats(&file, "x");
    let dead: Vec<bool> = floats(&file, "dead").iter().map(|&v| v > 0.5).collect();
    let cases = [
        (
            "standard",
            Architecture::Standard {
                l1_coefficient: 0.3,
            },
            "l1",
        ),
        (
            "topk",
            Architecture::TopK {
                k: 3,
                aux_coefficient: 1.0,
            },
            "aux",
        ),
    ];
    for (name, architecture, penalty) in cases {
        let check = |weights: &SaeWeights| {
            let (out, g) = weights.loss_and_grads(&x, rows, architecture, &dead);
            let mse = floats(&file, &format!("{name}_mse"))[0] as f64;
            let pen = floats(&file, &format!("{name}_{penalty}"))[0] as f64;
            let mut worst: Vec<(String, f64)> = vec![
                ("mse".into(), (out.mse - mse).abs() / mse.abs()),
                (
                    penalty.into(),
                    (out.penalty - pen).abs() / pen.abs().max(1e-12),
                ),
            ];
            for (tensor, got) in [
                ("W_enc", &g.w_enc),
                ("b_enc", &g.b_enc),
                ("W_dec", &g.w_dec),
                ("b_dec", &g.b_dec),
            ] {
                let want = floats(&file, &format!("{name}_grad_{tensor}"));
                worst.push((format!("grad {tensor}"), relative_error(got, &want)));
            }
            worst
        };
        for (what, err) in check(&weights) {
            assert!(err < 1e-5, "{name} {what}: relative error {err:.2e}");
        }
        // The penalty is not zero in the fixture: both terms are exercised.
        assert!(floats(&file, &format!("{name}_{penalty}"))[0] > 1e-3);
        // A 1e-3 change in one weight is seen.
        let mut moved = weights.clone();
        moved.w_enc[5] += 1e-3;
        assert!(
            check(&moved).iter().any(|(_, err)| *err > 1e-5),
            "{name}: a moved weight went unnoticed"
        );
    }
}
