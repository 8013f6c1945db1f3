use super::*;

#[test]
fn thinning_keeps_the_span_and_the_ends() {
    let items: Vec<usize> = (0..=10_000).collect();
    let t = thinned(&items, 4_096);
    assert!(t.len() <= 4_096, "{}", t.len());
    assert_eq!(t.first(), Some(&0));
    assert_eq!(t.last(), Some(&10_000));
    let stride = t[1] - t[0];
    assert!(t.windows(2).all(|w| w[1] - w[0] <= stride));
    assert_eq!(thinned(&items[..100], 4_096).len(), 100);
}

#[test]
fn long_histories_stay_bounded_in_memory() {
    let cfg = RunConfig::default();
    let w = Weights::zeros(&cfg.model);
    let mut ckpt = Checkpoint::new(cfg, w.clone());
    for epoch in 0..=20_000 {
        ckpt.push_snapshot(Snapshot {
            epoch,
            weights: w.clone(),
        });
        assert!(ckpt.snapshots.len() <= 2 * MAX_SAVED_SNAPSHOTS + 1);
    }
    assert_eq!(ckpt.snapshots.first().unwrap().epoch, 0);
    assert!(ckpt.snapshots.last().unwrap().epoch > 19_000);
}
