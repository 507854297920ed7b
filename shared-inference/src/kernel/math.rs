//! Standardization of a numeric column and `exp` for softmax, each as one portable loop of IEEE
//! operations that the compiler also builds as vector code for processors with AVX/AVX2, chosen
//! at run time: the same operations, so the same bits on every machine.

/// A numeric column's fitted scaling (see `FittedColumn::Numeric`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scaling {
    pub median: f64,
    pub mean: f64,
    pub std: f64,
    pub clip: Option<f64>,
}

/// Scaled values beyond this many clip widths are taken as this many: `r²` must not overflow,
/// and at this distance the clipped value already equals `±clip` in f64.
const CLIP_REACH: f64 = 1e150;

/// One numeric value, imputed and scaled: `(x, z)` with `z = (x - mean) / std` as f32, a missing
/// (NaN) `x` taken as `median`, and `z` smoothly clipped when the column asks for it. An infinite
/// `z` stays infinite, so that the caller refuses it.
#[inline(always)]
pub(crate) fn standardize(x: f64, scaling: &Scaling) -> (f64, f32) {
    let x = if x.is_nan() { scaling.median } else { x };
    let z = (x - scaling.mean) / scaling.std;
    let z = match scaling.clip {
        None => z,
        Some(clip) => smooth_clip(z, clip),
    };
    (x, z as f32)
}

/// `clip · r / √(1 + r²)` with `r = z / clip`, spelled with the operations the ONNX export uses
/// (Div, Clip, Mul, Add, Sqrt, Div, Mul), so that both compute the same f64. Within `±clip` for
/// a finite `z`; an infinite `z` stays infinite and a NaN stays NaN.
#[inline(always)]
pub fn smooth_clip(z: f64, clip: f64) -> f64 {
    let r = z / clip;
    if r.is_infinite() {
        return r;
    }
    let r = r.clamp(-CLIP_REACH, CLIP_REACH);
    r / (1.0 + r * r).sqrt() * clip
}

/// [`standardize`] for every value of a column into contiguous output, as a loop without
/// branches over slices that cannot overlap, which the compiler turns into vector code.
/// Whether every result is finite.
pub(crate) fn standardize_column(xs: &[f64], out: &mut [f32], scaling: &Scaling) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the processor has AVX.
        return unsafe { standardize_contiguous_avx(xs, out, scaling) };
    }
    standardize_contiguous_portable(xs, out, scaling)
}

/// [`standardize_contiguous_portable`] as 4-wide vector code (the same IEEE operations, so the
/// same bits).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn standardize_contiguous_avx(xs: &[f64], out: &mut [f32], scaling: &Scaling) -> bool {
    standardize_contiguous_portable(xs, out, scaling)
}

#[inline(always)]
fn standardize_contiguous_portable(xs: &[f64], out: &mut [f32], scaling: &Scaling) -> bool {
    // One loop per case, so that the common unclipped one stays a plain vector loop.
    match scaling.clip {
        None => {
            let plain = Scaling { clip: None, ..*scaling };
            for (slot, &x) in out.iter_mut().zip(xs) {
                *slot = standardize(x, &plain).1;
            }
        }
        Some(_) => {
            for (slot, &x) in out.iter_mut().zip(xs) {
                *slot = standardize(x, scaling).1;
            }
        }
    }
    out.iter().fold(0u32, |bad, z| bad | u32::from(!z.is_finite())) == 0
}

/// [`exp_portable`], as 4-wide vector code where the processor has AVX2 (the same operations,
/// so the same bits: AVX2 has no fused multiply-add, and none is asked for).
pub(crate) fn exp_in_place(values: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the processor has AVX2.
        unsafe { exp_avx2(values) };
        return;
    }
    exp_portable(values);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_avx2(values: &mut [f64]) {
    exp_portable(values);
}

