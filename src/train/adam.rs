//! Adam and AdamW with PyTorch's semantics. `torch.optim.Adam` adds weight decay to the gradient
//! as an L2 term; `torch.optim.AdamW` shrinks the weights by `lr · weight_decay` before the
//! update, decoupled from the moments. With weight_decay = 0 the two agree.
//!
//! On a GPU the update runs as tensor ops on the device, so nothing crosses to the host per step.
//! On the CPU the parameters are a few hundred floats, where a dozen tensor ops per parameter cost
//! far more than the arithmetic; there the same update runs in place on plain slices.

use std::borrow::Cow;

use candle_core::{Tensor, Var, backprop::GradStore};
use rayon::prelude::*;

/// Where a step's gradients are read from: candle's store, or host values.
pub trait GradSource {
    /// The gradient of parameter `t` as host values.
    fn host(&self, t: &Tensor) -> candle_core::Result<Option<Cow<'_, [f32]>>>;
    /// The gradient of parameter `t` as a tensor on its device.
    fn tensor(&self, t: &Tensor) -> candle_core::Result<Option<Tensor>>;
}

impl GradSource for GradStore {
    fn host(&self, t: &Tensor) -> candle_core::Result<Option<Cow<'_, [f32]>>> {
        self.get(t)
            .map(|g| Ok(g.flatten_all()?.to_vec1::<f32>()?.into()))
            .transpose()
    }

    fn tensor(&self, t: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(self.get(t).cloned())
    }
}

use crate::config::{Optimizer, TrainConfig};
use crate::model::AdamUpdate;

pub struct Adam {
    vars: Vec<Var>,
    state: State,
    hyper: Hyper,
    steps: i32,
}

/// The hyperparameters, as PyTorch names them.
#[derive(Debug, Clone, Copy)]
struct Hyper {
    lr: f64,
    weight_decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// AdamW: decay the weights directly instead of adding an L2 term to the gradient.
    decoupled: bool,
}

/// The moment estimates, where the update runs.
enum State {
    Device {
        first_moment: Vec<Tensor>,
        second_moment: Vec<Tensor>,
    },
    Host {
        first_moment: Vec<Vec<f32>>,
        second_moment: Vec<Vec<f32>>,
    },
}

impl Adam {
    /// The optimiser `cfg` asks for (Adam or AdamW, lr, weight decay, betas, eps) over `vars`,
    /// updating where the model's plan says (`update`).
    pub fn new(vars: Vec<Var>, cfg: &TrainConfig, update: AdamUpdate) -> candle_core::Result<Self> {
        Self::with_placement(vars, cfg, update == AdamUpdate::Device)
    }

    /// `on_device` forces the tensor-op update (used to test both against each other).
    pub fn with_placement(
        vars: Vec<Var>,
        cfg: &TrainConfig,
        on_device: bool,
    ) -> candle_core::Result<Self> {
        let hyper = Hyper {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            beta1: cfg.betas[0],
            beta2: cfg.betas[1],
            eps: cfg.eps,
            decoupled: cfg.optimizer == Optimizer::AdamW,
        };
        let state = if on_device {
            let zeros = vars
                .iter()
                .map(|v| v.as_tensor().zeros_like())
                .collect::<candle_core::Result<Vec<_>>>()?;
            State::Device {
                first_moment: zeros.clone(),
                second_moment: zeros,
            }
        } else {
            let zeros: Vec<Vec<f32>> = vars.iter().map(|v| vec![0.0; v.elem_count()]).collect();
            State::Host {
                first_moment: zeros.clone(),
                second_moment: zeros,
            }
        };
        Ok(Self {
            vars,
            state,
            hyper,
            steps: 0,
        })
    }

