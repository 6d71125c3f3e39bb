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
