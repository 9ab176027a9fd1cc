//! Global gradient-norm clipping and AdamW with PyTorch's exact semantics, on host f32 data.
//!
//! LoRA parameters are small (r·(in+out) per target), so the optimizer runs on the host:
//! every step's arithmetic is plain sequential f32 (bit-reproducible on every backend), the
//! state is ours to save, and a resumed run continues from exactly the same bits. burn's own
//! optimizer is not used: its `GradientClipping::Norm` clips each tensor by its own norm and
//! its `AdamWConfig` defaults differ from torch's (see DESIGN.md, "burn 0.21 training facts").

/// Adam moments and the step count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdamState {
    /// Optimizer steps taken (torch's `state["step"]`).
    pub t: u64,
    /// First moments, one buffer per parameter.
    pub m: Vec<Vec<f32>>,
    /// Second moments.
    pub v: Vec<Vec<f32>>,
}

/// AdamW hyper-parameters of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// This step's learning rate (after the schedule).
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
}

/// Total L2 norm of all gradients, as torch: the norm of the per-tensor norms.
pub fn global_norm(grads: &[Vec<f32>]) -> f64 {
    grads
        .iter()
        .map(|g| {
            let n = g
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt();
            // torch computes each tensor's norm in f32.
            f64::from(n as f32).powi(2)
        })
        .sum::<f64>()
        .sqrt()
}

/// `torch.nn.utils.clip_grad_norm_(max_norm)`: scales every gradient by
/// min(1, max / (total + 1e-6)). Returns the pre-clip total norm. `max_norm` 0 = off.
pub fn clip_global(grads: &mut [Vec<f32>], max_norm: f64) -> f64 {
    let total = global_norm(grads);
    if max_norm > 0.0 {
        let coef = (max_norm / (total + 1e-6)).min(1.0) as f32;
        for g in grads.iter_mut() {
            g.iter_mut().for_each(|x| *x *= coef);
        }
    }
    total
}

impl AdamState {
    /// Zeroed moments for parameters of the given sizes.
    pub fn zeros(sizes: impl IntoIterator<Item = usize>) -> Self {
        let (m, v) = sizes
            .into_iter()
            .map(|n| (vec![0.0; n], vec![0.0; n]))
            .unzip();
        Self { t: 0, m, v }
    }

    /// One torch AdamW step (`_single_tensor_adamw`, CPU): t += 1; p ← p·(1 − lr·wd);
    /// m ← lerp(m, g, 1 − β1); v ← β2·v + (1 − β2)·g²;
    /// p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε). Scalars in f64 like Python's.
    pub fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>], h: AdamW) {
        self.t += 1;
        let t = self.t as f64;
        let decay = (1.0 - h.lr * h.weight_decay) as f32;
        let w1 = (1.0 - h.beta1) as f32;
        let b2 = h.beta2 as f32;
        let w2 = (1.0 - h.beta2) as f32;
        let step_size = h.lr / (1.0 - h.beta1.powf(t));
        let bc2_sqrt = (1.0 - h.beta2.powf(t)).sqrt() as f32;
        let neg_step = (-step_size) as f32;
        let eps = h.eps as f32;
        for ((p, g), (m, v)) in params
            .iter_mut()
            .zip(grads)
            .zip(self.m.iter_mut().zip(self.v.iter_mut()))
        {
            for i in 0..p.len() {
                p[i] *= decay;
                // torch's lerp with weight < 0.5: self + weight·(end − self).
                m[i] += w1 * (g[i] - m[i]);
                v[i] = v[i] * b2 + w2 * g[i] * g[i];
                let denom = v[i].sqrt() / bc2_sqrt + eps;
                p[i] += neg_step * (m[i] / denom);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_is_global_not_per_tensor() {
        let mut g = vec![vec![3.0f32], vec![4.0f32]];
        let total = clip_global(&mut g, 1.0);
        assert!((total - 5.0).abs() < 1e-9);
        assert!(
            (g[0][0] - 0.6).abs() < 1e-6 && (g[1][0] - 0.8).abs() < 1e-6,
            "{g:?}"
        );
        let mut small = vec![vec![0.1f32]];
        clip_global(&mut small, 1.0);
        assert_eq!(small[0][0], 0.1);
        let mut off = vec![vec![30.0f32]];
        assert_eq!(clip_global(&mut off, 0.0), 30.0);
        assert_eq!(off[0][0], 30.0);
    }

    #[test]
    fn adamw_first_step_matches_hand_computation() {
        // One step from m = v = 0: the update is −lr·g/(|g| + ε') ≈ −lr·sign(g), after decay.
        let mut s = AdamState::zeros([2]);
        let mut p = vec![vec![1.0f32, -2.0]];
        let h = AdamW {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        };
        s.step(&mut p, &[vec![0.5, -0.25]], h);
        assert_eq!(s.t, 1);
        let want0 = 1.0 * (1.0 - 0.001) - 0.1;
        let want1 = -2.0 * (1.0 - 0.001) + 0.1;
        assert!((f64::from(p[0][0]) - want0).abs() < 1e-6, "{p:?}");
        assert!((f64::from(p[0][1]) - want1).abs() < 1e-6, "{p:?}");
        // lr 0 (warmup's first step): parameters stay, the moments still advance.
        let mut s = AdamState::zeros([1]);
        let mut p = vec![vec![1.0f32]];
        s.step(&mut p, &[vec![2.0]], AdamW { lr: 0.0, ..h });
        assert_eq!(p[0][0], 1.0);
        assert!(s.m[0][0] > 0.0 && s.v[0][0] > 0.0);
    }
}
