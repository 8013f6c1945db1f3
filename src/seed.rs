//! One user-visible seed drives every random stream. Each stream is its own ChaCha8 stream of the
//! same key, so changing how much one stream draws (say, the train set size) never shifts another.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The independent random streams of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    TrainData = 1,
    ValData = 2,
    Init = 3,
    Shuffle = 4,
    /// Samples drawn by analyses (for example noise sequences for evaluation).
    Analysis = 5,
}

/// A reproducible generator for `stream` of `seed`.
pub fn stream_rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}
