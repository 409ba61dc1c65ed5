//! Q8_0 matrices for CPU inference: a weight matrix stored as blocks of 32 signed bytes with
//! one f32 scale each (llama.cpp's Q8_0, with an f32 rather than f16 scale), multiplied by
//! activations that are quantized the same way per row. A product reads a quarter of the
//! bytes an f32 weight takes, sums 32 byte products in integers, and splits the weight rows
//! across the CPU threads; this is what brings batch-1 decoding near llama.cpp, which
//! multiplies its Q4/Q8 weights by Q8 activations the same way.
//!
//! The kernel is plain Rust compiled twice: for AVX2 + FMA (chosen at run time, through
//! `pulp`'s safe intrinsics) and portably. Training never sees these matrices: they are a
//! snapshot of f32 weights taken for generation and scoring.

use rayon::prelude::*;

/// Values per block.
pub const BLOCK: usize = 32;

/// A row-major `[rows, cols]` matrix in Q8_0 blocks (`cols` a multiple of [`BLOCK`]).
#[derive(Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    /// `rows · cols / 32` scales, row by row.
    scales: Vec<f32>,
    /// The blocks' values, in the scales' order.
    quants: Vec<[i8; BLOCK]>,
}

impl std::fmt::Debug for Q8Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Q8Matrix[{}, {}]", self.rows, self.cols)
    }
}

impl Q8Matrix {
    /// Quantizes row-major `values [rows, cols]`; `None` when `cols` is not a multiple of 32
    /// (the caller keeps the f32 path for that matrix).
    pub fn quantize(values: &[f32], rows: usize, cols: usize) -> Option<Self> {
        if cols == 0 || !cols.is_multiple_of(BLOCK) || values.len() != rows * cols {
            return None;
        }
        let blocks = rows * cols / BLOCK;
        let mut scales = Vec::with_capacity(blocks);
        let mut quants = Vec::with_capacity(blocks);
        let mut run = |quantize_block: &dyn Fn(&[f32; BLOCK]) -> (f32, [i8; BLOCK])| {
            for block in values.chunks_exact(BLOCK) {
                let (scale, q) = quantize_block(block.try_into().expect("a whole block"));
                scales.push(scale);
                quants.push(q);
            }
        };
        // With AVX2 the maximum, the scaling and the rounding are vector instructions
        // (activations are quantized on every product).
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            simd.vectorize(
                #[inline(always)]
                || run(&|block| avx2::quantize_block(simd, block)),
            );
        } else {
            run(&quantize_block);
        }
        #[cfg(not(target_arch = "x86_64"))]
        run(&quantize_block);
        Some(Self {
            rows,
            cols,
            scales,
            quants,
        })
    }

    /// The matrices' rows one after another (`[Σ rows, cols]`): one product computes all of
    /// them, e.g. the query, key and value projections of one input.
    pub fn stack(parts: &[Q8Matrix]) -> Option<Self> {
        let cols = parts.first()?.cols;
        if parts.iter().any(|p| p.cols != cols) {
            return None;
        }
        Some(Self {
            rows: parts.iter().map(|p| p.rows).sum(),
            cols,
            scales: parts
                .iter()
                .flat_map(|p| p.scales.iter().copied())
                .collect(),
            quants: parts
                .iter()
                .flat_map(|p| p.quants.iter().copied())
                .collect(),
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The matrix as f32 values (the quantized ones), row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        self.scales
            .iter()
            .zip(&self.quants)
            .flat_map(|(s, q)| q.iter().map(move |&v| v as f32 * s))
            .collect()
    }

    fn row(&self, row: usize) -> (&[f32], &[[i8; BLOCK]]) {
        let per_row = self.cols / BLOCK;
        let range = row * per_row..(row + 1) * per_row;
        (&self.scales[range.clone()], &self.quants[range])
    }

    /// `x · selfᵀ` for row-major `x [n, cols]`: row-major `[n, rows]`. The rows of `x` are
    /// quantized to Q8_0 first; the weight rows are split across the thread pool.
    pub fn matmul(&self, x: &[f32], n: usize) -> Vec<f32> {
        assert_eq!(x.len(), n * self.cols, "Q8Matrix::matmul: input shape");
        let x = Q8Matrix::quantize(x, n, self.cols).expect("cols is a multiple of the block");
        // Weight rows per task: enough to amortize the task, few enough to share the work.
        let per_task = (self.rows / (4 * rayon::current_num_threads().max(1))).clamp(8, 64);
        let mut transposed = vec![0f32; self.rows * n];
        transposed
            .par_chunks_mut(per_task * n)
            .enumerate()
            .for_each(|(task, band)| {
                let first = task * per_task;
                rows_times(self, first, band, &x, n);
            });
        if n == 1 {
            return transposed;
        }
        let mut out = vec![0f32; n * self.rows];
        for (j, column) in transposed.chunks_exact(n).enumerate() {
            for (i, &v) in column.iter().enumerate() {
                out[i * self.rows + j] = v;
            }
        }
        out
    }
}

/// One block's scale and values: the largest magnitude maps to ±127 (llama.cpp's rule).
fn quantize_block(block: &[f32; BLOCK]) -> (f32, [i8; BLOCK]) {
    let max = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = max / 127.0;
    let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    let mut q = [0i8; BLOCK];
    for (out, v) in q.iter_mut().zip(block) {
        *out = (v * inverse).round().clamp(-127.0, 127.0) as i8;
    }
    (scale, q)
}

/// `band[(j - first) · n + i]` = weight row `j` · activation row `i`, for the band's rows.
fn rows_times(w: &Q8Matrix, first: usize, band: &mut [f32], x: &Q8Matrix, n: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V4::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || avx512::rows_times(simd, w, first, band, x, n),
        );
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || {
                rows_times_with(w, first, band, x, n, |a, b, c, d| {
                    avx2::dot(simd, a, b, c, d)
                })
            },
        );
    }
    rows_times_with(w, first, band, x, n, dot_portable)
}

