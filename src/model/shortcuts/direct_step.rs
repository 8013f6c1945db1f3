//! The next-token loss and every parameter's gradient of the plainest transformer (attention
//! only, no LayerNorm, learned embeddings, standard positions: the induction task's model),
//! computed on the parameters' own host memory with the fused layers' kernels, outside candle's
//! graph.
//!
//! Through candle, the same step is those fused ops plus what the graph adds around them: the
//! parameters packed by `cat` and their gradients cut back out by `narrow`, a zeroed buffer and
//! an add for each gradient that arrives, copies into and out of the loss op, a large share of
//! the step for a model this small (benches/MEASUREMENTS.md). Here the same kernels run in the same order on the same
//! values, so the loss and the gradients are bit for bit the graph's (a test holds them to it).
//!
//! One exact simplification goes further: layer 0 reads the embeddings alone, so its q, k and v
//! are rows of two small tables (by token and by position) rather than a product over every row
//! of the batch. That moves the numbers by rounding only (tested against the graph), and is
//! taken where the tables have fewer rows than the batch.

use candle_core::{Storage, StorageRef, Tensor, TensorId};

use crate::model::Transformer;
use crate::model::kernels::attention_block::{
    BlockShape, LAYER_PARAMS, Layer, LayerGrads, LayerParams, Prepared, Saved,
};
use crate::model::kernels::cpu::{self, matmul, with_avx2};
use crate::model::kernels::lm_loss::{LossShape, check_targets};
use crate::model::kernels::scratch;
use crate::model::plan::LmStep;

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
        let Storage::Cpu(host) = &**storage else {
            candle_core::bail!("the direct step runs on the CPU only");
        };
        cpu::slice(host, layout)
    }

    fn layer(&self, l: usize) -> candle_core::Result<LayerParams<'_>> {
        let mut parts = [&[][..]; 8];
        for (part, name) in parts.iter_mut().zip(LAYER_PARAMS) {
            *part = self.get(&format!("blocks.{l}.attn.{name}"))?;
        }
        Ok(Layer::from(parts))
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

    /// The gradients of the parameters `names` (distinct), borrowed all at once.
    fn parts<const N: usize>(&mut self, names: [&str; N]) -> [&mut [f32]; N] {
        let indices = names.map(|name| self.index(name));
        let mut all: Vec<Option<&mut [f32]>> = self
            .values
            .iter_mut()
            .map(|v| Some(v.as_mut_slice()))
            .collect();
        indices.map(|i| all[i].take().expect("distinct parameters"))
    }

    /// Layer `l`'s gradients.
    fn layer(&mut self, l: usize) -> LayerGrads<'_> {
        let names = LAYER_PARAMS.map(|s| format!("blocks.{l}.attn.{s}"));
        Layer::from(self.parts(names.each_ref().map(String::as_str)))
    }

    fn finish(self) -> HostGrads {
        let ids = self.model.vars().iter().map(|v| v.as_tensor().id());
        HostGrads {
            entries: ids.zip(self.values).collect(),
        }
    }
}

