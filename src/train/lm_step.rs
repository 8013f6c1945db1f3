//! The next-token loss of a batch of sequences and its gradients: the step of the language-model
//! tasks (induction), shared by the trainer and `bench --lm-step`.
//!
//! On the CPU the batch is split into two halves whose forward and backward passes run at once,
//! one per core, each on its own candle graph; the loss and the gradients are their means. A
//! step of a small model is some twenty short parallel sections (each matrix product, each
//! layer's attention) with candle's own ops between them on one thread, and waking the second
//! core for each section cost as much as it brought. Two halves keep both cores busy from the
//! first op to the last, with two joins (forward, backward). There are always two halves,
//! whatever the number of cores, so a run's numbers do not depend on the machine.
//!
//! Where the model is the plainest kind (attention only, no LayerNorm: the induction task's),
//! each half runs as one direct pass over the parameters' host memory instead of a candle graph
//! ([`Transformer::direct_loss_and_grads`]), with one join and the graph's numbers (to rounding
//! where layer 0 takes its tables).

use std::borrow::Cow;

use candle_core::Tensor;
use candle_core::backprop::GradStore;

use super::adam::GradSource;
use crate::model::plan::MIN_SPLIT_BATCH;
use crate::model::{HostGrads, LmStep, Transformer};

/// A step's gradients: from candle's graph, or from the direct pass.
pub enum Gradients {
    Graph(GradStore),
    Host(HostGrads),
}

impl GradSource for Gradients {
    fn host(&self, t: &Tensor) -> candle_core::Result<Option<Cow<'_, [f32]>>> {
        match self {
            Gradients::Graph(store) => store.host(t),
            Gradients::Host(host) => Ok(host.get(t).map(Into::into)),
        }
    }

    fn tensor(&self, t: &Tensor) -> candle_core::Result<Option<Tensor>> {
        match self {
            Gradients::Graph(store) => store.tensor(t),
            Gradients::Host(host) => host
                .get(t)
                .map(|g| Tensor::from_slice(g, t.shape(), t.device()))
                .transpose(),
        }
    }
}

/// The mean next-token loss of `tokens` `[batch, pos]` and its gradients, by the model's plan
/// ([`LmStep`]); a batch under [`MIN_SPLIT_BATCH`] runs whole.
pub fn next_token_loss_and_grads(
    model: &Transformer,
    tokens: &Tensor,
) -> candle_core::Result<(f64, Gradients)> {
    let batch = tokens.dim(0)?;
    let step = model.plan().lm_step;
    if step == LmStep::Graph || batch < MIN_SPLIT_BATCH {
        let loss = model.next_token_loss(tokens)?;
        super::profile::mark("forward and loss", loss.device());
        let value = loss.to_scalar::<f32>()? as f64;
        let grads = loss.backward()?;
        super::profile::mark("backward", loss.device());
        return Ok((value, Gradients::Graph(grads)));
    }
    let first = batch / 2;
    // Each half's share of the mean: its fraction of the sequences, all of one length.
    let weights = [
        first as f64 / batch as f64,
        (batch - first) as f64 / batch as f64,
    ];
    match step {
        LmStep::Direct => direct_halves(model, tokens, first, weights),
        LmStep::GraphHalves | LmStep::Graph => graph_halves(model, tokens, first, weights),
    }
}

/// The two halves as candle graphs, one per core; the loss and gradients their weighted sums.
fn graph_halves(
    model: &Transformer,
    tokens: &Tensor,
    first: usize,
    weights: [f64; 2],
) -> candle_core::Result<(f64, Gradients)> {
    let batch = tokens.dim(0)?;
    let halves = [
        tokens.narrow(0, 0, first)?,
        tokens.narrow(0, first, batch - first)?,
    ];
    // Both halves on the fused ops' threads; the phases are marked on this one.
    let pool = crate::model::cpu_pool();
    let (a, b) = pool.install(|| {
        rayon::join(
            || model.next_token_loss(&halves[0]),
            || model.next_token_loss(&halves[1]),
        )
    });
    let losses = [a?, b?];
    super::profile::mark("forward and loss", model.device());
    let (a, b) = pool.install(|| rayon::join(|| losses[0].backward(), || losses[1].backward()));
    let (mut grads, other) = (a?, b?);
    let mut value = 0.0;
    for (loss, w) in losses.iter().zip(weights) {
        value += w * loss.to_scalar::<f32>()? as f64;
    }
    for var in model.vars() {
        let t = var.as_tensor();
        let joined = match (grads.get(t), other.get(t)) {
            (Some(g), Some(h)) => (g.affine(weights[0], 0.0)? + h.affine(weights[1], 0.0)?)?,
            (Some(g), None) => g.affine(weights[0], 0.0)?,
            (None, Some(h)) => h.affine(weights[1], 0.0)?,
            (None, None) => continue,
        };
        grads.insert(t, joined);
    }
    super::profile::mark("backward", model.device());
    Ok((value, Gradients::Graph(grads)))
}

