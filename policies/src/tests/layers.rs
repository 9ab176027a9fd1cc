//! `LayerSet::resolve`: which layer indices a set stands for in a model of L blocks
//! (0 = embedding output, l = output of block l).

use crate::LayerSet;

#[test]
fn list_is_sorted_deduplicated_and_bounded() {
    assert_eq!(
        LayerSet::List(vec![9, 3, 9, 0, 28]).resolve(28),
        Ok(vec![0, 3, 9, 28])
    );
    assert_eq!(LayerSet::List(vec![0]).resolve(0), Ok(vec![0]));
    let e = LayerSet::List(vec![3, 29, 40]).resolve(28).unwrap_err();
    assert!(e.contains("layer 29 "), "{e}");
    assert!(e.contains("0..=28"), "{e}");
    assert!(LayerSet::List(vec![]).resolve(28).is_err());
}

#[test]
fn every_counts_from_the_embedding_output() {
    assert_eq!(
        LayerSet::Every(5).resolve(28),
        Ok(vec![0, 5, 10, 15, 20, 25])
    );
    assert_eq!(
        LayerSet::Every(5).resolve(30),
        Ok(vec![0, 5, 10, 15, 20, 25, 30])
    );
    assert_eq!(LayerSet::Every(1).resolve(3), Ok(vec![0, 1, 2, 3]));
    assert_eq!(LayerSet::Every(40).resolve(28), Ok(vec![0]));
    assert_eq!(LayerSet::Every(3).resolve(0), Ok(vec![0]));
    assert!(LayerSet::Every(0).resolve(28).is_err());
}

#[test]
fn count_spreads_evenly_over_the_block_outputs() {
    // n = 1: the last block's output.
    assert_eq!(LayerSet::Count(1).resolve(28), Ok(vec![28]));
    assert_eq!(LayerSet::Count(1).resolve(1), Ok(vec![1]));
    // First block and last block.
    assert_eq!(LayerSet::Count(2).resolve(28), Ok(vec![1, 28]));
    // Exact steps: 27 / 3 = 9.
    assert_eq!(LayerSet::Count(4).resolve(28), Ok(vec![1, 10, 19, 28]));
    // 31 / 4 = 7.75: 0, 7.75, 15.5, 23.25, 31 → 0, 8, 16, 23, 31 (15.5 rounds up).
    assert_eq!(LayerSet::Count(5).resolve(32), Ok(vec![1, 9, 17, 24, 32]));
    // 27 / 2 = 13.5 rounds away from zero to 14.
    assert_eq!(LayerSet::Count(3).resolve(28), Ok(vec![1, 15, 28]));
    // 2.5 → 3 and 7.5 → 8 (not banker's rounding to 2 and 8).
    assert_eq!(LayerSet::Count(5).resolve(11), Ok(vec![1, 4, 6, 9, 11]));
    // n = L: every block output, no embedding output.
    assert_eq!(LayerSet::Count(6).resolve(6), Ok(vec![1, 2, 3, 4, 5, 6]));
}

#[test]
fn count_is_always_n_distinct_layers_from_1_to_l() {
    for l in 1..=80usize {
        for n in 1..=l as u32 {
            let got = LayerSet::Count(n).resolve(l).unwrap();
            assert_eq!(got.len(), n as usize, "n={n} L={l}: {got:?}");
            assert_eq!(*got.last().unwrap(), l, "n={n} L={l}: {got:?}");
            if n > 1 {
                assert_eq!(got[0], 1, "n={n} L={l}: {got:?}");
            }
            assert!(got.windows(2).all(|w| w[0] < w[1]), "n={n} L={l}: {got:?}");
            // Agrees with the float formula.
            if n > 1 {
                let want: Vec<usize> = (0..n)
                    .map(|i| {
                        1 + (f64::from(i) * (l - 1) as f64 / f64::from(n - 1)).round() as usize
                    })
                    .collect();
                assert_eq!(got, want, "n={n} L={l}");
            }
        }
    }
}

#[test]
fn count_beyond_the_model_is_an_error() {
    let e = LayerSet::Count(29).resolve(28).unwrap_err();
    assert!(e.contains("29") && e.contains("28"), "{e}");
    assert!(LayerSet::Count(1).resolve(0).is_err());
    assert!(LayerSet::Count(0).resolve(28).is_err());
}
