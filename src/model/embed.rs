//! Token and positional embeddings in, logits out: learned (TL's `Embed`, `PosEmbed`,
//! `Unembed`) or toylens's frozen one-hot identities and absent positions.

use candle_core::Tensor;

use super::Transformer;
use super::kernels::bias::add_bias;
use super::kernels::gather::gather_rows;
use super::kernels::ordered::Order;
use crate::config::{Embeddings, Positions};

impl Transformer {
    /// `hook_embed`: `W_E[tokens]`, `[batch, pos, d_model]`.
    pub(super) fn embed(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (b, p) = tokens.dims2()?;
        let w_e = match self.cfg.embeddings {
            Embeddings::Learned => self.param("embed.W_E"),
            Embeddings::OneHot => self.identity()?,
        };
        gather_rows(w_e, &tokens.flatten_all()?, self.plan.kernels)?.reshape((
            b,
            p,
            self.cfg.d_model,
        ))
    }

    /// `embed + W_pos[:pos]` for every sequence, as one bias over the flattened positions (the
    /// residual stream of standard positions).
    pub(super) fn add_positions(&self, embed: &Tensor) -> candle_core::Result<Tensor> {
        let (b, p, m) = embed.dims3()?;
        let w_pos = self
            .param("pos_embed.W_pos")
            .narrow(0, 0, p)?
            .reshape(p * m)?;
        add_bias(&embed.reshape((b, p * m))?, &w_pos, self.plan.fused())?.reshape((b, p, m))
    }

    /// `hook_pos_embed`: `W_pos[:pos]` for every sequence, `[batch, pos, d_model]` (zeros
    /// without positions, as TL computes it from a zero `W_pos`).
    pub(super) fn pos_embed(&self, batch: usize, pos: usize) -> candle_core::Result<Tensor> {
        let m = self.cfg.d_model;
        match self.cfg.positional_embedding_type {
            Positions::None => Tensor::zeros((batch, pos, m), self.dtype(), &self.device),
            Positions::Standard | Positions::Shortformer => self
                .param("pos_embed.W_pos")
                .narrow(0, 0, pos)?
                .unsqueeze(0)?
                .broadcast_as((batch, pos, m))?
                .contiguous(),
        }
    }

    /// Logits `[batch, pos, d_vocab_out]` from the final residual stream `[batch, pos, d_model]`.
    pub(super) fn unembed(&self, x: &Tensor, order: Order) -> candle_core::Result<Tensor> {
        let (b, p, m) = x.dims3()?;
        match self.cfg.embeddings {
            // W_U is the identity and b_U zero: the residual stream is the logits.
            Embeddings::OneHot => Ok(x.clone()),
            Embeddings::Learned => add_bias(
                &order.mm(&x.reshape((b * p, m))?, self.param("unembed.W_U"))?,
                self.param("unembed.b_U"),
                self.plan.fused(),
            )?
            .reshape((b, p, self.cfg.d_vocab_out())),
        }
    }

    /// `W_U` as a tensor `[d_model, d_vocab_out]` (the identity for one-hot models).
    pub fn w_u(&self) -> candle_core::Result<Tensor> {
        match self.cfg.embeddings {
            Embeddings::OneHot => self.identity().cloned(),
            Embeddings::Learned => Ok(self.param("unembed.W_U").clone()),
        }
    }

    /// `b_U` `[d_vocab_out]` (zero for one-hot models).
    pub fn b_u(&self) -> candle_core::Result<Tensor> {
        match self.cfg.embeddings {
            Embeddings::OneHot => Tensor::zeros(self.cfg.d_vocab, self.dtype(), &self.device),
            Embeddings::Learned => Ok(self.param("unembed.b_U").clone()),
        }
    }

    /// The frozen one-hot embedding `[d_vocab, d_vocab]`.
    pub(super) fn identity(&self) -> candle_core::Result<&Tensor> {
        match &self.identity {
            Some(t) => Ok(t),
            None => candle_core::bail!("this model has learned embeddings"),
        }
    }
}
