//! The unembedding and the cross-entropy at scored positions as one CPU op with its own backward:
//! from the final residual stream `[batch·pos, d_model]`, `W_U` and `b_U` (packed), and each
//! row's target token (or [`UNSCORED`]), to the mean loss over the scored rows. With the next
//! token as every position's target but the last ([`next_token_targets`]) it is TL's
//! `lm_cross_entropy_loss`; a data file's mask scores fewer. Composed, the same loss is a matmul,
//! a bias, a log-softmax and a gather, each with its backward and gradient buffers; fused, it is
//! two gemm calls each way.

use candle_core::{CpuStorage, CustomOp3, D, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{add_rows, column_sums, matmul, pool, slice};
use super::softmax::{cross_entropy, softmax_in_place};
pub use crate::task::sequences::UNSCORED;

/// Each row's target for the next-token loss of `tokens` (`[batch × pos]`, row after row): the
/// next token, and [`UNSCORED`] at each sequence's last position.
pub fn next_token_targets(tokens: &[u32], pos: usize) -> Vec<u32> {
    (0..tokens.len())
        .map(|r| {
            if r % pos + 1 < pos && r + 1 < tokens.len() {
                tokens[r + 1]
            } else {
                UNSCORED
            }
        })
        .collect()
}

/// How many of `targets` are scored.
pub fn scored_count(targets: &[u32]) -> usize {
    targets.iter().filter(|&&t| t != UNSCORED).count()
}

/// The mean cross-entropy of `logits` `[batch, pos, vocab]` at the rows whose `targets`
/// (`[batch, pos]`, u32) are scored, composed of candle ops: the reference for the fused op with
/// a mask, and its path off the CPU. Nothing scored is an error.
pub fn scored_cross_entropy_loss(logits: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
    let (b, p, v) = logits.dims3()?;
    let host = targets.flatten_all()?.to_vec1::<u32>()?;
    if host.len() != b * p {
        candle_core::bail!("targets for {} rows, logits for {}", host.len(), b * p);
    }
    let rows: Vec<u32> = (0..host.len() as u32)
        .filter(|&r| host[r as usize] != UNSCORED)
        .collect();
    check_targets(&host, v)?;
    let wanted: Vec<u32> = rows.iter().map(|&r| host[r as usize]).collect();
    let device = logits.device();
    let n = rows.len();
    let picked = logits
        .reshape((b * p, v))?
        .index_select(&Tensor::from_vec(rows, n, device)?, 0)?;
    let log_probs = candle_nn::ops::log_softmax(&picked, D::Minus1)?;
    let wanted = Tensor::from_vec(wanted, (n, 1), device)?;
    log_probs.gather(&wanted, 1)?.mean_all()?.neg()
}

/// TL's `lm_cross_entropy_loss` composed of candle ops, the reference the fused op is tested
/// against and the path off the CPU. Mean cross-entropy of predicting `tokens[:, i + 1]` from `logits[:, i]` at every position
/// but the last: `logits` `[batch, pos, d_vocab_out]`, `tokens` `[batch, pos]` (u32).
pub fn lm_cross_entropy_loss(logits: &Tensor, tokens: &Tensor) -> candle_core::Result<Tensor> {
    let (b, p, v) = logits.dims3()?;
    if p < 2 {
        candle_core::bail!("next-token loss needs sequences of at least 2 tokens, got {p}");
    }
    let predictions = logits.narrow(1, 0, p - 1)?.reshape((b * (p - 1), v))?;
    let targets = tokens.narrow(1, 1, p - 1)?.flatten_all()?;
    let log_probs = candle_nn::ops::log_softmax(&predictions, D::Minus1)?;
    log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .mean_all()?
        .neg()
}

/// The loss's shape: `batch` sequences of `pos` tokens, `d_model` in, `vocab` logits out.
#[derive(Debug, Clone, Copy)]
pub struct LossShape {
    pub batch: usize,
    pub pos: usize,
    pub d_model: usize,
    pub vocab: usize,
}

impl LossShape {
    fn rows(&self) -> usize {
        self.batch * self.pos
    }
    pub fn n_params(&self) -> usize {
        self.d_model * self.vocab + self.vocab
    }

    /// The mean loss over the scored rows of the final residual stream `x` `[rows, d_model]`
    /// (0 when none is); the softmax of every row's logits goes into `probs` `[rows, vocab]` for
    /// the backward. The targets are checked against the vocabulary by the caller. Runs on the
    /// fused ops' pool.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        w_u: &[f32],
        b_u: &[f32],
        targets: &[u32],
        probs: &mut [f32],
    ) -> f64 {
        let (n, m, v) = (self.rows(), self.d_model, self.vocab);
        let mut losses = vec![0f64; n];
        pool().install(|| {
            matmul(probs, (n, v, m), (x, m, 1), (w_u, v, 1), false);
            add_rows(probs, b_u);
            probs
                .par_chunks_mut(v)
                .zip(losses.par_iter_mut())
                .enumerate()
                .for_each(|(r, (row, loss))| {
                    let target_logit = target(targets, r).map(|t| row[t]);
                    let (max, sum) = softmax_in_place(row, 1.0);
                    if let Some(t) = target_logit {
                        *loss = cross_entropy(max, sum, t);
                    }
                });
        });
        losses.iter().sum::<f64>() / scored_count(targets).max(1) as f64
    }

    /// The gradients of `g` times the loss: `dx` `[rows, d_model]`, `dw_u` and `db_u`, from the
    /// forward's `probs`, which become the logits' gradient. Runs on the fused ops' pool.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        x: &[f32],
        w_u: &[f32],
        targets: &[u32],
        probs: &mut [f32],
        g: f32,
        dx: &mut [f32],
        dw_u: &mut [f32],
        db_u: &mut [f32],
    ) {
        let (n, m, v) = (self.rows(), self.d_model, self.vocab);
        let scale = g / scored_count(targets).max(1) as f32;
        let dlogits = probs;
        pool().install(|| {
            dlogits
                .par_chunks_mut(v)
                .enumerate()
                .for_each(|(r, row)| match target(targets, r) {
                    Some(t) => {
                        row[t] -= 1.0;
                        for l in row.iter_mut() {
                            *l *= scale;
                        }
                    }
                    None => row.fill(0.0),
                });
            matmul(dw_u, (m, v, n), (x, 1, m), (dlogits, v, 1), false);
            column_sums(dlogits, v, db_u);
            matmul(dx, (n, m, v), (dlogits, v, 1), (w_u, 1, v), false);
        });
    }
}

