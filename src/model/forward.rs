//! The general path: candle's composed graph through every layer, with TL's hooks. Every other
//! way of computing the same numbers ([`super::kernels`], [`super::shortcuts`]) is tested against
//! it. Where the plan has fused kernels, unobserved attention layers and the LM loss run as
//! fused ops inside this graph.

use candle_core::Tensor;

use super::edits::{self, Edits};
use super::hooks::{Capture, Hooks};
use super::kernels::lm_loss::{self, lm_cross_entropy_loss};
use super::plan::{AttentionKernel, LmLoss};
use super::{Normalization, Positions, Transformer, attention, layer_norm, mlp};

impl Transformer {
    /// The block's or the final LayerNorm, `name` being `blocks.{l}.ln1`, `…ln2` or `ln_final`;
    /// the identity without normalization.
    fn normalize(&self, x: &Tensor, name: &str, hooks: &mut Hooks) -> candle_core::Result<Tensor> {
        match self.cfg.normalization_type {
            None => Ok(x.clone()),
            Some(Normalization::LnPre) => layer_norm::layer_norm(x, None, hooks, name),
            Some(Normalization::Ln) => {
                let (w, b) = (
                    self.param(&format!("{name}.w")),
                    self.param(&format!("{name}.b")),
                );
                layer_norm::layer_norm(x, Some((w, b)), hooks, name)
            }
        }
    }

    /// The general forward pass. `tokens` is `[batch, pos]` (u32, pos ≤ n_ctx); returns the logits
    /// `[batch, pos, d_vocab_out]` and the TL hook activations `capture` asks for, with their
    /// batch dimension. `edits` change activations at hook points (ablation, patching).
    pub fn forward_hooked(
        &self,
        tokens: &Tensor,
        capture: Capture,
        edits: Option<&Edits>,
    ) -> candle_core::Result<(Tensor, Vec<(String, Tensor)>)> {
        let (resid, mut hooks) = self.final_residual(tokens, capture, edits)?;
        hooks.add(|| "unembed.hook_in".into(), &resid);
        let logits = self.unembed(&resid, hooks.order())?;
        hooks.add(|| "unembed.hook_out".into(), &logits);
        Ok((logits, hooks.into_vec()))
    }

    /// Next-token cross-entropy at every position but the last, as TL's
    /// `lm_cross_entropy_loss` (a scalar that backpropagates into the model). Where the plan
    /// has [`LmLoss::FusedUnembed`], the unembedding and the loss run as one fused op.
    pub fn next_token_loss(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        let (_, p) = tokens.dims2()?;
        if self.plan.lm_loss != LmLoss::FusedUnembed || p < 2 {
            return lm_cross_entropy_loss(&self.forward(tokens)?, tokens);
        }
        let targets = lm_loss::next_token_targets(&tokens.flatten_all()?.to_vec1::<u32>()?, p);
        let targets = Tensor::from_vec(targets, tokens.shape(), tokens.device())?;
        self.fused_scored_loss(tokens, &targets)
    }

    /// Mean cross-entropy at the scored positions of `tokens` `[batch, pos]`: `targets` (same
    /// shape, u32) holds each position's target, or [`lm_loss::UNSCORED`]. With the next tokens
    /// as targets it is [`Self::next_token_loss`]; a data file's mask scores fewer.
    pub fn scored_loss(&self, tokens: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
        if targets.dims() != tokens.dims() {
            candle_core::bail!(
                "targets {:?} for tokens {:?}",
                targets.dims(),
                tokens.dims()
            );
        }
        if self.plan.lm_loss != LmLoss::FusedUnembed {
            return lm_loss::scored_cross_entropy_loss(&self.forward(tokens)?, targets);
        }
        self.fused_scored_loss(tokens, targets)
    }

    fn fused_scored_loss(&self, tokens: &Tensor, targets: &Tensor) -> candle_core::Result<Tensor> {
        let (b, p) = tokens.dims2()?;
        let (resid, _) = self.final_residual(tokens, Capture::Nothing, None)?;
        let m = self.cfg.d_model;
        let packed = Tensor::cat(
            &[
                self.param("unembed.W_U").flatten_all()?,
                self.param("unembed.b_U").flatten_all()?,
            ],
            0,
        )?;
        let op = lm_loss::ScoredTokenLoss::new(lm_loss::LossShape {
            batch: b,
            pos: p,
            d_model: m,
            vocab: self.cfg.d_vocab_out(),
        });
        resid.reshape((b * p, m))?.contiguous()?.apply_op3(
            &packed,
            &targets.flatten_all()?.contiguous()?,
            op,
        )
    }

