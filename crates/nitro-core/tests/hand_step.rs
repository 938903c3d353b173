//! One MLP training step worked out by hand (algorithm.md §3–§5, §4.3).

use ndarray::arr2;
use nitro_core::{Hyper, Mlp, MlpConfig};

/// Model 2 → [2] → 2, batch of one sample x = [100, −60], label 0 (target [32, 0]).
///
/// Block forward (algorithm.md §3.1, §3.3, §3.4; SF = 2⁸·2 = 512):
///   W = [[300, 100], [−200, 50]]; z = x·Wᵀ = [30000−6000, −20000−3000] = [24000, −23000]
///   s = clip8(tdiv(z, 512)) = [46, −44]
///   NITRO-ReLU a=4, μ=36: h = [46 − 36, tdiv(−44, 4) − 36] = [10, −47]
/// Output (algorithm.md §4.2): W_o = [[100, 200], [300, −100]]; z_o = [1000−9400, 3000+4700]
///   = [−8400, 7700] → ŷ = [tdiv(−8400,512), tdiv(7700,512)] = [−16, 15]
///   δ = ŷ − y = [−48, 15]; loss = 48² + 15² = 2529; arg-max 1 ≠ 0 → not correct.
///   G_o = δᵀ·h = [[−480, 2256], [150, −705]]; IntegerSGD (§5, lr 512, amp 1, decay 100):
///   Δ = tdiv(G, 512) + tdiv(P, 100) = [[0+1, 4+2], [0+3, −1−1]] → W_o' = [[99, 194], [297, −98]]
/// Head (algorithm.md §4.1): W_h = [[500, −300], [−400, 200]]; z_h = [5000+14100, −4000−9400]
///   = [19100, −13400] → ŷ_h = [37, −26]; δ_h = [5, −26]; local loss 25 + 676 = 701; correct.
///   Input error with the old weights: δ_h·W_h = [2500+10400, −1500−5200] = [12900, −6700]
///   G_h = δ_hᵀ·h = [[50, −235], [−260, 1222]]
///   Δ = [[0+5, 0−3], [0−4, 2+2]] → W_h' = [[495, −297], [−396, 196]]
/// Activation backward (inverse slopes at s = [46, −44]: 1 and a = 4):
///   δ_act = [12900, tdiv(−6700, 4)] = [12900, −1675]
/// Forward layer: G = δ_actᵀ·x = [[1290000, −774000], [−167500, 100500]],
///   amp 640 → divisor 327680, no decay: Δ = [[3, −2], [0, 0]] → W' = [[297, 102], [−200, 50]]
///   (note tdiv(−774000, 327680) = −2, where floor division would give −3).
#[test]
fn one_step_by_hand() {
    let mut model = Mlp::new(MlpConfig::new(2, &[2], 2)).unwrap();
    model.blocks[0].fwd.weight = arr2(&[[300, 100], [-200, 50]]);
    model.blocks[0].head.weight = arr2(&[[500, -300], [-400, 200]]);
    model.out.weight = arr2(&[[100, 200], [300, -100]]);
    let hyper = Hyper {
        lr_inv: 512,
        lr_amp_factor: 640,
        fwd_decay_inv: 0,
        subnet_decay_inv: 100,
        ..Hyper::default()
    };
    let x = arr2(&[[100i8, -60]]);
    let before = model.predict_logits(x.view()).unwrap();
    assert_eq!(before, arr2(&[[-16i8, 15]]));
    let s = model.train_step(x.view(), &[0], &hyper).unwrap();
    assert_eq!((s.loss, s.correct, s.total), (2529, 0, 1));
    assert_eq!((s.blocks[0].loss, s.blocks[0].correct), (701, 1));
    assert_eq!(model.out.weight, arr2(&[[99, 194], [297, -98]]));
    assert_eq!(
        model.blocks[0].head.weight,
        arr2(&[[495, -297], [-396, 196]])
    );
    assert_eq!(model.blocks[0].fwd.weight, arr2(&[[297, 102], [-200, 50]]));
}
