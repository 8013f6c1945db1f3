//! Colour scales for values: which colour a heatmap cell, a legend or a score gets. Plain RGB, no
//! UI types, so that the app's state (which picks a scale's limits when it derives a view) and
//! the drawing code (which paints with it) can both use it.

/// How values map to colours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// 0 -> white, 1 -> deep blue: attention weights and probabilities.
    Sequential { max: f32 },
    /// Centred on 0: −limit -> red, 0 -> white, +limit -> blue.
    Diverging { limit: f32 },
}

impl Scale {
    pub fn rgb(self, value: f32) -> [u8; 3] {
        let lerp = |a: [u8; 3], b: [u8; 3], t: f32| {
            let t = t.clamp(0.0, 1.0);
            let c = |i: usize| (a[i] as f32 + (b[i] as f32 - a[i] as f32) * t).round() as u8;
            [c(0), c(1), c(2)]
        };
        const WHITE: [u8; 3] = [247, 247, 247];
        const BLUE: [u8; 3] = [33, 102, 172];
        const RED: [u8; 3] = [178, 24, 43];
        match self {
            Scale::Sequential { max } => lerp(WHITE, BLUE, value / max.max(1e-12)),
            Scale::Diverging { limit } => {
                let t = value / limit.max(1e-12);
                if t >= 0.0 {
                    lerp(WHITE, BLUE, t)
                } else {
                    lerp(WHITE, RED, -t)
                }
            }
        }
    }

    /// The largest finite |value| (1 when there is none).
    pub fn diverging_limit(values: impl IntoIterator<Item = f32>) -> f32 {
        let limit = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        if limit > 0.0 { limit } else { 1.0 }
    }
}
