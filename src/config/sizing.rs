//! How much memory a model and a training step hold, and how many sequences an analysis pass
//! takes at once: the sizes that validation bounds and every chunked pass reads.

use super::{ModelConfig, PathChoice, RunConfig};

/// Activations one training step may hold: 4 GiB of f32, a sixth of this machine's memory.
pub const MAX_STEP_FLOATS: usize = 1 << 30;

/// The intermediates of one analysis forward pass stay within this many floats (256 MiB).
pub const FORWARD_CHUNK_FLOATS: usize = 64 << 20;

impl ModelConfig {
    /// The parameter count without building the list (safe on absurd sizes).
    pub(super) fn params_saturating(&self) -> usize {
        let (m, h, d, v) = (self.d_model, self.n_heads, self.d_head, self.d_vocab);
        let attn = 4usize.saturating_mul(h).saturating_mul(m).saturating_mul(d);
        let mlp = if self.has_mlp() {
            2usize.saturating_mul(m).saturating_mul(self.d_mlp())
        } else {
            0
        };
        let embed = v
            .saturating_add(self.d_vocab_out())
            .saturating_add(self.n_ctx)
            .saturating_mul(m);
        attn.saturating_add(mlp)
            .saturating_mul(self.n_layers)
            .saturating_add(embed)
    }

    /// Floats of the largest intermediates of a full forward pass (with the activation cache)
    /// over one sequence of `seq_len`: scores and pattern, logits, q, k, v, z and the MLP.
    pub fn forward_floats_per_sequence(&self, seq_len: usize) -> usize {
        let per_position = (2 * self.n_heads * seq_len)
            .max(2 * self.d_vocab_out())
            .max(4 * self.n_heads * self.d_head)
            .max(self.n_heads * self.d_model)
            .max(if self.has_mlp() { 2 * self.d_mlp() } else { 0 });
        (seq_len * per_position * self.n_layers.max(1)).max(1)
    }

    /// How many sequences one analysis forward pass takes at once: up to 10 000, fewer when a
    /// pass over that many would hold more than [`FORWARD_CHUNK_FLOATS`], so analysis memory
    /// stays bounded at any model and sequence size.
    pub fn forward_chunk_rows(&self, seq_len: usize) -> usize {
        (FORWARD_CHUNK_FLOATS / self.forward_floats_per_sequence(seq_len)).clamp(1, 10_000)
    }
}

impl RunConfig {
    /// Floats of activations one training step holds (forward and backward, about 3× the
    /// forward's largest intermediates), for the path the config asks for. `Auto` takes the
    /// multiset path only where it has fewer rows, so it is counted as the last-position path.
    pub fn step_floats(&self) -> usize {
        let (m, p) = (&self.model, self.task.seq_len());
        let last_position = 4 * p * m.n_heads * m.d_head + 2 * m.n_heads * p + 2 * m.d_vocab;
        let per_row = match self.train.path.for_model(m) {
            PathChoice::Full => m.forward_floats_per_sequence(p),
            PathChoice::LastPosition | PathChoice::Auto => last_position,
            PathChoice::Multiset => 4 * m.n_heads * m.d_vocab + 2 * m.d_vocab,
        };
        per_row.saturating_mul(self.step_batch()).saturating_mul(3)
    }
}
