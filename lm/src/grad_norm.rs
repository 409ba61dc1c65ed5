//! The gradient's size at each optimizer step, measured without touching the step code: an
//! optimizer wrapper that reads the global L2 norm of the gradients it is handed, then steps
//! the optimizer it wraps.
//!
//! Trainers report it beside the loss (`grad_norm` in `metrics.jsonl`). It tells a slope
//! that vanishes (a group whose critiques already sit at their targets) from one that
//! explodes, and it sizes a plain SGD step: SGD moves the weights by the learning rate times
//! this norm, AdamW by about the learning rate per weight whatever it is.

use std::sync::{Arc, Mutex};

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsParams, LearningRate, MultiGradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// `inner`, stepping as before, with the norm of each step's gradients kept for
/// [`GradNormed::last`]. Clones share the kept norm.
#[derive(Clone)]
pub struct GradNormed<O> {
    inner: O,
    last: Arc<Mutex<Option<f64>>>,
}

impl<O> GradNormed<O> {
    pub fn new(inner: O) -> Self {
        Self {
            inner,
            last: Arc::default(),
        }
    }

    /// The L2 norm over every parameter's gradient at the latest [`Optimizer::step`] (None
    /// before the first, and after a `step_multi`, whose gradients live on several devices).
    pub fn last(&self) -> Option<f64> {
        *self.slot()
    }

    fn keep(&self, norm: Option<f64>) {
        *self.slot() = norm;
    }

    /// The kept norm; a panic elsewhere while it was held leaves a plain number, still good.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<f64>> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The L2 norm over every float parameter of `module` that has a gradient in `grads`.
pub fn gradient_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut visitor = SquaredSum::<B> {
        grads,
        sum: 0.0,
        _backend: std::marker::PhantomData,
    };
    module.visit(&mut visitor);
    visitor.sum.sqrt()
}

struct SquaredSum<'a, B> {
    grads: &'a GradientsParams,
    sum: f64,
    _backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SquaredSum<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let squares: f64 = grad.clone().mul(grad).sum().into_scalar().elem();
            self.sum += squares;
        }
    }
}

impl<M, B, O> Optimizer<M, B> for GradNormed<O>
where
    M: AutodiffModule<B>,
    B: AutodiffBackend,
    O: Optimizer<M, B>,
{
    type Record = O::Record;

    fn step(&mut self, lr: LearningRate, module: M, grads: GradientsParams) -> M {
        self.keep(Some(gradient_norm::<B, M>(&module, &grads)));
        self.inner.step(lr, module, grads)
    }

    fn step_multi(&mut self, lr: LearningRate, module: M, grads: MultiGradientsParams) -> M {
        self.keep(None);
        self.inner.step_multi(lr, module, grads)
    }

    fn to_record(&self) -> Self::Record {
        self.inner.to_record()
    }

    fn load_record(self, record: Self::Record) -> Self {
        Self {
            inner: self.inner.load_record(record),
            last: self.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::SgdConfig;
    use burn_flex::Flex;

    type B = Autodiff<Flex>;

    #[derive(burn::module::Module, Debug)]
    struct Two<B: Backend> {
        a: Linear<B>,
        b: Linear<B>,
    }

    #[test]
    fn the_norm_is_over_every_parameter_and_the_step_is_the_inner_one() {
        let device = Default::default();
        let model = Two::<B> {
            a: LinearConfig::new(3, 2).init(&device),
            b: LinearConfig::new(2, 1).init(&device),
        };
        let x = Tensor::<B, 2>::from_floats([[1.0, -2.0, 0.5]], &device);
        let loss = model.b.forward(model.a.forward(x)).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // The norm by hand: every gradient tensor, squared and summed.
        let squares = |data: burn::tensor::TensorData| -> f64 {
            data.iter::<f32>().map(|v| (v as f64).powi(2)).sum()
        };
        let mut by_hand = 0.0f64;
        for id in [model.a.weight.id, model.b.weight.id] {
            by_hand += squares(
                grads
                    .get::<Flex, 2>(id)
                    .expect("a weight gradient")
                    .into_data(),
            );
        }
        for bias in [&model.a.bias, &model.b.bias] {
            let id = bias.as_ref().expect("a bias").id;
            by_hand += squares(
                grads
                    .get::<Flex, 1>(id)
                    .expect("a bias gradient")
                    .into_data(),
            );
        }
        assert!(by_hand > 0.0);

        let before: Vec<f32> = model.b.weight.val().into_data().iter::<f32>().collect();
        let b_grad: Vec<f32> = grads
            .get::<Flex, 2>(model.b.weight.id)
            .expect("b's gradient")
            .into_data()
            .iter::<f32>()
            .collect();
        let mut optimizer = GradNormed::new(SgdConfig::new().init::<B, Two<B>>());
        assert_eq!(optimizer.last(), None);
        let shared = optimizer.clone();
        let model = optimizer.step(0.5, model, grads);
        let norm = shared.last().expect("a norm after a step");
        assert!(
            (norm - by_hand.sqrt()).abs() < 1e-5 * by_hand.sqrt(),
            "{norm} against {}",
            by_hand.sqrt()
        );
        // Plain SGD: each weight moved by the learning rate times its gradient.
        let after: Vec<f32> = model.b.weight.val().into_data().iter::<f32>().collect();
        for ((b, a), g) in before.iter().zip(&after).zip(&b_grad) {
            assert!((b - 0.5 * g - a).abs() < 1e-6, "{b} - 0.5 * {g} != {a}");
        }
    }
}