    /// The residual stream after the last block and `ln_final` (TL's `unembed.hook_in`).
    fn final_residual(
        &self,
        tokens: &Tensor,
        capture: Capture,
        edits: Option<&Edits>,
    ) -> candle_core::Result<(Tensor, Hooks)> {
        let (b, p) = tokens.dims2()?;
        if p == 0 || p > self.cfg.n_ctx {
            candle_core::bail!(
                "a sequence of {p} tokens does not fit the model's n_ctx {}",
                self.cfg.n_ctx
            );
        }
        let splice = edits.and_then(|e| e.splice.clone());
        let mut hooks = Hooks::new(capture, splice, &self.plan);
        let embed = self.embed(tokens)?;
        hooks.add(|| "hook_embed".into(), &embed);
        let positions = self.cfg.positional_embedding_type;
        // Standard positions join the residual stream as one fused add; shortformer positions
        // are added to the queries' and keys' input, so they are kept as a tensor.
        let pos_embed =
            if positions == Positions::Shortformer || hooks.wants(|| "hook_pos_embed".into()) {
                Some(self.pos_embed(b, p)?)
            } else {
                None
            };
        if let Some(pos) = &pos_embed {
            hooks.add(|| "hook_pos_embed".into(), pos);
        }
        let mut resid = match positions {
            Positions::Standard => self.add_positions(&embed)?,
            Positions::Shortformer | Positions::None => embed,
        };
        let shortformer = match positions {
            Positions::Shortformer => pos_embed.as_ref(),
            _ => None,
        };
        let mask = self.mask.narrow(0, 0, p)?.narrow(1, 0, p)?;
        let scale = self.cfg.attn_scale();
        for layer in 0..self.cfg.n_layers {
            let block = format!("blocks.{layer}");
            if let Some(edits) = edits {
                resid = edits::apply_all(&edits.resid_pre_at(layer), &resid)?;
            }
            resid = hooks.pass(|| format!("{block}.hook_resid_pre"), resid)?;
            // An attention-only layer without LayerNorm reads and writes the stream itself;
            // unobserved, it runs as one op with the residual add (nothing is captured).
            let unobserved = !hooks.capturing() && edits.is_none();
            if self.plan.attention == AttentionKernel::FusedResidual && unobserved {
                let p = self.attention_params(layer);
                resid = attention::fused_residual_layer(&p, &resid, scale)?;
                continue;
            }
            // TL normalises the query, key and value inputs separately; they are the same
            // stream here, so once is enough.
            let normed = self.normalize(&resid, &format!("{block}.ln1"), &mut hooks)?;
            let query_key_input = match shortformer {
                Some(pos) => (&normed + pos)?,
                None => normed.clone(),
            };
            let attn_out = attention::attention(
                &self.attention_params(layer),
                &query_key_input,
                &query_key_input,
                &normed,
                &mask,
                scale,
                &edits.map(|e| e.z_at(layer)).unwrap_or_default(),
                &mut hooks,
                &format!("{block}.attn"),
                self.plan.attention,
            )?;
            let attn_out = hooks.pass(|| format!("{block}.hook_attn_out"), attn_out)?;
            resid = if self.cfg.has_mlp() {
                let mid =
                    hooks.pass(|| format!("{block}.hook_resid_mid"), (&resid + &attn_out)?)?;
                let normed = self.normalize(&mid, &format!("{block}.ln2"), &mut hooks)?;
                let act = self.cfg.act_fn.ok_or_else(|| {
                    candle_core::Error::Msg("a model with MLPs needs act_fn".into())
                })?;
                let mlp_out = mlp::mlp(
                    &self.mlp_params(layer),
                    &normed,
                    act,
                    &mut hooks,
                    &format!("{block}.mlp"),
                )?;
                let mlp_out = hooks.pass(|| format!("{block}.hook_mlp_out"), mlp_out)?;
                (mid + mlp_out)?
            } else {
                (&resid + &attn_out)?
            };
            resid = hooks.pass(|| format!("{block}.hook_resid_post"), resid)?;
        }
        let resid = self.normalize(&resid, "ln_final", &mut hooks)?;
        Ok((resid, hooks))
    }

    /// Logits `[batch, pos, d_vocab_out]` from the general path.
    pub fn forward(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        Ok(self.forward_hooked(tokens, Capture::Nothing, None)?.0)
    }

    /// Last-position logits `[batch, d_vocab_out]` from the general path.
    pub fn forward_last_general(&self, tokens: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_last_ablated(tokens, None)
    }
}
