//! Adam with `torch.optim.Adam` semantics: weight decay is an L2 term added to the gradient (not
//! AdamW's decoupled decay, which is what `candle_nn::AdamW` implements). With weight_decay = 0
//! the two agree. The update runs as tensor ops on the parameters' own device.

use candle_core::{Tensor, Var, backprop::GradStore};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

pub struct Adam {
    vars: Vec<Var>,
    first_moment: Vec<Tensor>,
    second_moment: Vec<Tensor>,
    lr: f64,
    weight_decay: f64,
    steps: i32,
}

impl Adam {
    pub fn new(vars: Vec<Var>, lr: f64, weight_decay: f64) -> candle_core::Result<Self> {
        let zeros = vars
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            first_moment: zeros.clone(),
            second_moment: zeros,
            lr,
            weight_decay,
            steps: 0,
        })
    }

    /// One update from `grads`. A variable without a gradient is treated as having gradient 0.
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.steps += 1;
        let bias_correction1 = 1.0 - BETA1.powi(self.steps);
        let bias_correction2_sqrt = (1.0 - BETA2.powi(self.steps)).sqrt();
        let step_size = self.lr / bias_correction1;
        for ((var, m), v) in self
            .vars
            .iter()
            .zip(self.first_moment.iter_mut())
            .zip(self.second_moment.iter_mut())
        {
            let theta = var.as_tensor();
            let mut grad = match grads.get(theta) {
                Some(g) => g.clone(),
                None => theta.zeros_like()?,
            };
            if self.weight_decay != 0.0 {
                grad = (grad + theta.affine(self.weight_decay, 0.0)?)?;
            }
            *m = (m.affine(BETA1, 0.0)? + grad.affine(1.0 - BETA1, 0.0)?)?;
            *v = (v.affine(BETA2, 0.0)? + grad.sqr()?.affine(1.0 - BETA2, 0.0)?)?;
            let denom = v.sqrt()?.affine(1.0 / bias_correction2_sqrt, EPS)?;
            let update = (m.div(&denom)?).affine(step_size, 0.0)?;
            var.set(&(theta - update)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// f(x) = sum(x^2) from x = [1, -2], lr 0.1, weight decay 0.5, three steps. Expected values
    /// printed by PyTorch 2.15:
    /// ```python
    /// x = torch.tensor([1.0, -2.0], requires_grad=True)
    /// opt = torch.optim.Adam([x], lr=0.1, weight_decay=0.5)
    /// for _ in range(3): opt.zero_grad(); (x**2).sum().backward(); opt.step(); print(x)
    /// # [0.9000000, -1.9000000], [0.8004122, -1.8001665], [0.7015862, -1.7006234]
    /// ```
    #[test]
    fn matches_torch_adam_with_l2_weight_decay() {
        let x = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut adam = Adam::new(vec![x.clone()], 0.1, 0.5).unwrap();
        let expected = [
            [0.9, -1.9],
            [0.8004122, -1.8001665],
            [0.7015862, -1.7006234],
        ];
        for want in expected {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            adam.step(&loss.backward().unwrap()).unwrap();
            let got = x.as_tensor().to_vec1::<f32>().unwrap();
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        }
    }
}