/// The two halves as direct passes, one per core; their losses and gradients joined as the
/// graph's halves are.
fn direct_halves(
    model: &Transformer,
    tokens: &Tensor,
    first: usize,
    weights: [f64; 2],
) -> candle_core::Result<(f64, Gradients)> {
    let (batch, pos) = tokens.dims2()?;
    let tokens = tokens.flatten_all()?.to_vec1::<u32>()?;
    let (a, b) = tokens.split_at(first * pos);
    let params = model.host_params();
    let (a, b) = crate::model::cpu_pool().install(|| {
        rayon::join(
            || model.direct_loss_and_grads(&params, a, first, pos),
            || model.direct_loss_and_grads(&params, b, batch - first, pos),
        )
    });
    drop(params);
    let ((loss_a, grads_a), (loss_b, grads_b)) = (a?, b?);
    super::profile::mark("forward and backward", model.device());
    let value = weights[0] * loss_a as f64 + weights[1] * loss_b as f64;
    let grads = HostGrads::weighted_sum(vec![(grads_a, weights[0]), (grads_b, weights[1])]);
    Ok((value, Gradients::Host(grads)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Embeddings, ModelConfig, Positions};
    use crate::model::Weights;
    use candle_core::Device;

    /// The halves' mean equals the whole batch's loss and gradients, to rounding.
    /// A 2-layer attention-only model of vocabulary `vocab` and 6 positions.
    fn model(vocab: usize, seed: u64) -> Transformer {
        let cfg = ModelConfig {
            n_layers: 2,
            d_model: 16,
            n_heads: 2,
            d_head: 8,
            d_vocab: vocab,
            n_ctx: 6,
            attn_only: true,
            positional_embedding_type: Positions::Standard,
            embeddings: Embeddings::Learned,
            init_range: Some(0.4),
            ..ModelConfig::default()
        };
        Transformer::new(&cfg, &Weights::init(&cfg, seed), &Device::Cpu).unwrap()
    }

    #[test]
    fn two_halves_give_the_whole_batchs_loss_and_gradients() {
        let model = model(11, 3);
        // An odd batch: halves of 4 and 5 sequences, weighted by their sizes.
        let tokens: Vec<u32> = (0..9 * 6).map(|i| (i * 7 + i / 5) % 11).collect();
        let tokens = Tensor::from_vec(tokens, (9, 6), &Device::Cpu).unwrap();
        let (value, grads) = next_token_loss_and_grads(&model, &tokens).unwrap();
        let whole = model.next_token_loss(&tokens).unwrap();
        let want = whole.to_scalar::<f32>().unwrap() as f64;
        assert!((value - want).abs() < 1e-6, "{value} against {want}");
        let whole_grads = whole.backward().unwrap();
        for var in model.vars() {
            let (g, w) = (
                grads.tensor(var.as_tensor()).unwrap().unwrap(),
                whole_grads.get(var.as_tensor()).unwrap(),
            );
            let diff = crate::model::max_abs(&(g - w).unwrap());
            let scale = crate::model::max_abs(w);
            assert!(
                scale > 0.0 && diff <= 1e-6 * scale.max(1.0),
                "{diff} of {scale}"
            );
        }
    }

    /// The direct halves give the graph halves' loss and gradients: bit for bit where layer 0
    /// takes no tables (a vocabulary larger than the halves), to rounding where it does, so a
    /// run's numbers do not depend on which one trained it beyond rounding.
    #[test]
    fn direct_halves_equal_graph_halves() {
        for (vocab, exact) in [(60, true), (11, false)] {
            let model = model(vocab, 4);
            assert!(model.direct_step_fits());
            let tokens: Vec<u32> = (0..9 * 5).map(|i| (i * 5 + i / 4) % 11).collect();
            let tokens = Tensor::from_vec(tokens, (9, 5), &Device::Cpu).unwrap();
            let weights = [4.0 / 9.0, 5.0 / 9.0];
            let (direct, host) = direct_halves(&model, &tokens, 4, weights).unwrap();
            let (graph, store) = graph_halves(&model, &tokens, 4, weights).unwrap();
            let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 1e-5 * scale.max(1.0);
            if exact {
                assert_eq!(
                    direct.to_bits(),
                    graph.to_bits(),
                    "{direct} against {graph}"
                );
            } else {
                assert!(close(direct, graph, graph), "{direct} against {graph}");
            }
            for var in model.vars() {
                let t = var.as_tensor();
                let (a, b) = (
                    host.host(t).unwrap().unwrap(),
                    store.host(t).unwrap().unwrap(),
                );
                assert!(a.iter().any(|&g| g != 0.0));
                if exact {
                    assert_eq!(a, b);
                } else {
                    let scale = b.iter().fold(0f32, |m, g| m.max(g.abs())) as f64;
                    for (x, y) in a.iter().zip(b.iter()) {
                        assert!(close(*x as f64, *y as f64, scale), "{x} against {y}");
                    }
                }
            }
        }
    }
}
