//! The next-token loss and every parameter's gradient of the plainest transformer (attention
//! only, no LayerNorm, learned embeddings, standard positions: the induction task's model),
//! computed on the parameters' own host memory with the fused layers' kernels, outside candle's
//! graph.
//!
//! Through candle, the same step is those fused ops plus what the graph adds around them: the
//! parameters packed by `cat` and their gradients cut back out by `narrow`, a zeroed buffer and
//! an add for each gradient that arrives, copies into and out of the loss op. For a model this
//! small that was a tenth of the step. Here the same kernels run in the same order on the same
//! values, so the loss and the gradients are bit for bit the graph's (a test holds them to it).

use candle_core::{Storage, StorageRef, Tensor, TensorId};

use super::attention_block::{BlockShape, LayerGrads, LayerParams, Prepared, Saved};
use super::lm_loss::LossShape;
use super::{Transformer, scratch};
use crate::config::{Embeddings, Positions};

/// Gradients on the host, one per parameter, in [`Transformer::vars`]' order.
pub struct HostGrads {
    entries: Vec<(TensorId, Vec<f32>)>,
}

impl HostGrads {
    /// The gradient of the parameter `t`.
    pub fn get(&self, t: &Tensor) -> Option<&[f32]> {
        let id = t.id();
        self.entries
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, g)| g.as_slice())
    }

    /// `Σ weight · grads`, element by element in the order given, each term rounded as candle's
    /// `affine(weight, 0)` rounds it and summed as its `add` does: how the step joins the
    /// gradients of a batch's parts.
    pub fn weighted_sum(parts: Vec<(HostGrads, f64)>) -> HostGrads {
        let mut parts = parts.into_iter();
        let Some((mut sum, w)) = parts.next() else {
            return HostGrads {
                entries: Vec::new(),
            };
        };
        let scale = |g: &mut [f32], w: f64| g.iter_mut().for_each(|x| *x = *x * w as f32 + 0.0);
        sum.entries.iter_mut().for_each(|(_, g)| scale(g, w));
        for (mut part, w) in parts {
            for ((_, s), (_, g)) in sum.entries.iter_mut().zip(&mut part.entries) {
                scale(g, w);
                s.iter_mut().zip(g.iter()).for_each(|(s, g)| *s += g);
            }
        }
        sum
    }
}

/// A forward pass's logits and patterns ([`Transformer::direct_forward`]).
pub struct DirectForward {
    pub logits: Vec<f32>,
    /// Per layer.
    pub patterns: Vec<Vec<f32>>,
    pub stride: usize,
}

/// The parameters' host memory, read-locked for the length of a step.
pub struct HostParams<'a> {
    model: &'a Transformer,
    guards: Vec<(StorageRef<'a>, &'a candle_core::Layout)>,
}

impl<'a> HostParams<'a> {
    /// The values of parameter `name`.
    fn get(&self, name: &str) -> candle_core::Result<&[f32]> {
        let i = self
            .model
            .specs()
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| candle_core::Error::Msg(format!("the model has no {name}")))?;
        let (storage, layout) = &self.guards[i];
        let Storage::Cpu(cpu) = &**storage else {
            candle_core::bail!("the direct step runs on the CPU only");
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg(format!("{name} is not contiguous")))?;
        Ok(&cpu.as_slice::<f32>()?[start..end])
    }

    fn layer(&self, l: usize) -> candle_core::Result<LayerParams<'_>> {
        let p = |s: &str| self.get(&format!("blocks.{l}.attn.{s}"));
        Ok(LayerParams {
            w_q: p("W_Q")?,
            w_k: p("W_K")?,
            w_v: p("W_V")?,
            w_o: p("W_O")?,
            b_q: p("b_Q")?,
            b_k: p("b_K")?,
            b_v: p("b_V")?,
            b_o: p("b_O")?,
        })
    }
}

/// A batch's gradients as they are filled, by parameter name.
struct GradBuffers<'m> {
    model: &'m Transformer,
    values: Vec<Vec<f32>>,
}

impl<'m> GradBuffers<'m> {
    fn new(model: &'m Transformer) -> Self {
        let values = model
            .vars()
            .iter()
            .map(|v| vec![0f32; v.elem_count()])
            .collect();
        Self { model, values }
    }

