use super::*;
use crate::config::{Embeddings, ModelConfig, Normalization, Positions};
use crate::model::Weights;
use crate::model::kernels::lm_loss::{UNSCORED, next_token_targets};
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
        init_range: Some(0.3),
        ..ModelConfig::default()
    };
    Transformer::new(&cfg, &Weights::init(&cfg, n_layers as u64), &Device::Cpu).unwrap()
}

/// Next-token targets with every fourth row unscored and every fifth given a target other than
/// the next token: a data file's mask and explicit targets.
fn masked_targets(tokens: &[u32], pos: usize, vocab: u32) -> Vec<u32> {
    let mut targets = next_token_targets(tokens, pos);
    for (r, t) in targets.iter_mut().enumerate() {
        if r % 4 == 1 {
            *t = UNSCORED;
        } else if r % 5 == 0 && *t != UNSCORED {
            *t = (*t + 2) % vocab;
        }
    }
    targets
}

/// The direct step's loss and gradients against the graph's (`next_token_loss` or, masked,
/// `scored_loss`, and its backward), bit for bit without layer 0's tables and to rounding with
/// them: one to three layers, positions fewer than `n_ctx`, an output vocabulary of its own.
fn check_against_the_graph(tables: bool, masked: bool) {
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
        let targets = if masked {
            masked_targets(&tokens, pos, 7)
        } else {
            next_token_targets(&tokens, pos)
        };
        let params = model.host_params();
        let (loss, grads) = model
            .direct_loss_and_grads_with(&params, (&tokens, &targets), batch, pos, tables)
            .unwrap();
        drop(params);
        let t = Tensor::from_vec(tokens, (batch, pos), &Device::Cpu).unwrap();
        let graph = if masked {
            let targets = Tensor::from_vec(targets, (batch, pos), &Device::Cpu).unwrap();
            model.scored_loss(&t, &targets).unwrap()
        } else {
            model.next_token_loss(&t).unwrap()
        };
        let want = graph.to_scalar::<f32>().unwrap();
        let close = |a: f32, b: f32, scale: f32| (a - b).abs() <= 1e-5 * scale.max(1.0);
        if tables {
            assert!(
                close(loss, want, want),
                "{layers} layers: {loss} against {want}"
            );
        } else {
            assert_eq!(
                loss.to_bits(),
                want.to_bits(),
                "{layers} layers: {loss} against {want}"
            );
        }
        let store = graph.backward().unwrap();
        for (spec, var) in model.specs().iter().zip(model.vars()) {
            let got = grads.get(var.as_tensor()).unwrap();
            let want = store.get(var.as_tensor()).unwrap();
            let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let name = &spec.name;
            assert!(got.iter().any(|&g| g != 0.0), "{layers} layers: {name}");
            if tables {
                let scale = want.iter().fold(0f32, |m, g| m.max(g.abs()));
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        close(*a, *b, scale),
                        "{layers} layers, {name}: {a} against {b}"
                    );
                }
            } else {
                assert_eq!(got, want.as_slice(), "{layers} layers: {name}");
            }
        }
    }
}

#[test]
fn without_tables_equals_the_graph_bit_for_bit() {
    check_against_the_graph(false, false);
    check_against_the_graph(false, true);
}

#[test]
fn with_layer_0_tables_equals_the_graph_to_rounding() {
    check_against_the_graph(true, false);
    check_against_the_graph(true, true);
}

/// Tables where their rows are fewer than the batch's: the training halves and evaluation
/// chunks of the induction preset, not a single short sequence.
#[test]
fn tables_are_taken_where_they_cost_less() {
    let m = model(2, None, 20);
    assert!(m.layer0_tables(32, 20));
    assert!(!m.layer0_tables(1, 20));
    assert!(!m.layer0_tables(1, 2));
}

#[test]
fn bad_inputs_and_other_models_are_errors() {
    let m = model(1, Some(7), 6);
    let params = m.host_params();
    let run = |tokens: &[u32], batch, pos| {
        let targets = next_token_targets(tokens, pos);
        m.direct_loss_and_grads(&params, (tokens, &targets), batch, pos)
    };
    assert!(run(&[1, 2, 3, 4], 2, 2).is_ok());
    let nothing_scored = [UNSCORED; 4];
    assert!(
        m.direct_loss_and_grads(&params, (&[1, 2, 3, 4], &nothing_scored), 2, 2)
            .is_err()
    );
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
    assert!(
        ln.direct_loss_and_grads(&params, (&[1, 2], &[2, UNSCORED]), 1, 2)
            .is_err()
    );
}