/// The op; its forward keeps the softmax of every row for the backward. Its third input is each
/// row's target (`[rows]`, u32, [`UNSCORED`] where the row is not scored).
pub struct ScoredTokenLoss {
    pub shape: LossShape,
    probs: std::sync::Mutex<Option<Vec<f32>>>,
}

impl ScoredTokenLoss {
    pub fn new(shape: LossShape) -> Self {
        Self {
            shape,
            probs: std::sync::Mutex::new(None),
        }
    }
}

/// The target of row `r`, or `None` where it is not scored.
fn target(targets: &[u32], r: usize) -> Option<usize> {
    (targets[r] != UNSCORED).then(|| targets[r] as usize)
}

impl CustomOp3 for ScoredTokenLoss {
    fn name(&self) -> &'static str {
        "scored-token-loss"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
        ts: &CpuStorage,
        tl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let sh = self.shape;
        let (x, params, targets) = (slice(xs, xl)?, slice(ps, pl)?, slice(ts, tl)?);
        let (n, m, v) = (sh.rows(), sh.d_model, sh.vocab);
        if x.len() != n * m || params.len() != sh.n_params() || targets.len() != n {
            candle_core::bail!("scored-token loss {sh:?}: inputs of the wrong size");
        }
        check_targets(targets, v)?;
        let (w_u, b_u) = params.split_at(m * v);
        let mut probs = vec![0f32; n * v];
        let mean = sh.forward(x, w_u, b_u, targets, &mut probs);
        *self.probs.lock().unwrap_or_else(|e| e.into_inner()) = Some(probs);
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        params: &Tensor,
        targets: &Tensor,
        _loss: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let sh = self.shape;
        let (n, m, v) = (sh.rows(), sh.d_model, sh.vocab);
        let g = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let probs = self
            .probs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg("scored-token loss: no forward to go back through".into())
            })?;
        let x_host = x.flatten_all()?.to_vec1::<f32>()?;
        let p_host = params.flatten_all()?.to_vec1::<f32>()?;
        let t_host = targets.flatten_all()?.to_vec1::<u32>()?;
        let (w_u, _) = p_host.split_at(m * v);
        let mut dlogits = probs;
        let mut dx = vec![0f32; n * m];
        let mut dparams = vec![0f32; sh.n_params()];
        let (dw_u, db_u) = dparams.split_at_mut(m * v);
        sh.backward(&x_host, w_u, &t_host, &mut dlogits, g, &mut dx, dw_u, db_u);
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dparams = Tensor::from_vec(dparams, params.shape(), params.device())?;
        Ok((Some(dx), Some(dparams), None))
    }
}

/// Every target is below the vocabulary `vocab` or [`UNSCORED`], and one at least is scored.
pub fn check_targets(targets: &[u32], vocab: usize) -> candle_core::Result<()> {
    if let Some(&t) = targets
        .iter()
        .find(|&&t| t != UNSCORED && t as usize >= vocab)
    {
        candle_core::bail!("target {t} is not below the vocabulary {vocab}");
    }
    if scored_count(targets) == 0 {
        candle_core::bail!("no position is scored");
    }
    Ok(())
}