    fn index(&self, name: &str) -> usize {
        self.model
            .specs()
            .iter()
            .position(|s| s.name == name)
            .expect("a parameter the model's config implies")
    }

    fn get(&mut self, name: &str) -> &mut [f32] {
        let i = self.index(name);
        &mut self.values[i]
    }

    /// Layer `l`'s gradients, borrowed all at once.
    fn layer(&mut self, l: usize) -> LayerGrads<'_> {
        let names = ["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O"]
            .map(|s| self.index(&format!("blocks.{l}.attn.{s}")));
        let mut parts: Vec<Option<&mut [f32]>> = self
            .values
            .iter_mut()
            .map(|v| Some(v.as_mut_slice()))
            .collect();
        let mut take = |i: usize| parts[i].take().expect("distinct parameters");
        let [w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o] = names.map(&mut take);
        LayerGrads {
            w_q,
            w_k,
            w_v,
            w_o,
            b_q,
            b_k,
            b_v,
            b_o,
        }
    }

    fn finish(self) -> HostGrads {
        let ids = self.model.vars().iter().map(|v| v.as_tensor().id());
        HostGrads {
            entries: ids.zip(self.values).collect(),
        }
    }
}

impl Transformer {
    /// Whether [`Self::direct_loss_and_grads`] computes this model's step: attention only, no
    /// LayerNorm, learned embeddings and standard positions, float32 on a CPU with the fused ops.
    pub fn direct_step_fits(&self) -> bool {
        let c = &self.cfg;
        crate::device::fused_cpu_ops(&self.device)
            && self.dtype() == candle_core::DType::F32
            && !c.has_mlp()
            && c.normalization_type.is_none()
            && c.embeddings == Embeddings::Learned
            && c.positional_embedding_type == Positions::Standard
    }

