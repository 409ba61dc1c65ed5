//! Seeded weight initialisation under concurrency. A burn backend has one random number
//! generator per process (`Backend::seed` sets it for every thread), and burn draws most
//! initial weights lazily, at a parameter's first use. So a seed is reproducible only if the
//! draws it is meant for happen right after it, with no other thread drawing in between (two
//! tests at once, two trainings in `rco serve`). [`seeded`] seeds, builds the module and draws
//! every lazy parameter, holding one process-wide lock; [`unseeded`] draws under the same
//! lock, so it never falls between another draw's seed and its numbers.

use std::sync::{Mutex, PoisonError};

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;

static DRAWS: Mutex<()> = Mutex::new(());

/// Seeds the backend's generator with `seed`, runs `build` and draws the module's lazy
/// parameters, with no other draw of this crate's in between.
pub fn seeded<B: Backend, M: Module<B>>(
    device: &B::Device,
    seed: u64,
    build: impl FnOnce() -> M,
) -> M {
    let _only = DRAWS.lock().unwrap_or_else(PoisonError::into_inner);
    B::seed(device, seed);
    materialised(build())
}

/// [`seeded`] for a build that may fail.
pub fn try_seeded<B: Backend, M: Module<B>, E>(
    device: &B::Device,
    seed: u64,
    build: impl FnOnce() -> Result<M, E>,
) -> Result<M, E> {
    let _only = DRAWS.lock().unwrap_or_else(PoisonError::into_inner);
    B::seed(device, seed);
    build().map(materialised)
}

/// Runs `build` and draws the module's lazy parameters from the generator's current state,
/// never between another draw's seed and its numbers.
pub fn unseeded<B: Backend, M: Module<B>>(build: impl FnOnce() -> M) -> M {
    let _only = DRAWS.lock().unwrap_or_else(PoisonError::into_inner);
    materialised(build())
}

/// The module with every lazily initialised parameter drawn now.
fn materialised<B: Backend, M: Module<B>>(module: M) -> M {
    struct Draw;
    impl<B: Backend> ModuleVisitor<B> for Draw {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
        fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
            let _ = param.val();
        }
        fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Draw);
    module
}