#[inline(always)]
fn rows_times_with(
    w: &Q8Matrix,
    first: usize,
    band: &mut [f32],
    x: &Q8Matrix,
    n: usize,
    dot: impl Fn(&[f32], &[[i8; BLOCK]], &[f32], &[[i8; BLOCK]]) -> f32,
) {
    for (offset, out) in band.chunks_exact_mut(n).enumerate() {
        let (ws, wq) = w.row(first + offset);
        for (i, value) in out.iter_mut().enumerate() {
            let (xs, xq) = x.row(i);
            *value = dot(ws, wq, xs, xq);
        }
    }
}

/// The dot product of two Q8_0 rows, portably.
#[inline(always)]
fn dot_portable(ws: &[f32], wq: &[[i8; BLOCK]], xs: &[f32], xq: &[[i8; BLOCK]]) -> f32 {
    let mut sum = 0f32;
    for (((a, b), sa), sb) in wq.iter().zip(xq).zip(ws).zip(xs) {
        let mut s = 0i32;
        for (&u, &v) in a.iter().zip(b) {
            s += u as i32 * v as i32;
        }
        sum += s as f32 * (sa * sb);
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::BLOCK;
    use core::arch::x86_64::{__m256, __m256i};
    use pulp::x86::V3;

    /// [`super::quantize_block`] with AVX2 (llama.cpp's `quantize_row_q8_0`): the values
    /// are rounded to the nearest integer, ties to even, where the portable version rounds
    /// ties away from zero.
    #[inline(always)]
    pub fn quantize_block(simd: V3, block: &[f32; BLOCK]) -> (f32, [i8; BLOCK]) {
        let v: [__m256; 4] = pulp::cast(*block);
        let sign = simd.avx._mm256_set1_ps(-0.0);
        let abs = v.map(|x| simd.avx._mm256_andnot_ps(sign, x));
        let max = simd.avx._mm256_max_ps(
            simd.avx._mm256_max_ps(abs[0], abs[1]),
            simd.avx._mm256_max_ps(abs[2], abs[3]),
        );
        let lanes: [f32; 8] = pulp::cast(max);
        let max = lanes.iter().fold(0f32, |m, &v| m.max(v));
        let scale = max / 127.0;
        let inverse = simd
            .avx
            ._mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        let ints = v.map(|x| {
            simd.avx
                ._mm256_cvtps_epi32(simd.avx._mm256_mul_ps(x, inverse))
        });
        // Packing works within 128-bit lanes; the permutation puts the bytes back in order.
        let shorts = [
            simd.avx2._mm256_packs_epi32(ints[0], ints[1]),
            simd.avx2._mm256_packs_epi32(ints[2], ints[3]),
        ];
        let bytes = simd.avx2._mm256_packs_epi16(shorts[0], shorts[1]);
        let order: __m256i = pulp::cast([0i32, 4, 1, 5, 2, 6, 3, 7]);
        let bytes = simd.avx2._mm256_permutevar8x32_epi32(bytes, order);
        (scale, pulp::cast(bytes))
    }

    /// The dot product of two Q8_0 rows with AVX2: |a| · sign(b, a) as unsigned × signed byte
    /// products summed in pairs (llama.cpp's `mul_sum_i8_pairs_float`), one f32 FMA per
    /// block with the two scales, one horizontal sum per row. The values are in [-127, 127],
    /// so the pair sums (at most 2 · 127 · 127) fit in i16.
    #[inline(always)]
    pub fn dot(simd: V3, ws: &[f32], wq: &[[i8; BLOCK]], xs: &[f32], xq: &[[i8; BLOCK]]) -> f32 {
        let ones = simd.avx._mm256_set1_epi16(1);
        let mut acc = simd.avx._mm256_setzero_ps();
        for (((a, b), sa), sb) in wq.iter().zip(xq).zip(ws).zip(xs) {
            let a: __m256i = pulp::cast(*a);
            let b: __m256i = pulp::cast(*b);
            let magnitude = simd.avx2._mm256_sign_epi8(a, a);
            let signed = simd.avx2._mm256_sign_epi8(b, a);
            let pairs = simd.avx2._mm256_maddubs_epi16(magnitude, signed);
            let sums = simd.avx2._mm256_madd_epi16(pairs, ones);
            let scale = simd.avx._mm256_set1_ps(sa * sb);
            acc = simd
                .fma
                ._mm256_fmadd_ps(scale, simd.avx._mm256_cvtepi32_ps(sums), acc);
        }
        let lanes: [f32; 8] = pulp::cast::<__m256, [f32; 8]>(acc);
        lanes.iter().sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Q8Matrix, BLOCK};
    use core::arch::x86_64::{__m256i, __m512, __m512i};
    use pulp::x86::V4;

    /// Activation rows multiplied per pass over a weight row: each pair of weight blocks is
    /// loaded, and its magnitudes and signs taken, once for this many activation rows.
    const TILE: usize = 4;

    /// [`super::rows_times`] with AVX-512: two blocks (64 bytes) per instruction, and up to
    /// [`TILE`] activation rows per pass over a weight row.
    #[inline(always)]
    pub fn rows_times(
        simd: V4,
        w: &Q8Matrix,
        first: usize,
        band: &mut [f32],
        x: &Q8Matrix,
        n: usize,
    ) {
        for (offset, out) in band.chunks_exact_mut(n).enumerate() {
            let (ws, wq) = w.row(first + offset);
            let mut i = 0;
            while i < n {
                match n - i {
                    1 => tile::<1>(simd, ws, wq, x, i, out),
                    2 => tile::<2>(simd, ws, wq, x, i, out),
                    3 => tile::<3>(simd, ws, wq, x, i, out),
                    _ => tile::<TILE>(simd, ws, wq, x, i, out),
                }
                i += TILE;
            }
        }
    }

    /// `out[first + r]` = weight row · activation row `first + r`, for `r < R`.
    ///
    /// AVX-512 has no byte `sign`, so the activations are negated where the weight is
    /// negative (a masked subtraction) and multiplied by the weight's magnitude: the same
    /// unsigned × signed byte products as the AVX2 kernel, summed in pairs in i16 (at most
    /// 2 · 127 · 127), then in i32, then scaled in f32 by the two blocks' scales.
    #[inline(always)]
    fn tile<const R: usize>(
        simd: V4,
        ws: &[f32],
        wq: &[[i8; BLOCK]],
        x: &Q8Matrix,
        first: usize,
        out: &mut [f32],
    ) {
        let blocks = wq.len();
        let rows: [(&[f32], &[[i8; BLOCK]]); R] = core::array::from_fn(|r| x.row(first + r));
        let ones = simd.avx512f._mm512_set1_epi16(1);
        let zero = simd.avx512f._mm512_setzero_si512();
        let mut acc = [simd.avx512f._mm512_setzero_ps(); R];
        let pairs = blocks / 2;
        for k in 0..pairs {
            let a: __m512i = pulp::cast([wq[2 * k], wq[2 * k + 1]]);
            let magnitude = simd.avx512bw._mm512_abs_epi8(a);
            let negative = simd.avx512bw._mm512_movepi8_mask(a);
            let w_scale: __m512 = pulp::cast([[ws[2 * k]; 8], [ws[2 * k + 1]; 8]]);
            for (acc, (xs, xq)) in acc.iter_mut().zip(&rows) {
                let b: __m512i = pulp::cast([xq[2 * k], xq[2 * k + 1]]);
                let signed = simd.avx512bw._mm512_mask_sub_epi8(b, negative, zero, b);
                let products = simd.avx512bw._mm512_maddubs_epi16(magnitude, signed);
                let sums = simd.avx512bw._mm512_madd_epi16(products, ones);
                let x_scale: __m512 = pulp::cast([[xs[2 * k]; 8], [xs[2 * k + 1]; 8]]);
                let scale = simd.avx512f._mm512_mul_ps(w_scale, x_scale);
                *acc = simd.avx512f._mm512_fmadd_ps(
                    simd.avx512f._mm512_cvtepi32_ps(sums),
                    scale,
                    *acc,
                );
            }
        }
        for (r, (acc, (xs, xq))) in acc.iter().zip(&rows).enumerate() {
            let mut sum = simd.avx512f._mm512_reduce_add_ps(*acc);
            // An odd block count leaves one block: the AVX2 instructions take it.
            if blocks % 2 == 1 {
                let k = blocks - 1;
                let a: __m256i = pulp::cast(wq[k]);
                let b: __m256i = pulp::cast(xq[k]);
                let magnitude = simd.avx2._mm256_sign_epi8(a, a);
                let signed = simd.avx2._mm256_sign_epi8(b, a);
                let products = simd.avx2._mm256_maddubs_epi16(magnitude, signed);
                let sums = simd
                    .avx2
                    ._mm256_madd_epi16(products, simd.avx._mm256_set1_epi16(1));
                let lanes: [i32; 8] = pulp::cast(sums);
                sum += lanes.iter().sum::<i32>() as f32 * (ws[k] * xs[k]);
            }
            out[first + r] = sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matmul_is_the_product_of_the_quantized_values() {
        let (rows, cols, n) = (70, 96, 3);
        let w = values(rows * cols, 1);
        let x = values(n * cols, 2);
        let q = Q8Matrix::quantize(&w, rows, cols).unwrap();
        let xq = Q8Matrix::quantize(&x, n, cols).unwrap().dequantize();
        let wq = q.dequantize();
        let out = q.matmul(&x, n);
        for i in 0..n {
            for j in 0..rows {
                let want: f32 = (0..cols).map(|k| xq[i * cols + k] * wq[j * cols + k]).sum();
                let exact: f32 = (0..cols).map(|k| x[i * cols + k] * w[j * cols + k]).sum();
                let got = out[i * rows + j];
                assert!((got - want).abs() < 1e-4, "[{i}, {j}]: {got} vs {want}");
                assert!(
                    (got - exact).abs() < 0.05,
                    "[{i}, {j}]: {got} vs f32 {exact}"
                );
            }
        }
        // The portable kernel agrees with the one chosen at run time.
        let (ws, wqr) = q.row(5);
        let xr = Q8Matrix::quantize(&x, n, cols).unwrap();
        let (xs, xqr) = xr.row(1);
        assert!((dot_portable(ws, wqr, xs, xqr) - out[rows + 5]).abs() < 1e-4);
    }

    #[test]
    fn every_kernel_agrees_with_the_portable_one() {
        // Odd and even block counts, and batch sizes that fill the AVX-512 kernel's tile
        // of four rows, leave one, two or three rows over, or fill it twice.
        for (rows, cols) in [(5, 32), (9, 64), (17, 96), (3, 576)] {
            let w = values(rows * cols, rows as u32);
            let q = Q8Matrix::quantize(&w, rows, cols).unwrap();
            for n in [1, 2, 3, 4, 5, 7, 8] {
                let x = values(n * cols, 100 + n as u32);
                let xq = Q8Matrix::quantize(&x, n, cols).unwrap();
                let out = q.matmul(&x, n);
                for i in 0..n {
                    for j in 0..rows {
                        let (ws, wq) = q.row(j);
                        let (xs, xr) = xq.row(i);
                        let want = dot_portable(ws, wq, xs, xr);
                        let got = out[i * rows + j];
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{rows}x{cols}, n {n}, [{i}, {j}]: {got} vs {want}"
                        );
                    }
                }
            }
            // The vector quantizer and the portable one differ at most by one step
            // (rounding of exact halves), with the same scales.
            for (block, quantized) in w.chunks_exact(BLOCK).zip(q.quants.iter().zip(&q.scales)) {
                let (scale, portable) = quantize_block(block.try_into().unwrap());
                assert_eq!(scale, *quantized.1);
                for (a, b) in portable.iter().zip(quantized.0) {
                    assert!((*a as i32 - *b as i32).abs() <= 1);
                }
            }
        }
    }

    #[test]
    fn extremes_and_zeros_quantize_exactly() {
        let mut w = vec![0f32; 64];
        w[0] = -3.0;
        w[1] = 3.0;
        w[40] = 1.5;
        let q = Q8Matrix::quantize(&w, 2, 32).unwrap();
        let back = q.dequantize();
        assert_eq!(back[0], -3.0);
        assert_eq!(back[1], 3.0);
        assert_eq!(&back[32..40], &[0.0; 8]);
        assert!((back[40] - 1.5).abs() < 1e-6);
        assert!(Q8Matrix::quantize(&w, 1, 64).is_some());
        assert!(Q8Matrix::quantize(&w[..48], 1, 48).is_none());
        let stacked = Q8Matrix::stack(&[q.clone(), q]).unwrap();
        assert_eq!((stacked.rows(), stacked.cols()), (4, 32));
    }
}