/// `e^x` for every value, in place: within about one unit in the last place of the exact
/// value, 1 for ±0, 0 below -746, infinity above 710, NaN for NaN.
///
/// Written out rather than taken from the C library so that it is the same bits on every
/// machine (only IEEE additions and multiplications, no fused multiply-add, no table) and runs
/// as vector code: `libm`'s `exp` picks its code path by processor and is one call per value.
///
/// `x = k ln 2 + r` with `k` an integer and `|r| <= ln 2 / 2`; `e^r` from its Taylor series to
/// the 13th power (the first term left out is below 5e-18 relative); then `e^r · 2^k`, the power
/// applied in two halves so that neither is out of range where the result is not.
#[inline(always)]
fn exp_portable(values: &mut [f64]) {
    // ln 2 split in two: the high part has its low 21 bits zero, so `k · LN2_HI` is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const LOG2_E: f64 = std::f64::consts::LOG2_E;
    // 1.5 · 2^52: adding it rounds to an integer (to nearest, ties to even), kept in the low bits.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    // 1 / n! for n = 4 to 13.
    const C: [f64; 10] = [
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    for value in values.iter_mut() {
        let x = *value;
        // Past these bounds the result is 0 or infinity anyway (e^-746 < 2^-1075, e^710 >
        // f64::MAX), and within them `k` stays between -1077 and 1025.
        let clamped = x.clamp(-746.0, 710.0);
        let rounded = clamped * LOG2_E + ROUND;
        let k = rounded - ROUND;
        let k_bits = rounded.to_bits().wrapping_sub(ROUND.to_bits()) as i64;
        let r = (clamped - k * LN2_HI) - k * LN2_LO;
        // The terms from r^4 on, r^4 · (C[0] + C[1] r + ... + C[9] r^9), in pairs combined by
        // powers of r rather than in one chain (the operations overlap; these terms are below
        // 1/1000 of the result, so their rounding does not reach its last place); then the
        // first terms, in a chain from the smallest, which decides the last place.
        let r2 = r * r;
        let r4 = r2 * r2;
        let pairs = [C[0] + C[1] * r, C[2] + C[3] * r, C[4] + C[5] * r, C[6] + C[7] * r, C[8] + C[9] * r];
        let tail = ((pairs[0] + pairs[1] * r2) + (pairs[2] + pairs[3] * r2) * r4) + pairs[4] * (r4 * r4);
        let p = (((tail * r + 1.0 / 6.0) * r + 0.5) * r + 1.0) * r + 1.0;
        let half = k_bits >> 1;
        let scale = |power: i64| f64::from_bits(((power + 1023) as u64) << 52);
        let result = p * scale(half) * scale(k_bits - half);
        // One NaN for every NaN, whatever its payload: a select, not a conditional store.
        *value = if x.is_nan() { f64::NAN } else { result };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_about_one_unit_in_the_last_place() {
        let mut xs: Vec<f64> = (-7460..=7100).map(|i| f64::from(i) * 0.1 + 0.0123).collect();
        xs.extend([-1e-300, 1e-300, -0.5, 0.5, -0.346_573_590_279_972_6, 0.346_573_590_279_972_6, -708.4, -709.1]);
        let mut values = xs.clone();
        exp_in_place(&mut values);
        // The vector code for this processor and the portable loop agree to the bit.
        let mut portable = xs.clone();
        exp_portable(&mut portable);
        assert!(values.iter().zip(&portable).all(|(a, b)| a.to_bits() == b.to_bits()));
        for (&x, &e) in xs.iter().zip(&values) {
            let expected = x.exp();
            if expected.is_infinite() {
                assert_eq!(e, expected, "exp({x})");
                continue;
            }
            // Relative to the result, or in absolute terms for results too small for 53 bits.
            let error = (e - expected).abs() / expected.max(f64::MIN_POSITIVE);
            assert!(error <= f64::EPSILON, "exp({x}) = {e:e}, not {expected:e}: {error:e}");
        }
        let special = [0.0, -0.0, -746.5, -1e9, f64::NEG_INFINITY, 710.5, 1e9, f64::INFINITY, f64::NAN];
        let mut values = special;
        exp_in_place(&mut values);
        assert_eq!(&values[..2], &[1.0, 1.0]);
        assert_eq!(&values[2..5], &[0.0; 3]);
        assert_eq!(&values[5..8], &[f64::INFINITY; 3]);
        assert!(values[8].is_nan());
    }

    #[test]
    fn the_vector_standardization_gives_the_bits_of_the_scalar_one() {
        let mut xs: Vec<f64> = (0..1001).map(|i| (f64::from(i) - 500.0) * 0.0137 + 1e-9 * f64::from(i % 7)).collect();
        xs.extend([f64::NAN, -0.0, 1e300, -1e300, f64::INFINITY, 5e-324]);
        for clip in [None, Some(3.0)] {
            let scaling = Scaling { median: 4.25, mean: 3.1, std: 0.7, clip };
            let mut out = vec![0.0f32; xs.len()];
            let all_finite = standardize_column(&xs, &mut out, &scaling);
            assert!(!all_finite, "infinity is refused, clipped or not");
            for (&x, z) in xs.iter().zip(&out) {
                assert_eq!(z.to_bits(), standardize(x, &scaling).1.to_bits(), "{x}");
            }
            // Unclipped, 1e300 overflows f32; clipped, it lands on the clip.
            assert_eq!(standardize_column(&xs[..1004], &mut out[..1004], &scaling), clip.is_some());
        }
    }

    #[test]
    fn the_smooth_clip_is_near_identity_for_small_values_and_bounded_for_large_ones() {
        for z in [0.0, 1e-3, -0.2] {
            assert!((smooth_clip(z, 3.0) - z).abs() <= z.abs() * 0.01, "{z}");
        }
        // z / sqrt(1 + (z / 3)^2) at z = 3 is 3 / sqrt(2).
        assert!((smooth_clip(3.0, 3.0) - 3.0 / 2f64.sqrt()).abs() < 1e-12);
        assert!((smooth_clip(-3.0, 3.0) + 3.0 / 2f64.sqrt()).abs() < 1e-12);
        for z in [1e6, 1e200, f64::MAX] {
            let clipped = smooth_clip(z, 3.0);
            assert!(clipped <= 3.0 && clipped > 2.999, "{z} -> {clipped}");
            assert_eq!(smooth_clip(-z, 3.0), -clipped);
        }
        let ordered: Vec<f64> = (-50..=50).map(|i| smooth_clip(f64::from(i) * 0.5, 3.0)).collect();
        assert!(ordered.windows(2).all(|w| w[0] < w[1]), "monotone");
        assert!(smooth_clip(f64::INFINITY, 3.0).is_infinite());
    }
}
