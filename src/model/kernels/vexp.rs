//! `exp` over a slice in SIMD registers, for softmax.
//!
//! The scalar code below is written so LLVM vectorises it; `pulp` runs it compiled for
//! the widest instruction set the CPU has (AVX-512 or AVX2 with FMA), chosen at run
//! time, so one binary serves every x86-64 machine. libm's `expf` is a call per element
//! and was a quarter of the attention's time.

/// ln 2 split in two (Cody and Waite): `n * LN2_HI` is exact for the `n` used here, so
/// `x - n ln 2` loses no bits.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this `exp` is under `f32`'s smallest normal number; such terms are 0 here
/// (next to a softmax's largest term, 1, they are below 1e-37).
const MIN_ARG: f32 = -87.0;
const MAX_ARG: f32 = 88.0;
const LANES: usize = 16;
/// 1.5 * 2^23: see [`exp`].
const ROUND: f32 = 12_582_912.0;

/// `e^x` to within 2 ulp on `[-87, 88]` (Cephes' single-precision polynomial), 0 below.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let clamped = x.clamp(MIN_ARG, MAX_ARG);
    // Adding 1.5 * 2^23 rounds to the nearest integer n, held in the low mantissa bits
    // of `t`: integer arithmetic on those bits builds 2^n below without a float-to-int
    // conversion (which Rust saturates, and LLVM then does lane by lane).
    let t = clamped.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = t - ROUND;
    let r = n.mul_add(-LN2_HI, clamped);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let e = (p * r).mul_add(r, r) + 1.0;
    // 2^n from its exponent bits, n + 127 in [1, 254] after the clamp: the low nine
    // bits of `t`'s pattern are n's two's complement, shifted into the exponent field
    // (the higher bits shift out).
    let scale = f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    if x < MIN_ARG { 0.0 } else { e * scale }
}

/// Replaces each `x` of `row` by `e^(x - max)`, `max` the row's largest entry, and
/// returns their sum: a softmax's numerators and denominator. `-inf` entries become 0; a
/// row of nothing but `-inf` becomes zeros, with sum 0.
pub fn softmax_numerators(row: &mut [f32]) -> f32 {
    pulp::Arch::new().dispatch(SoftmaxNumerators { row })
}

/// The work of [`softmax_numerators`] as a `pulp` operation: `with_simd` is inlined into
/// the function pulp compiles for each instruction set, so the loops are vectorised with
/// that set (a closure would be compiled once, for the baseline, and call libm's `fmaf`).
/// Maximum and sum run in `LANES` partial results, as a sequential float reduction
/// would not vectorise.
struct SoftmaxNumerators<'a> {
    row: &'a mut [f32],
}

impl pulp::WithSimd for SoftmaxNumerators<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> f32 {
        let row = self.row;
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (m, &x) in lanes.iter_mut().zip(chunk) {
                *m = if x > *m { x } else { *m };
            }
        }
        let max = chunks
            .remainder()
            .iter()
            .chain(&lanes)
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        if max == f32::NEG_INFINITY {
            row.fill(0.0);
            return 0.0;
        }
        for x in row.iter_mut() {
            *x = exp(*x - max);
        }
        let mut lanes = [0.0f32; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (s, &x) in lanes.iter_mut().zip(chunk) {
                *s += x;
            }
        }
        chunks.remainder().iter().chain(&lanes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the standard library's `f64` exp across the softmax range and beyond.
    #[test]
    fn matches_exp_to_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            let ulp = (want as f32).next_up() as f64 - want as f32 as f64;
            worst = worst.max((got - want).abs() / ulp);
            x += 0.001_7;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-90.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn numerators_and_denominator_of_a_softmax() {
        // 37 entries: two full SIMD chunks and a remainder; one masked entry.
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        row[3] = f32::NEG_INFINITY;
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want: Vec<f64> = row.iter().map(|&x| ((x - max) as f64).exp()).collect();
        let sum = softmax_numerators(&mut row);
        assert!((sum as f64 - want.iter().sum::<f64>()).abs() < 1e-5);
        for (got, want) in row.iter().zip(&want) {
            assert!(
                (*got as f64 - want).abs() <= 1e-6 * want.max(1e-30),
                "{got} vs {want}"
            );
        }
        assert_eq!(row[3], 0.0);
        let mut hidden = [f32::NEG_INFINITY; 20];
        assert_eq!(softmax_numerators(&mut hidden), 0.0);
        assert!(hidden.iter().all(|&x| x == 0.0));
    }
}