impl Transformer {
    /// Whether [`Self::direct_loss_and_grads`] computes this model's step: the plan's
    /// [`LmStep::Direct`] (attention only, no LayerNorm, learned embeddings and standard
    /// positions, the fused CPU kernels).
    pub fn direct_step_fits(&self) -> bool {
        self.plan.lm_step == LmStep::Direct
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
        tables: bool,
    ) -> candle_core::Result<(BlockShape, Vec<Vec<f32>>, Vec<(Prepared<'p>, Saved)>)> {
        let c = &self.cfg;
        let (n, m) = (batch * pos, c.d_model);
        let (w_e, w_pos) = (params.get("embed.W_E")?, params.get("pos_embed.W_pos")?);
        // The residual stream of every layer: each layer's input is kept for its backward.
        let mut stream = vec![scratch::take(n * m)];
        with_avx2(|| {
            for (r, row) in stream[0].chunks_exact_mut(m).enumerate() {
                let (t, p) = (tokens[r] as usize, r % pos);
                let (e, q) = (&w_e[t * m..(t + 1) * m], &w_pos[p * m..(p + 1) * m]);
                row.iter_mut()
                    .zip(e.iter().zip(q))
                    .for_each(|(x, (e, q))| *x = e + q);
            }
        });
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
            if l == 0 && tables {
                // Layer 0 reads the embeddings alone, so its q, k and v are rows of two small
                // tables: (W_E·W_QKV)[token] + (W_pos·W_QKV)[position] + b, instead of a
                // product over every row of the batch.
                let (w_qkv, b_qkv) = (&weights.w_qkv, &weights.b_qkv);
                let width = w_qkv.len() / m;
                let by_token = table(w_e, w_qkv, m, width);
                let by_position = table(&w_pos[..pos * m], w_qkv, m, width);
                let fill = |qkv: &mut [f32]| {
                    with_avx2(|| {
                        for (r, row) in qkv.chunks_exact_mut(width).enumerate() {
                            let (t, p) = (tokens[r] as usize, r % pos);
                            let a = &by_token[t * width..(t + 1) * width];
                            let b = &by_position[p * width..(p + 1) * width];
                            for ((x, a), (b, c)) in row.iter_mut().zip(a).zip(b.iter().zip(b_qkv)) {
                                *x = a + b + c;
                            }
                        }
                    })
                };
                shape.forward_from_qkv(&stream[0], &weights, &mut saved, &mut out, fill);
            } else {
                shape.forward(&stream[l], &weights, &mut saved, &mut out);
            }
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
        let tables = self.layer0_tables(batch, pos);
        let (shape, stream, layers) = self.direct_stream(params, tokens, batch, pos, tables)?;
        let (n, m, vocab) = (batch * pos, c.d_model, c.d_vocab_out());
        let (w_u, b_u) = (params.get("unembed.W_U")?, params.get("unembed.b_U")?);
        let mut logits = vec![0f32; n * vocab];
        let x = &stream[c.n_layers];
        cpu::pool().install(|| {
            cpu::matmul(
                &mut logits,
                (n, vocab, m),
                (x, m, 1),
                (w_u, vocab, 1),
                false,
            )
        });
        cpu::add_rows(&mut logits, b_u);
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
            stride: crate::model::kernels::attention_core::key_stride(shape.pos),
        })
    }

    /// The mean loss at the scored positions of `tokens` (`batch` sequences of `pos`, row after
    /// row; `targets` each row's target or `UNSCORED`) and the gradient of every parameter,
    /// where [`Self::direct_step_fits`]: what `scored_loss(tokens, targets).backward()` gives, to
    /// rounding (bit for bit without layer 0's tables, which a batch of more rows than table rows
    /// takes). With [`crate::model::kernels::lm_loss::next_token_targets`] it is the next-token
    /// loss.
    pub fn direct_loss_and_grads(
        &self,
        params: &HostParams,
        (tokens, targets): (&[u32], &[u32]),
        batch: usize,
        pos: usize,
    ) -> candle_core::Result<(f32, HostGrads)> {
        let tables = self.layer0_tables(batch, pos);
        self.direct_loss_and_grads_with(params, (tokens, targets), batch, pos, tables)
    }

    /// Whether layer 0's q, k and v come from tables: when their rows (a vocabulary and a
    /// sequence) are fewer than the batch's, so the tables cost less than the product.
    fn layer0_tables(&self, batch: usize, pos: usize) -> bool {
        self.cfg.d_vocab + pos < batch * pos
    }

    fn direct_loss_and_grads_with(
        &self,
        params: &HostParams,
        (tokens, targets): (&[u32], &[u32]),
        batch: usize,
        pos: usize,
        tables: bool,
    ) -> candle_core::Result<(f32, HostGrads)> {
        let c = &self.cfg;
        self.check_direct(tokens, batch, pos)?;
        let vocab = c.d_vocab_out();
        if targets.len() != tokens.len() {
            candle_core::bail!("{} targets for {} tokens", targets.len(), tokens.len());
        }
        check_targets(targets, vocab)?;
        let (n, m) = (batch * pos, c.d_model);
        let (shape, stream, layers) = self.direct_stream(params, tokens, batch, pos, tables)?;
        let loss_shape = LossShape {
            batch,
            pos,
            d_model: m,
            vocab,
        };
        let (w_u, b_u) = (params.get("unembed.W_U")?, params.get("unembed.b_U")?);
        let mut probs = scratch::take(n * vocab);
        let final_stream = &stream[c.n_layers];
        let loss = loss_shape.forward(final_stream, w_u, b_u, targets, &mut probs) as f32;

        let mut grads = GradBuffers::new(self);
        let mut dx = scratch::take(n * m);
        let [dw_u, db_u] = grads.parts(["unembed.W_U", "unembed.b_U"]);
        // d loss / d loss = 1, as candle's backward starts.
        let (dlogits, one) = (&mut probs, 1.0);
        loss_shape.backward(
            final_stream,
            w_u,
            targets,
            dlogits,
            one,
            &mut dx,
            dw_u,
            db_u,
        );
        scratch::give(probs);
        let mut dprev = scratch::take(n * m);
        let first = usize::from(tables);
        for (l, (weights, saved)) in layers.iter().enumerate().skip(first).rev() {
            shape.backward(&stream[l], weights, &dx, saved, &mut dprev, grads.layer(l));
            std::mem::swap(&mut dx, &mut dprev);
        }
        // The embeddings': each row of the stream's gradient goes to its token's row of W_E (in
        // order, as candle's index-add) and to its position's row of W_pos (summed over the
        // batch, as the bias it joined as).
        let [d_embed, d_pos] = grads.parts(["embed.W_E", "pos_embed.W_pos"]);
        with_avx2(|| {
            for (r, row) in dx.chunks_exact(m).enumerate() {
                let t = tokens[r] as usize;
                d_embed[t * m..(t + 1) * m]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(g, d)| *g += d);
            }
        });
        cpu::column_sums(&dx, pos * m, &mut d_pos[..pos * m]);
        if tables {
            // `dx` is the gradient of layer 0's output, whose residual path has just passed it
            // to the embeddings as it is; its q, k and v path goes back through the tables.
            let (weights, saved) = &layers[0];
            self.table_backward(&shape, params, tokens, weights, saved, &dx, &mut grads)?;
        }
        drop(layers);
        for buffer in stream.into_iter().chain([dx, dprev]) {
            scratch::give(buffer);
        }
        Ok((loss, grads.finish()))
    }

    /// Layer 0's backward where its q, k and v came from the tables: dq, dk and dv summed by
    /// token and by position first, then multiplied out: into dW_QKV, and through W_QKVᵀ into
    /// the embeddings' gradients (added to what is there).
    #[allow(clippy::too_many_arguments)]
    fn table_backward(
        &self,
        shape: &BlockShape,
        params: &HostParams,
        tokens: &[u32],
        weights: &Prepared,
        saved: &Saved,
        dout: &[f32],
        grads: &mut GradBuffers,
    ) -> candle_core::Result<()> {
        let (pos, m, vocab_in) = (shape.pos, shape.d_model, self.cfg.d_vocab);
        let w_qkv = &weights.w_qkv[..];
        let width = w_qkv.len() / m;
        let mut dqkv = scratch::take(tokens.len() * width);
        shape.backward_from_qkv(weights, dout, saved, &mut grads.layer(0), &mut dqkv);
        let (mut by_token, mut by_position) =
            (vec![0f32; vocab_in * width], vec![0f32; pos * width]);
        with_avx2(|| {
            for (r, row) in dqkv.chunks_exact(width).enumerate() {
                let (t, p) = (tokens[r] as usize, r % pos);
                let add = |sum: &mut [f32]| sum.iter_mut().zip(row).for_each(|(s, d)| *s += d);
                add(&mut by_token[t * width..(t + 1) * width]);
                add(&mut by_position[p * width..(p + 1) * width]);
            }
        });
        scratch::give(dqkv);
        let (w_e, w_pos) = (params.get("embed.W_E")?, params.get("pos_embed.W_pos")?);
        let sums = [
            (w_e, &by_token, vocab_in),
            (&w_pos[..pos * m], &by_position, pos),
        ];
        let mut dw_qkv = vec![0f32; m * width];
        cpu::pool().install(|| {
            for (i, (rows, sum, k)) in sums.iter().enumerate() {
                // dW_QKV = W_Eᵀ·(by token) + W_posᵀ·(by position).
                matmul(
                    &mut dw_qkv,
                    (m, width, *k),
                    (rows, 1, m),
                    (sum, width, 1),
                    i > 0,
                );
            }
        });
        shape.qkv_weight_grads(&dw_qkv, &mut grads.layer(0));
        let [d_embed, d_pos] = grads.parts(["embed.W_E", "pos_embed.W_pos"]);
        cpu::pool().install(|| {
            for (d, (_, sum, k)) in [d_embed, &mut d_pos[..pos * m]].into_iter().zip(sums) {
                // d embedding += (by token or position)·W_QKVᵀ.
                matmul(d, (k, m, width), (sum, width, 1), (w_qkv, 1, width), true);
            }
        });
        Ok(())
    }
}

/// `rows · w` for `rows` `[k, m]` and `w` `[m, width]`: a table of projected rows.
fn table(rows: &[f32], w: &[f32], m: usize, width: usize) -> Vec<f32> {
    let k = rows.len() / m;
    let mut out = vec![0f32; k * width];
    cpu::pool().install(|| matmul(&mut out, (k, width, m), (rows, m, 1), (w, width, 1), false));
    out
}

#[cfg(test)]
mod tests;