    /// One update from `grads`. A variable without a gradient is treated as having gradient 0.
    pub fn step(&mut self, grads: &impl GradSource) -> candle_core::Result<()> {
        self.steps += 1;
        let h = self.hyper;
        let bias_correction1 = 1.0 - h.beta1.powi(self.steps);
        let bias_correction2_sqrt = (1.0 - h.beta2.powi(self.steps)).sqrt();
        let step_size = h.lr / bias_correction1;
        // Adam's L2 term goes into the gradient; AdamW's decay scales the weights first.
        let (l2, shrink) = if h.decoupled {
            (0.0, 1.0 - h.lr * h.weight_decay)
        } else {
            (h.weight_decay, 1.0)
        };
        match &mut self.state {
            State::Device {
                first_moment,
                second_moment,
            } => Self::step_device(
                &self.vars,
                first_moment,
                second_moment,
                grads,
                h,
                (l2, shrink, bias_correction2_sqrt, step_size),
            ),
            State::Host {
                first_moment,
                second_moment,
            } => {
                let scalars = HostScalars {
                    h,
                    l2,
                    shrink,
                    bc2: bias_correction2_sqrt,
                    lr: step_size,
                };
                let update = |theta: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]| {
                    host_update(theta, grad, m, v, scalars)
                };
                let mut thetas = Vec::with_capacity(self.vars.len());
                let mut grad_values = Vec::with_capacity(self.vars.len());
                for var in &self.vars {
                    let theta = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                    grad_values.push(match grads.host(var.as_tensor())? {
                        Some(g) => g,
                        None => vec![0.0; theta.len()].into(),
                    });
                    thetas.push(theta);
                }
                // Elementwise, so it splits over the cores in chunks (serial, it left the other
                // core idle for a noticeable part of the LM step).
                const CHUNK: usize = 4096;
                crate::model::cpu_pool().install(|| {
                    thetas
                        .par_iter_mut()
                        .zip(&grad_values)
                        .zip(first_moment.par_iter_mut())
                        .zip(second_moment.par_iter_mut())
                        .for_each(|(((theta, grad), m), v)| {
                            theta
                                .par_chunks_mut(CHUNK)
                                .zip(grad.par_chunks(CHUNK))
                                .zip(m.par_chunks_mut(CHUNK))
                                .zip(v.par_chunks_mut(CHUNK))
                                .for_each(|(((t, g), m), v)| update(t, g, m, v));
                        })
                });
                for (var, theta) in self.vars.iter().zip(thetas) {
                    var.set(&Tensor::from_vec(theta, var.shape().clone(), var.device())?)?;
                }
                Ok(())
            }
        }
    }

    fn step_device(
        vars: &[Var],
        first_moment: &mut [Tensor],
        second_moment: &mut [Tensor],
        grads: &impl GradSource,
        h: Hyper,
        (l2, shrink, bias_correction2_sqrt, step_size): (f64, f64, f64, f64),
    ) -> candle_core::Result<()> {
        for ((var, m), v) in vars.iter().zip(first_moment).zip(second_moment) {
            // Detached, so that the update builds no graph: a leaf's gradient can still refer to
            // the forward pass (a matmul's is `grad · rhsᵀ`), and a moment computed from it would
            // keep every step's activations alive through the next moment, and the next.
            let mut theta = var.as_tensor().detach();
            if shrink != 1.0 {
                theta = theta.affine(shrink, 0.0)?;
            }
            let mut grad = match grads.tensor(var.as_tensor())? {
                Some(g) => g.detach(),
                None => theta.zeros_like()?,
            };
            if l2 != 0.0 {
                grad = (grad + theta.affine(l2, 0.0)?)?;
            }
            *m = (m.affine(h.beta1, 0.0)? + grad.affine(1.0 - h.beta1, 0.0)?)?;
            *v = (v.affine(h.beta2, 0.0)? + grad.sqr()?.affine(1.0 - h.beta2, 0.0)?)?;
            let denom = v.sqrt()?.affine(1.0 / bias_correction2_sqrt, h.eps)?;
            let update = (m.div(&denom)?).affine(step_size, 0.0)?;
            var.set(&(theta - update)?)?;
        }
        Ok(())
    }
}

/// The scalars of one host update. They stay f64, as PyTorch passes them; tensors stay f32.
#[derive(Clone, Copy)]
struct HostScalars {
    h: Hyper,
    l2: f64,
    shrink: f64,
    bc2: f64,
    lr: f64,
}

