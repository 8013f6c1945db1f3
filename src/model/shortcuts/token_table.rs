//! Exact shortcuts to the last position's logits for the skip-trigram model (one layer,
//! attention only, one-hot embeddings, no positions, no LayerNorm), which is all its loss uses.
//!
//! - [`Transformer::forward_last`]: only the last query row. The last query sees every key, so
//!   no mask is needed, and with one-hot tokens each projection is a row gather.
//! - [`Transformer::forward_multiset`]: with no positional embedding the last position depends
//!   only on the last token and the multiset of the tokens, so a batch collapses to its distinct
//!   (last token, token counts) rows; attention weights for a token type are scaled by its count.

use candle_core::{D, Tensor};

use crate::matmul::Matmul;
use crate::model::attention::softmax;
use crate::model::kernels::gather::gather_rows;
use crate::model::kernels::ordered::Order;
use crate::model::plan::{Kernels, Shortcut};
use crate::model::{Transformer, attn};

/// The largest `[batch, d_vocab]` count matrix that `forward_last` builds on a GPU (elements).
const COUNTS_MAX: usize = 1 << 28;

/// `[batch, vocab]`: ln of how often each token occurs in each sequence of `tokens [batch, pos]`
/// (−inf where absent), as `forward_multiset` takes it.
pub fn log_counts(
    tokens: &Tensor,
    vocab: usize,
    dtype: candle_core::DType,
) -> candle_core::Result<Tensor> {
    let (b, p) = tokens.dims2()?;
    let ones = Tensor::ones((b, p), dtype, tokens.device())?;
    Tensor::zeros((b, vocab), dtype, tokens.device())?
        .scatter_add(&tokens.contiguous()?, &ones, 1)?
        .log()
}

impl Transformer {
    fn check_token_table(&self) -> candle_core::Result<()> {
        if self.plan.shortcut != Shortcut::TokenTable {
            candle_core::bail!(
                "the last-position shortcuts are exact only for the one-layer attention-only model \
                 with one-hot embeddings and no positions"
            );
        }
        Ok(())
    }

    /// `W[h, m, d] + b[h, d]` as a per-token table `[d_vocab, h, d]`: with one-hot tokens, the
    /// projection of token `t` is row `t`.
    fn token_table(&self, w: &str, b: &str) -> candle_core::Result<Tensor> {
        self.param(&attn(0, w))
            .permute((1, 0, 2))?
            .contiguous()?
            .broadcast_add(self.param(&attn(0, b)))
    }

    /// `W_O [h, d, m]` as `[h*d, m]`.
    fn w_o_matrix(&self) -> candle_core::Result<Tensor> {
        let (h, m, d) = (self.cfg.n_heads, self.cfg.d_model, self.cfg.d_head);
        self.param(&attn(0, "W_O")).reshape((h * d, m))
    }

    /// Last-position logits `[batch, d_vocab]`, computing only the last query row.
    pub fn forward_last(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        self.check_token_table()?;
        let (b, p) = tokens.dims2()?;
        let (h, d) = (self.cfg.n_heads, self.cfg.d_head);
        let last = tokens.narrow(1, p - 1, 1)?.squeeze(1)?.contiguous()?;
        if self.plan.kernels == Kernels::Candle && b * self.cfg.d_vocab <= COUNTS_MAX {
            // On a GPU, gathering a key and a value row for every token costs a backward that
            // loops over all of them (see `gather`); each sequence's token counts give the same
            // attention with matrix products instead.
            return self
                .forward_multiset(&last, &log_counts(tokens, self.cfg.d_vocab, self.dtype())?);
        }
        let flat = tokens.flatten_all()?;
        let q = gather_rows(&self.token_table("W_Q", "b_Q")?, &last, self.plan.kernels)?; // [b, h, d]
        let k = gather_rows(&self.token_table("W_K", "b_K")?, &flat, self.plan.kernels)?
            .reshape((b, p, h, d))?;
        let v = gather_rows(&self.token_table("W_V", "b_V")?, &flat, self.plan.kernels)?
            .reshape((b, p, h, d))?;
        let scores = (k.broadcast_mul(&q.unsqueeze(1)?)?.sum(D::Minus1)? / self.cfg.attn_scale())?; // [b, p, h]
        let pattern = softmax(&scores, 1, Order::Backend)?;
        let z = v.broadcast_mul(&pattern.unsqueeze(D::Minus1)?)?.sum(1)?; // [b, h, d]
        let out = z
            .reshape((b, h * d))?
            .mm(&self.w_o_matrix()?)?
            .broadcast_add(self.param(&attn(0, "b_O")))?;
        // W_U is the identity, so the logits are the residual stream: one-hot(last) + attn_out.
        out + self.identity()?.index_select(&last, 0)?
    }

    /// Last-position logits `[rows, d_vocab]` for distinct (last token, token multiset) rows.
    /// `last` is `[rows]` (u32); `log_counts` is `[rows, d_vocab]`, the log of how often each token
    /// occurs in the row's sequence (−inf for absent tokens). Exact because the model has no
    /// positional embedding: keys of the same token get the same score and value.
    pub fn forward_multiset(
        &self,
        last: &Tensor,
        log_counts: &Tensor,
    ) -> candle_core::Result<Tensor> {
        self.check_token_table()?;
        let rows = last.dim(0)?;
        let (h, d) = (self.cfg.n_heads, self.cfg.d_head);
        let q = gather_rows(&self.token_table("W_Q", "b_Q")?, last, self.plan.kernels)?
            .permute((1, 0, 2))?
            .contiguous()?; // [h, rows, d]
        let keys = self
            .token_table("W_K", "b_K")?
            .permute((1, 2, 0))?
            .contiguous()?; // [h, d, vocab]
        let values = self
            .token_table("W_V", "b_V")?
            .permute((1, 0, 2))?
            .contiguous()?; // [h, vocab, d]
        let scores = (q.mm(&keys)? / self.cfg.attn_scale())?; // [h, rows, vocab]
        // softmax(score + log count) is the attention mass on each token type.
        let pattern = softmax(&scores.broadcast_add(log_counts)?, 2, Order::Backend)?;
        let z = pattern.mm(&values)?; // [h, rows, d]
        let out = z
            .permute((1, 0, 2))?
            .contiguous()?
            .reshape((rows, h * d))?
            .mm(&self.w_o_matrix()?)?
            .broadcast_add(self.param(&attn(0, "b_O")))?;
        out + self.identity()?.index_select(last, 0)?
    }
}