    /// The parameters' host memory, for [`Self::direct_loss_and_grads`] (locked until dropped:
    /// no update may run meanwhile).
    pub fn host_params(&self) -> HostParams<'_> {
        let guards = self
            .vars()
            .iter()
            .map(|v| v.as_tensor().storage_and_layout())
            .collect();
        HostParams {
            model: self,
            guards,
        }
    }

    fn check_direct(&self, tokens: &[u32], batch: usize, pos: usize) -> candle_core::Result<()> {
        let c = &self.cfg;
        if !self.direct_step_fits() {
            candle_core::bail!("the direct step does not fit this model");
        }
        if pos < 2 || pos > c.n_ctx || tokens.len() != batch * pos || batch == 0 {
            candle_core::bail!(
                "the direct step needs sequences of 2 to {} tokens, got {} tokens as {batch} × {pos}",
                c.n_ctx,
                tokens.len()
            );
        }
        let vocab = c.d_vocab_out();
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= c.d_vocab.min(vocab)) {
            candle_core::bail!(
                "token {t} is not below the vocabulary {}",
                c.d_vocab.min(vocab)
            );
        }
        Ok(())
    }

    /// The residual stream before each layer and after the last, every layer's prepared
    /// weights and what its backward needs.
    #[allow(clippy::type_complexity)]
    fn direct_stream<'p>(
        &self,
        params: &'p HostParams,
        tokens: &[u32],
        batch: usize,
        pos: usize,
    ) -> candle_core::Result<(BlockShape, Vec<Vec<f32>>, Vec<(Prepared<'p>, Saved)>)> {
        let c = &self.cfg;
        let (n, m) = (batch * pos, c.d_model);
        let (w_e, w_pos) = (params.get("embed.W_E")?, params.get("pos_embed.W_pos")?);
        // The residual stream of every layer: each layer's input is kept for its backward.
        let mut stream = vec![scratch::take(n * m)];
        for (r, row) in stream[0].chunks_exact_mut(m).enumerate() {
            let (t, p) = (tokens[r] as usize, r % pos);
            let (e, q) = (&w_e[t * m..(t + 1) * m], &w_pos[p * m..(p + 1) * m]);
            row.iter_mut()
                .zip(e.iter().zip(q))
                .for_each(|(x, (e, q))| *x = e + q);
        }
        let shape = BlockShape {
            batch,
            pos,
            heads: c.n_heads,
            d_head: c.d_head,
            d_model: m,
            scale: c.attn_scale() as f32,
            residual: true,
        };
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let weights = shape.prepare(&params.layer(l)?);
            let mut saved = shape.alloc_saved();
            let mut out = scratch::take(n * m);
            shape.forward(&stream[l], &weights, &mut saved, &mut out);
            stream.push(out);
            layers.push((weights, saved));
        }
        Ok((shape, stream, layers))
    }

    /// The logits `[batch·pos, d_vocab_out]` of `tokens` and every layer's pattern, forward
    /// only, where [`Self::direct_step_fits`]. A pattern is `[batch, head, query, key]` with
    /// rows `stride` keys apart (the key index runs to the query; the rest of a row is scratch).
    pub fn direct_forward(
        &self,
        params: &HostParams,
        tokens: &[u32],
        batch: usize,
        pos: usize,
    ) -> candle_core::Result<DirectForward> {
        let c = &self.cfg;
        self.check_direct(tokens, batch, pos)?;
        let (shape, stream, layers) = self.direct_stream(params, tokens, batch, pos)?;
        let (n, m, vocab) = (batch * pos, c.d_model, c.d_vocab_out());
        let (w_u, b_u) = (params.get("unembed.W_U")?, params.get("unembed.b_U")?);
        let mut logits = vec![0f32; n * vocab];
        let x = &stream[c.n_layers];
        super::cpu::pool().install(|| {
            super::cpu::matmul(
                &mut logits,
                (n, vocab, m),
                (x, m, 1),
                (w_u, vocab, 1),
                false,
            )
        });
        super::cpu::add_rows(&mut logits, b_u);
        let patterns = layers
            .into_iter()
            .map(|(_, mut saved)| std::mem::take(&mut saved.probs))
            .collect();
        for buffer in stream {
            scratch::give(buffer);
        }
        Ok(DirectForward {
            logits,
            patterns,
            stride: super::attention_core::key_stride(shape.pos),
        })
    }

    /// The mean next-token loss of `tokens` (`batch` sequences of `pos`, row after row) and
    /// the gradient of every parameter: what `next_token_loss(tokens).backward()` gives, bit for
    /// bit, where [`Self::direct_step_fits`].
    pub fn direct_loss_and_grads(
        &self,
        params: &HostParams,
        tokens: &[u32],
        batch: usize,
        pos: usize,
    ) -> candle_core::Result<(f32, HostGrads)> {
        let c = &self.cfg;
        self.check_direct(tokens, batch, pos)?;
        let vocab = c.d_vocab_out();
        let (n, m) = (batch * pos, c.d_model);
        let (shape, stream, layers) = self.direct_stream(params, tokens, batch, pos)?;
        let loss_shape = LossShape {
            batch,
            pos,
            d_model: m,
            vocab,
        };
        let (w_u, b_u) = (params.get("unembed.W_U")?, params.get("unembed.b_U")?);
        let mut probs = scratch::take(n * vocab);
        let final_stream = &stream[c.n_layers];
        let loss = loss_shape.forward(final_stream, w_u, b_u, tokens, &mut probs) as f32;

        let mut grads = GradBuffers::new(self);
        let mut dx = scratch::take(n * m);
        let (mut dw_u, mut db_u) = (vec![0f32; m * vocab], vec![0f32; vocab]);
        // d loss / d loss = 1, as candle's backward starts.
        let (dlogits, one) = (&mut probs, 1.0);
        loss_shape.backward(
            final_stream,
            w_u,
            tokens,
            dlogits,
            one,
            &mut dx,
            &mut dw_u,
            &mut db_u,
        );
        grads.get("unembed.W_U").copy_from_slice(&dw_u);
        grads.get("unembed.b_U").copy_from_slice(&db_u);
        scratch::give(probs);
        let mut dprev = scratch::take(n * m);
        for (l, (weights, saved)) in layers.iter().enumerate().rev() {
            shape.backward(&stream[l], weights, &dx, saved, &mut dprev, grads.layer(l));
            std::mem::swap(&mut dx, &mut dprev);
        }
        drop(layers);
        // The embeddings': each row of the stream's gradient goes to its token's row of W_E (in
        // order, as candle's index-add) and to its position's row of W_pos (summed over the
        // batch, as the bias it joined as).
        let d_embed = grads.get("embed.W_E");
        for (r, row) in dx.chunks_exact(m).enumerate() {
            let t = tokens[r] as usize;
            d_embed[t * m..(t + 1) * m]
                .iter_mut()
                .zip(row)
                .for_each(|(g, d)| *g += d);
        }
        let d_pos = grads.get("pos_embed.W_pos");
        super::cpu::column_sums(&dx, pos * m, &mut d_pos[..pos * m]);
        for buffer in stream.into_iter().chain([dx, dprev]) {
            scratch::give(buffer);
        }
        Ok((loss, grads.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ModelConfig, Normalization};
    use crate::model::Weights;
    use candle_core::Device;

    fn model(n_layers: usize, d_vocab_out: Option<usize>, n_ctx: usize) -> Transformer {
        let cfg = ModelConfig {
            n_layers,
            d_model: 12,
            n_heads: 3,
            d_head: 5,
            d_vocab: 9,
            d_vocab_out,
            n_ctx,
            attn_only: true,
            positional_embedding_type: Positions::Standard,
            embeddings: Embeddings::Learned,
            init_range: Some(0.5),
            ..ModelConfig::default()
        };
        Transformer::new(&cfg, &Weights::init(&cfg, n_layers as u64), &Device::Cpu).unwrap()
    }

    /// Loss and gradients equal the graph's (`next_token_loss` and its backward) bit for bit:
    /// one to three layers, positions fewer than `n_ctx`, an output vocabulary of its own.
    #[test]
    fn equals_the_graph_bit_for_bit() {
        for (layers, vocab_out, n_ctx, batch, pos) in [
            (1, None, 7, 3, 7),
            (2, Some(7), 8, 5, 6),
            (3, None, 5, 2, 3),
        ] {
            let model = model(layers, vocab_out, n_ctx);
            assert!(model.direct_step_fits());
            let tokens: Vec<u32> = (0..batch * pos)
                .map(|i| (i * 4 + i / 3) as u32 % 7)
                .collect();
            let params = model.host_params();
            let (loss, grads) = model
                .direct_loss_and_grads(&params, &tokens, batch, pos)
                .unwrap();
            drop(params);
            let t = Tensor::from_vec(tokens, (batch, pos), &Device::Cpu).unwrap();
            let graph = model.next_token_loss(&t).unwrap();
            let want = graph.to_scalar::<f32>().unwrap();
            assert_eq!(
                loss.to_bits(),
                want.to_bits(),
                "{layers} layers: {loss} against {want}"
            );
            let store = graph.backward().unwrap();
            for (spec, var) in model.specs().iter().zip(model.vars()) {
                let got = grads.get(var.as_tensor()).unwrap();
                let want = store.get(var.as_tensor()).unwrap();
                let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(got, want.as_slice(), "{layers} layers: {}", spec.name);
                assert!(
                    got.iter().any(|&g| g != 0.0),
                    "{layers} layers: {}",
                    spec.name
                );
            }
        }
    }

    #[test]
    fn bad_inputs_and_other_models_are_errors() {
        let m = model(1, Some(7), 6);
        let params = m.host_params();
        let run = |tokens: &[u32], batch, pos| m.direct_loss_and_grads(&params, tokens, batch, pos);
        assert!(run(&[1, 2, 3, 4], 2, 2).is_ok());
        assert!(
            run(&[1, 2, 3, 7], 2, 2).is_err(),
            "7 is past the output vocabulary"
        );
        assert!(run(&[1, 2, 3], 2, 2).is_err(), "too few tokens");
        assert!(run(&[1, 2], 2, 1).is_err(), "nothing to predict");
        assert!(run(&[1; 7], 1, 7).is_err(), "longer than n_ctx");
        drop(params);
        let cfg = ModelConfig {
            normalization_type: Some(Normalization::Ln),
            ..m.config().clone()
        };
        let ln = Transformer::new(&cfg, &Weights::init(&cfg, 0), &Device::Cpu).unwrap();
        assert!(!ln.direct_step_fits());
        let params = ln.host_params();
        assert!(ln.direct_loss_and_grads(&params, &[1, 2], 1, 2).is_err());
    }
}
