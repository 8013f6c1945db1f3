use super::*;
use crate::matmul::Matmul;
use candle_core::{D, Device, Var};

#[test]
fn the_vector_exp_is_within_two_ulp_of_libm() {
    for i in -20_300..=20_400 {
        let x = i as f32 * 0.004_3;
        for (fused, got) in [(false, exp::<false>(x)), (true, exp::<true>(x))] {
            let want = x.exp();
            let ulp = (want.to_bits() as i64 - got.to_bits() as i64).abs();
            assert!(ulp <= 2, "exp({x}) fused={fused}: {got} against {want}");
        }
    }
    assert!(exp::<false>(-1e4) < 1e-37 && exp::<false>(-1e4) >= 0.0);
    assert_eq!(exp::<false>(0.0), 1.0);
}

/// The fused op against attention composed from candle's ops, in values and gradients.
#[test]
fn matches_composed_attention_and_its_gradient() {
    // Head sizes below a vector, a vector and a tail, whole vectors; lengths past 8 and 16.
    for (b, p, h, d) in [(3, 6, 2, 5), (2, 9, 3, 8), (2, 17, 2, 12), (2, 11, 2, 16)] {
        check_against_composed(b, p, h, d);
    }
}

fn check_against_composed(b: usize, p: usize, h: usize, d: usize) {
    let dev = Device::Cpu;
    let scale = (d as f64).sqrt();
    let qkv = Var::from_tensor(&Tensor::randn(0f32, 1.5, (b, p, 3, h, d), &dev).unwrap()).unwrap();
    let w = Tensor::randn(0f32, 1.0, (b, p, h, d), &dev).unwrap();
    let fused = qkv
        .as_tensor()
        .apply_op1(CausalAttention {
            scale: scale as f32,
        })
        .unwrap();
    let part = |i: usize| {
        qkv.as_tensor()
            .narrow(2, i, 1)
            .unwrap()
            .squeeze(2)
            .unwrap()
            .permute((0, 2, 1, 3))
            .unwrap()
            .contiguous()
            .unwrap() // [b, h, p, d]
    };
    let (q, k, v) = (part(0), part(1), part(2));
    let mask = crate::model::attention::causal_mask(p, &dev).unwrap();
    let scores = (q.mm(&k.t().unwrap().contiguous().unwrap()).unwrap() / scale)
        .unwrap()
        .broadcast_add(&mask)
        .unwrap();
    let pattern = candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
    let composed = pattern.mm(&v).unwrap().permute((0, 2, 1, 3)).unwrap();
    let max = |t: Tensor| crate::model::max_abs(&t);
    assert!(max((&fused - &composed).unwrap()) < 1e-5, "z, d_head {d}");
    let g1 = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (composed * &w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let diff = (g1.get(qkv.as_tensor()).unwrap() - g2.get(qkv.as_tensor()).unwrap()).unwrap();
    assert!(max(diff) < 1e-5, "gradient, d_head {d}");
}
