//! The trainer's pooling and U-Net against the shared crate's reference.

use nemascope_core::pooling::{gwp, Pooling};
use nemascope_train::pooling::pool;
use nemascope_train::unet::{UNet, UNetConfig};
use tch::nn::ModuleT;
use tch::{nn, Device, Kind, Tensor};

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap()
}

#[test]
fn tensor_pooling_matches_the_f32_reference() {
    tch::manual_seed(1);
    let maps = Tensor::rand([2, 3, 8, 8], (Kind::Float, Device::Cpu));
    let flat = to_vec(&maps);
    for p in [
        Pooling::Gap,
        Pooling::Gmp,
        Pooling::Gwp { r: 0.0 },
        Pooling::Gwp { r: 5.0 },
        Pooling::Gwp { r: 13.0 },
        Pooling::Gwp { r: 300.0 },
    ] {
        let got = to_vec(&pool(&maps, p));
        for (i, g) in got.iter().enumerate() {
            let want = p.pool(&flat[i * 64..(i + 1) * 64]).unwrap();
            assert!((g - want).abs() < 1e-5, "{p:?} map {i}: {g} vs {want}");
        }
    }
    assert!((gwp(&flat[..64], 0.0).unwrap() - to_vec(&pool(&maps, Pooling::Gap))[0]).abs() < 1e-6);
}

#[test]
fn gwp_gradient_is_finite_for_large_r() {
    let maps = Tensor::rand([1, 1, 16, 16], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let s = pool(&maps, Pooling::Gwp { r: 500.0 }).sum(Kind::Float);
    s.backward();
    let g = to_vec(&maps.grad());
    assert!(g.iter().all(|v| v.is_finite()));
}

#[test]
fn unet_gives_one_probability_map_per_class_at_input_size() {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = UNet::new(
        &vs.root(),
        UNetConfig {
            in_channels: 1,
            classes: 3,
            base: 4,
            depth: 3,
            separable: false,
        },
    );
    let y = net.forward_t(
        &Tensor::randn([2, 1, 32, 48], (Kind::Float, Device::Cpu)),
        false,
    );
    assert_eq!(y.size(), vec![2, 3, 32, 48]);
    let v = to_vec(&y);
    assert!(v.iter().all(|&p| p > 0.0 && p < 1.0));
}

#[test]
fn dice_loss_reference_values() {
    use nemascope_train::stages::dice_loss;
    let p = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]).reshape([1, 1, 2, 2]);
    let t = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0]).reshape([1, 1, 2, 2]);
    // 1 − (2·1 + 1)/(2 + 1 + 1) = 0.25
    assert!((dice_loss(&p, &t).double_value(&[]) - 0.25).abs() < 1e-6);
    assert!(dice_loss(&t, &t).double_value(&[]).abs() < 1e-6);
    let z = Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu));
    assert!(dice_loss(&z, &z).double_value(&[]).abs() < 1e-6);
}

#[test]
fn batch_dice_keeps_a_gradient_on_empty_tiles() {
    use nemascope_train::stages::{dice_loss, dice_loss_batch};
    // Tile 0 holds the class in one pixel; tile 1 lacks it and the
    // prediction is 1 everywhere there.
    let t = Tensor::from_slice(&[1.0f32, 0., 0., 0., 0., 0., 0., 0.]).reshape([2, 1, 2, 2]);
    let mut p = Tensor::from_slice(&[1.0f32, 0., 0., 0., 1., 1., 1., 1.])
        .reshape([2, 1, 2, 2])
        .set_requires_grad(true);
    // batch: 1 − (2·1 + 1)/(5 + 1 + 1) = 4/7
    let l = dice_loss_batch(&p, &t);
    assert!((l.double_value(&[]) - 4.0 / 7.0).abs() < 1e-6);
    l.backward();
    let g_batch = p.grad().get(1).sum(Kind::Float).double_value(&[]);
    p.zero_grad();
    // per tile: (0 + (1 − 1/5)) / 2 = 0.4
    let l = dice_loss(&p, &t);
    assert!((l.double_value(&[]) - 0.4).abs() < 1e-6);
    l.backward();
    let g_tile = p.grad().get(1).sum(Kind::Float).double_value(&[]);
    // both push the empty tile down; per tile the push is 1/(Σp+1)² per pixel
    assert!(g_tile > 0.0 && g_batch > 0.0);
    assert!((g_tile - 4.0 * 0.5 / 25.0).abs() < 1e-6, "{g_tile}");
}

#[test]
fn voting_turns_a_coarse_map_into_the_object_and_negatives_into_nothing() {
    use nemascope_core::imageio::stretched;
    use nemascope_core::{Mask, Plane};
    use nemascope_train::stages::{map_plane, masks_tensor, voted_masks, VoteParams};
    // A dark bar; the map is a coarse box around its left part.
    let truth = Mask::from_fn(64, 48, |x, y| {
        (10..50).contains(&x) && (20..26).contains(&y)
    });
    let img = truth.map(|&t| if t { 0.3f32 } else { 0.8 });
    let map = Tensor::from_slice(
        &Plane::from_fn(64, 48, |x, y| {
            if (6..30).contains(&x) && (16..30).contains(&y) {
                0.9f32
            } else {
                0.1
            }
        })
        .into_vec(),
    )
    .reshape([1, 1, 48, 64]);
    let map = map_plane(&map, 0, 0).unwrap();
    let img = stretched(&img);
    let masks: Vec<Vec<Mask>> = [true, false]
        .iter()
        .map(|&present| {
            let absent = [Mask::filled(64, 48, !present)];
            voted_masks(
                &img,
                std::slice::from_ref(&map),
                &absent,
                &VoteParams::default(),
            )
            .unwrap()
        })
        .collect();
    // Voting snaps the coarse box to the bar (plus the one-pixel halo of
    // blurred-edge superpixels around it): the whole bar is kept and the
    // Dice with the truth rises well above the raw thresholded map's.
    let raw = Mask::from_fn(64, 48, |x, y| (6..30).contains(&x) && (16..30).contains(&y));
    let dice = |m: &Mask| nemascope_core::metrics::dice(m, &truth).unwrap();
    let (d_raw, d_voted) = (dice(&raw), dice(&masks[0][0]));
    let kept = truth
        .data()
        .iter()
        .zip(masks[0][0].data())
        .filter(|(t, v)| **t && **v)
        .count();
    assert!(
        kept as f64 >= 0.95 * truth.count() as f64,
        "kept {kept} of {}",
        truth.count()
    );
    assert!(
        d_voted > d_raw + 0.1,
        "Dice raw {d_raw:.3}, voted {d_voted:.3}"
    );
    assert_eq!(masks[1][0].count(), 0);
    assert_eq!(masks_tensor(&masks).unwrap().size(), vec![2, 1, 48, 64]);
}
