//! The circuit form of the weights: for every head, the OV circuit (what a source token makes the
//! head write, read as logits) and the QK circuit (the attention score of every query/key token
//! pair), plus the direct path. Computed from the weights alone, with no data.

use serde::Serialize;

use candle_core::{Device, Tensor};

use crate::matmul::Matmul;
use crate::model::{Embeddings, ModelConfig, Weights, attn};

/// All circuits of a model. Indices follow TransformerLens: `ov[h][src][out]` is `W_E W_V[h]
/// W_O[h] W_U` (row = source token, column = output logit; the Framework paper writes the
/// transpose) and `qk[h][query][key]` is `W_E W_Q[h] W_K[h]ᵀ W_Eᵀ / attn_scale`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Circuits {
    /// With the biases folded in, `(W_V[h] + b_V[h]) W_O[h]`: with one-hot tokens this is exactly
    /// what the head writes for each source token it attends to.
    pub ov: Vec<Vec<Vec<f32>>>,
    /// With the biases folded in, `(W_Q[h] + b_Q[h])(W_K[h] + b_K[h])ᵀ / sqrt(d_head)`: the exact
    /// score of each query/key token pair.
    pub qk: Vec<Vec<Vec<f32>>>,
    /// TransformerLens's `model.OV`, without biases.
    pub ov_no_bias: Vec<Vec<Vec<f32>>>,
    /// TransformerLens's `model.QK` divided by attn_scale, without biases.
    pub qk_no_bias: Vec<Vec<Vec<f32>>>,
    /// `W_E W_U`: the identity for one-hot models.
    pub direct: Vec<Vec<f32>>,
}

/// The circuits of layer 0, from the weights alone. With learned embeddings they are TL's full
/// circuits through `W_E` and `W_U` (positions and LayerNorm are left out, as in TL's
/// `OV`/`QK` products).
pub fn circuits(cfg: &ModelConfig, w: &Weights) -> Result<Circuits, String> {
    compute(cfg, w).map_err(|e| format!("circuits: {e}"))
}

fn compute(cfg: &ModelConfig, w: &Weights) -> candle_core::Result<Circuits> {
    let dev = Device::Cpu;
    let (h, m, d) = (cfg.n_heads, cfg.d_model, cfg.d_head);
    let t = |name: &str, shape: &[usize]| Tensor::from_slice(w.get(name), shape, &dev);
    let one_hot = cfg.embeddings == Embeddings::OneHot;
    let embed = if one_hot {
        None
    } else {
        Some(t("embed.W_E", &[cfg.d_vocab, m])?)
    };
    let unembed = if one_hot {
        None
    } else {
        Some(t("unembed.W_U", &[m, cfg.d_vocab_out()])?)
    };
    // E · W[h] (+ b[h]) for every head: [h, d_vocab, d].
    let per_token = |short: &str, bias: Option<&str>| -> candle_core::Result<Tensor> {
        let weight = t(&attn(0, short), &[h, m, d])?;
        let mut x = match &embed {
            None => weight,
            Some(e) => e
                .unsqueeze(0)?
                .broadcast_as((h, cfg.d_vocab, m))?
                .contiguous()?
                .mm(&weight)?,
        };
        if let Some(b) = bias {
            x = x.broadcast_add(&t(&attn(0, b), &[h, 1, d])?)?;
        }
        Ok(x)
    };
    let w_o = t(&attn(0, "W_O"), &[h, d, m])?;
    let ov_of = |bias: bool| -> candle_core::Result<Vec<Vec<Vec<f32>>>> {
        let mut ov = per_token("W_V", bias.then_some("b_V"))?.mm(&w_o)?; // [h, v, m]
        if let Some(u) = &unembed {
            let (h, v, m) = ov.dims3()?;
            ov = ov.reshape((h * v, m))?.mm(u)?.reshape((h, v, ()))?;
        }
        ov.to_vec3()
    };
    let qk_of = |bias: bool| -> candle_core::Result<Vec<Vec<Vec<f32>>>> {
        let q = per_token("W_Q", bias.then_some("b_Q"))?;
        let k = per_token("W_K", bias.then_some("b_K"))?;
        (q.mm(&k.transpose(1, 2)?.contiguous()?)? / cfg.attn_scale())?.to_vec3()
    };
    let direct = match (&embed, &unembed) {
        (Some(e), Some(u)) => e.mm(u)?.to_vec2()?,
        _ => (0..cfg.d_vocab)
            .map(|s| {
                (0..cfg.d_vocab)
                    .map(|o| if s == o { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect(),
    };
    Ok(Circuits {
        ov: ov_of(true)?,
        qk: qk_of(true)?,
        ov_no_bias: ov_of(false)?,
        qk_no_bias: qk_of(false)?,
        direct,
    })
}
