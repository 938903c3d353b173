//! algorithm.md §3.4 activations (every input in [−127, 127], forward and backward, against oracles
//! written independently from the spec text) and algorithm.md §3.3 scaling.

use ndarray::{arr2, Array2};
use nitro_core::layers::{Activation, ActivationKind, Scaling};

fn tdiv(a: i64, b: i64) -> i64 {
    // Independent truncating division: magnitude floor-divided, sign restored.
    let q = a.abs() / b.abs();
    if (a < 0) != (b < 0) {
        -q
    } else {
        q
    }
}

const MU: [(u8, i64); 9] = [
    (3, 31),
    (4, 36),
    (5, 38),
    (7, 40),
    (8, 42),
    (10, 43),
    (15, 44),
    (16, 44),
    (20, 45),
];

fn oracle_fwd(kind: &str, a: i64, x: i64) -> i64 {
    match kind {
        "nitro" => {
            x.clamp(0, 127) + tdiv(x.clamp(-127, 0), a)
                - MU.iter().find(|m| m.0 as i64 == a).unwrap().1
        }
        "leaky" => x.clamp(0, 127) + tdiv(x.clamp(-127, 0), a),
        "relu" => x.clamp(0, 127),
        "tanh" => match x {
            127.. => 127,
            75..=126 => tdiv(x, 3) + 83,
            32..=74 => x + 32,
            -31..=31 => 2 * x,
            -74..=-32 => x - 32,
            -127..=-75 => tdiv(x, 3) - 83,
            _ => -127,
        },
        _ => unreachable!(),
    }
}

/// Inverse slope, 0 meaning ∞.
fn oracle_slope(kind: &str, a: i64, x: i64) -> i64 {
    match kind {
        "nitro" | "leaky" => match x {
            0..=126 => 1,
            -127..=-1 => a,
            _ => 0,
        },
        "relu" => i64::from(x > 0 && x <= 127),
        "tanh" => match x {
            127.. => 0,
            75..=126 => 8,
            32..=74 => 2,
            -31..=31 => 1,
            -74..=-32 => 2,
            -127..=-75 => 8,
            _ => 0,
        },
        _ => unreachable!(),
    }
}

fn kinds() -> Vec<(&'static str, i64, ActivationKind)> {
    let mut v = vec![
        ("relu", 0, ActivationKind::PocketRelu),
        ("tanh", 0, ActivationKind::PocketTanh),
    ];
    for (a, _) in MU {
        v.push(("nitro", i64::from(a), ActivationKind::NitroRelu { a }));
        v.push(("leaky", i64::from(a), ActivationKind::PocketLeakyRelu { a }));
    }
    v
}

#[test]
fn every_activation_at_every_input() {
    let deltas = [-100_000i32, -159, -7, -1, 0, 1, 3, 127, 99_999];
    for (name, a, kind) in kinds() {
        for x in -127i64..=127 {
            let y = i64::from(kind.forward_scalar(x as i8));
            assert_eq!(y, oracle_fwd(name, a, x), "{name} a={a} forward at {x}");
            for d in deltas {
                let s = oracle_slope(name, a, x);
                let want = if s == 0 { 0 } else { tdiv(i64::from(d), s) };
                assert_eq!(
                    i64::from(kind.backward_scalar(x as i8, d)),
                    want,
                    "{name} a={a} backward at {x}, δ={d}"
                );
            }
        }
    }
}

#[test]
fn nitro_relu_range_for_a4() {
    let k = ActivationKind::NitroRelu { a: 4 };
    let ys: Vec<i8> = (-127..=127).map(|x| k.forward_scalar(x)).collect();
    assert_eq!(*ys.iter().min().unwrap(), -67);
    assert_eq!(*ys.iter().max().unwrap(), 91);
    // x = 127 passes no error (algorithm.md §3.4).
    assert_eq!(k.backward_scalar(127, 1000), 0);
    assert_eq!(k.backward_scalar(-127, 1000), 250);
}

#[test]
fn unknown_slope_rejected() {
    assert!(Activation::new(ActivationKind::NitroRelu { a: 6 }).is_err());
    assert!(ActivationKind::from_name("nitro_relu", 9).is_err());
    assert!(ActivationKind::from_name("softmax", 4).is_err());
}

#[test]
fn bipolar_masks_features_and_nchw() {
    // 2-D: odd feature indices are negated before and after PocketReLU.
    let mut act = Activation::new(ActivationKind::BipolarPocketRelu).unwrap();
    let x = arr2(&[[5i8, 5, -5, -5]]);
    let y = act.forward(x, true);
    // f0: relu(5)=5; f1: -relu(-5)=0; f2: relu(-5)=0; f3: -relu(5)=-5
    assert_eq!(y, arr2(&[[5i8, 0, 0, -5]]));
    let d = act.backward(arr2(&[[10i32, 10, 10, 10]])).unwrap();
    // Error passes where the masked input is in (0, 127]: features 0 and 3.
    assert_eq!(d, arr2(&[[10, 0, 0, 10]]));
    // NCHW: −1 where i + j is odd.
    let act = Activation::new(ActivationKind::BipolarPocketLeakyRelu { a: 4 }).unwrap();
    let x = ndarray::Array4::from_elem((1, 1, 2, 2), 8i8);
    let y = act.infer(&x);
    // (0,0),(1,1): leaky(8)=8; (0,1),(1,0): −leaky(−8) = −tdiv(−8,4) = 2
    assert_eq!(y.into_raw_vec_and_offset().0, vec![8, 2, 2, 8]);
}

#[test]
fn scaling_divides_truncates_and_clips() {
    let s = Scaling::for_fan_in(2).unwrap();
    assert_eq!(s.factor, 512);
    let z: Array2<i64> = arr2(&[[511, 512, -1023, -1024, 1_000_000, -1_000_000]]);
    assert_eq!(s.forward(&z), arr2(&[[0i8, 1, -1, -2, 127, -127]]));
    assert!(Scaling::for_fan_in(0).is_err());
}