/// The update of one run of elements, compiled for AVX2 where the CPU has it: the same
/// operations on each element (no FMA contraction), eight at a time instead of one.
fn host_update(theta: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: HostScalars) {
    #[cfg(target_arch = "x86_64")]
    if crate::model::kernels::cpu::has_avx2() {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { host_update_avx2(theta, grad, m, v, s) };
    }
    host_update_plain(theta, grad, m, v, s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn host_update_avx2(
    theta: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    s: HostScalars,
) {
    host_update_plain(theta, grad, m, v, s)
}

#[inline(always)]
fn host_update_plain(
    theta: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    s: HostScalars,
) {
    let HostScalars {
        h,
        l2,
        shrink,
        bc2,
        lr,
    } = s;
    if shrink != 1.0 {
        theta
            .iter_mut()
            .for_each(|t| *t = (*t as f64 * shrink) as f32);
    }
    for (((theta, &grad), m), v) in theta.iter_mut().zip(grad).zip(m).zip(v) {
        let g = (grad as f64 + l2 * *theta as f64) as f32;
        *m = (h.beta1 * *m as f64 + (1.0 - h.beta1) * g as f64) as f32;
        *v = (h.beta2 * *v as f64 + (1.0 - h.beta2) * (g * g) as f64) as f32;
        let denom = (v.sqrt() as f64 / bc2 + h.eps) as f32;
        *theta -= (lr * (*m / denom) as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::Matmul;
    use candle_core::Device;

    /// f(x) = sum(x^2) from x = [1, -2], lr 0.1, weight decay 0.5, three steps. Expected values
    /// printed by PyTorch 2.15:
    /// ```python
    /// x = torch.tensor([1.0, -2.0], requires_grad=True)
    /// opt = torch.optim.Adam([x], lr=0.1, weight_decay=0.5)
    /// for _ in range(3): opt.zero_grad(); (x**2).sum().backward(); opt.step(); print(x)
    /// # [0.9000000, -1.9000000], [0.8004122, -1.8001665], [0.7015862, -1.7006234]
    /// ```
    fn settings(lr: f64, weight_decay: f64) -> TrainConfig {
        TrainConfig {
            lr,
            weight_decay,
            ..TrainConfig::default()
        }
    }

    /// Three steps of f(x) = sum(x²) from x = [1, −2], on the host and as tensor ops.
    fn check_against_torch(cfg: &TrainConfig, expected: [[f32; 2]; 3]) {
        for on_device in [false, true] {
            let x = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
            let mut adam = Adam::with_placement(vec![x.clone()], cfg, on_device).unwrap();
            for want in expected {
                let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
                adam.step(&loss.backward().unwrap()).unwrap();
                let got = x.as_tensor().to_vec1::<f32>().unwrap();
                for (g, w) in got.iter().zip(want) {
                    assert!(
                        (g - w).abs() < 1e-6,
                        "{cfg:?} on_device {on_device}: {got:?} vs {want:?}"
                    );
                }
            }
        }
    }

    /// Expected values printed by PyTorch 2.15:
    /// ```python
    /// x = torch.tensor([1.0, -2.0], requires_grad=True)
    /// opt = torch.optim.Adam([x], lr=0.1, weight_decay=0.5)
    /// for _ in range(3): opt.zero_grad(); (x**2).sum().backward(); opt.step(); print(x)
    /// ```
    #[test]
    fn matches_torch_adam_with_l2_weight_decay() {
        check_against_torch(
            &settings(0.1, 0.5),
            [
                [0.9, -1.9],
                [0.8004122, -1.8001665],
                [0.7015862, -1.7006234],
            ],
        );
    }

    /// `torch.optim.AdamW([x], lr=0.1, weight_decay=0.5)`, as above.
    #[test]
    fn matches_torch_adamw_with_decoupled_weight_decay() {
        let cfg = TrainConfig {
            optimizer: Optimizer::AdamW,
            ..settings(0.1, 0.5)
        };
        check_against_torch(
            &cfg,
            [
                [0.85, -1.8],
                [0.7082484, -1.6104121],
                [0.5749739, -1.4310251],
            ],
        );
    }

    /// `torch.optim.Adam([x], lr=0.1, betas=(0.8, 0.99), eps=1e-3)`, as above.
    #[test]
    fn betas_and_eps_are_torch_s() {
        let cfg = TrainConfig {
            betas: [0.8, 0.99],
            eps: 1e-3,
            ..settings(0.1, 0.0)
        };
        check_against_torch(
            &cfg,
            [
                [0.90005, -1.900025],
                [0.8007977, -1.8003553],
                [0.7028108, -1.7012128],
            ],
        );
    }

    #[test]
    fn device_moments_keep_no_graph_between_steps() {
        // A matmul's gradient is `grad · rhsᵀ`, a tensor that still refers to the forward pass;
        // moments built from it would chain every step's activations together until the device
        // runs out of memory.
        let dev = Device::Cpu;
        let w = Var::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let x = Var::randn(0f32, 1.0, (5, 3), &dev).unwrap();
        let cfg = TrainConfig {
            optimizer: Optimizer::AdamW,
            ..settings(0.01, 0.5)
        };
        for decoupled in [false, true] {
            let cfg = TrainConfig {
                optimizer: if decoupled {
                    Optimizer::AdamW
                } else {
                    Optimizer::Adam
                },
                ..cfg.clone()
            };
            let mut adam = Adam::with_placement(vec![w.clone(), x.clone()], &cfg, true).unwrap();
            for _ in 0..2 {
                let loss = x.as_tensor().mm(w.as_tensor()).unwrap().sqr().unwrap();
                let grads = loss.sum_all().unwrap().backward().unwrap();
                assert!(grads.get(w.as_tensor()).unwrap().track_op(), "the premise");
                adam.step(&grads).unwrap();
            }
            let State::Device {
                first_moment,
                second_moment,
            } = &adam.state
            else {
                panic!("device placement")
            };
            for m in first_moment.iter().chain(second_moment) {
                assert!(!m.track_op(), "a moment refers to a graph");
            }
        }
    }

    #[test]
    fn host_and_device_updates_agree_over_many_steps() {
        let start: Vec<f32> = (0..24).map(|i| (i as f32 * 0.7).sin()).collect();
        let run = |on_device: bool| {
            let x = Var::from_slice(&start, (4, 6), &Device::Cpu).unwrap();
            let mut adam =
                Adam::with_placement(vec![x.clone()], &settings(0.05, 0.01), on_device).unwrap();
            for _ in 0..50 {
                let loss = (x.as_tensor().sqr().unwrap().sum_all().unwrap()
                    + x.as_tensor().sin().unwrap().sum_all().unwrap())
                .unwrap();
                adam.step(&loss.backward().unwrap()).unwrap();
            }
            x.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (host, device) = (run(false), run(true));
        let d = host
            .iter()
            .zip(&device)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "{d}");
    }
}
