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
use crate::model::kernels::lm_loss::{next_token_targets, scored_count};
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
    loss_and_grads(model, tokens, None)
}

/// The mean loss at the scored positions of `tokens` `[batch, pos]` (`targets`: each position's
/// target, row after row, or `UNSCORED`) and its gradients, as [`next_token_loss_and_grads`]
/// computes them.
pub fn scored_loss_and_grads(
    model: &Transformer,
    tokens: &Tensor,
    targets: &[u32],
) -> candle_core::Result<(f64, Gradients)> {
    loss_and_grads(model, tokens, Some(targets))
}

/// A batch's loss: the next token at every position (`None`), or the given targets.
fn batch_loss(
    model: &Transformer,
    tokens: &Tensor,
    targets: Option<&[u32]>,
) -> candle_core::Result<Tensor> {
    match targets {
        None => model.next_token_loss(tokens),
        Some(t) => model.scored_loss(
            tokens,
            &Tensor::from_slice(t, tokens.shape(), tokens.device())?,
        ),
    }
}

fn loss_and_grads(
    model: &Transformer,
    tokens: &Tensor,
    targets: Option<&[u32]>,
) -> candle_core::Result<(f64, Gradients)> {
    let (batch, pos) = tokens.dims2()?;
    let step = model.plan().lm_step;
    if step == LmStep::Graph || batch < MIN_SPLIT_BATCH {
        let loss = batch_loss(model, tokens, targets)?;
        super::profile::mark("forward and loss", loss.device());
        let value = loss.to_scalar::<f32>()? as f64;
        let grads = loss.backward()?;
        super::profile::mark("backward", loss.device());
        return Ok((value, Gradients::Graph(grads)));
    }
    let first = batch / 2;
    // Each half's share of the mean: its share of the scored positions (of the sequences, for
    // the next-token loss, whose sequences all score as many).
    let weights = match targets {
        None => [
            first as f64 / batch as f64,
            (batch - first) as f64 / batch as f64,
        ],
        Some(t) => {
            let (a, b) = t.split_at(first * pos);
            let (a, b) = (scored_count(a) as f64, scored_count(b) as f64);
            if a + b == 0.0 {
                candle_core::bail!("no position of the batch is scored");
            }
            [a / (a + b), b / (a + b)]
        }
    };
    // A half with nothing scored contributes nothing: the other half is the whole loss.
    if weights[0] == 0.0 || weights[1] == 0.0 {
        let loss = batch_loss(model, tokens, targets)?;
        let value = loss.to_scalar::<f32>()? as f64;
        return Ok((value, Gradients::Graph(loss.backward()?)));
    }
    match step {
        LmStep::Direct => direct_halves(model, tokens, targets, first, weights),
        LmStep::GraphHalves | LmStep::Graph => graph_halves(model, tokens, targets, first, weights),
    }
}

/// The two halves as candle graphs, one per core; the loss and gradients their weighted sums.
fn graph_halves(
    model: &Transformer,
    tokens: &Tensor,
    targets: Option<&[u32]>,
    first: usize,
    weights: [f64; 2],
) -> candle_core::Result<(f64, Gradients)> {
    let (batch, pos) = tokens.dims2()?;
    let halves = [
        tokens.narrow(0, 0, first)?,
        tokens.narrow(0, first, batch - first)?,
    ];
    let target_halves = targets.map(|t| t.split_at(first * pos));
    let (ta, tb) = (target_halves.map(|t| t.0), target_halves.map(|t| t.1));
    // Both halves on the fused ops' threads; the phases are marked on this one.
    let pool = crate::model::cpu_pool();
    let (a, b) = pool.install(|| {
        rayon::join(
            || batch_loss(model, &halves[0], ta),
            || batch_loss(model, &halves[1], tb),
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
    targets: Option<&[u32]>,
    first: usize,
    weights: [f64; 2],
) -> candle_core::Result<(f64, Gradients)> {
    let (batch, pos) = tokens.dims2()?;
    let tokens = tokens.flatten_all()?.to_vec1::<u32>()?;
    let next: Vec<u32>;
    let targets = match targets {
        Some(t) => t,
        None => {
            next = next_token_targets(&tokens, pos);
            &next
        }
    };
    let (a, b) = tokens.split_at(first * pos);
    let (ta, tb) = targets.split_at(first * pos);
    let params = model.host_params();
    let (a, b) = crate::model::cpu_pool().install(|| {
        rayon::join(
            || model.direct_loss_and_grads(&params, (a, ta), first, pos),
            || model.direct_loss_and_grads(&params, (b, tb), batch - first, pos),
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

    /// With a mask that scores the halves unequally, the halves are weighted by their scored
    /// positions: the whole batch's masked loss and gradients, on both kinds of halves.
    #[test]
    fn masked_halves_give_the_whole_batchs_masked_loss() {
        use crate::model::kernels::lm_loss::UNSCORED;
        let model = model(11, 5);
        let (batch, pos) = (10usize, 6usize);
        let tokens: Vec<u32> = (0..(batch * pos) as u32)
            .map(|i| (i * 3 + i / 7) % 11)
            .collect();
        // The first half scores one position per sequence, the second every position but one.
        let targets: Vec<u32> = (0..batch * pos)
            .map(|r| {
                let (s, p) = (r / pos, r % pos);
                let scored = if s < batch / 2 { p == 2 } else { p + 1 < pos };
                if scored {
                    (tokens[r] + 1) % 11
                } else {
                    UNSCORED
                }
            })
            .collect();
        let t = Tensor::from_vec(tokens, (batch, pos), &Device::Cpu).unwrap();
        let whole = model
            .scored_loss(
                &t,
                &Tensor::from_slice(&targets, (batch, pos), &Device::Cpu).unwrap(),
            )
            .unwrap();
        let want = whole.to_scalar::<f32>().unwrap() as f64;
        let whole_grads = whole.backward().unwrap();
        let (value, grads) = scored_loss_and_grads(&model, &t, &targets).unwrap();
        assert!((value - want).abs() < 1e-6, "{value} against {want}");
        let weights = [5.0 / 30.0, 25.0 / 30.0];
        let (graph, store) = graph_halves(&model, &t, Some(&targets), 5, weights).unwrap();
        assert!((graph - want).abs() < 1e-6, "{graph} against {want}");
        for var in model.vars() {
            let w = whole_grads.get(var.as_tensor()).unwrap();
            let scale = crate::model::max_abs(w);
            for g in [
                grads.tensor(var.as_tensor()).unwrap().unwrap(),
                store.tensor(var.as_tensor()).unwrap().unwrap(),
            ] {
                let diff = crate::model::max_abs(&(g - w).unwrap());
                assert!(
                    scale > 0.0 && diff <= 1e-5 * scale.max(1.0),
                    "{diff} of {scale}"
                );
            }
        }
        // Nothing scored is an error, not a zero loss.
        let none = vec![UNSCORED; batch * pos];
        assert!(scored_loss_and_grads(&model, &t, &none).is_err());
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
            let (direct, host) = direct_halves(&model, &tokens, None, 4, weights).unwrap();
            let (graph, store) = graph_halves(&model, &tokens, None, 4, weights).unwrap();
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
