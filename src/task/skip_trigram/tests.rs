use super::*;

#[test]
fn default_task_matches_notebook() {
    let task = SkipTrigramConfig::default();
    task.validate().unwrap();
    assert_eq!(task.vocab_size(), 11);
    assert_eq!(task.answer(3, 1), Some(2));
    assert_eq!(task.answer(4, 4), Some(9));
    let c = task.ceilings();
    assert!((c.best_acc - 0.545_454_5).abs() < 1e-6);
    assert!((c.bayes_ce - 1.198_948).abs() < 1e-5);
}

#[test]
fn generated_samples_follow_the_definition() {
    let task = SkipTrigramConfig::default();
    let data = task.train_set(7).unwrap();
    assert_eq!(data.len(), 100_000);
    for i in 0..data.len() {
        let s = data.sample(i);
        if data.is_signal[i] {
            assert_eq!(s[3], 0);
            assert!(task.noise_tokens.contains(s[1]));
            assert_eq!(Some(data.labels[i]), task.expected_answer(s));
        } else {
            assert!(s.iter().all(|&t| (5..=10).contains(&t)));
            assert!(data.labels[i] <= 10);
        }
        assert_eq!(task.is_signal(s), data.is_signal[i]);
    }
    let frac = data.signal_fraction();
    assert!((frac - 0.5).abs() < 0.01, "signal fraction {frac}");
    // a == b pairs are half as likely: labels 0, 4, 7, 9 come up half as often as 1.
    let (sig, noise) = data.label_histograms();
    let ratio = sig[0] as f64 / sig[1] as f64;
    assert!((ratio - 0.5).abs() < 0.05, "ratio {ratio}");
    assert_eq!(sig[10], 0);
    assert!(noise.iter().all(|&c| c > 4000));
}

#[test]
fn same_seed_same_data_and_streams_differ() {
    let task = SkipTrigramConfig::default();
    assert_eq!(task.train_set(3).unwrap(), task.train_set(3).unwrap());
    assert_ne!(task.train_set(3).unwrap(), task.train_set(4).unwrap());
    let val = task.val_set(3).unwrap();
    let train = task.train_set(3).unwrap();
    assert_ne!(&val.tokens[..40], &train.tokens[..40]);
}

#[test]
fn invalid_configs_are_rejected_with_reasons() {
    let mut t = SkipTrigramConfig {
        seq_len: 2,
        ..Default::default()
    };
    assert_eq!(t.validate(), Err(TaskError::SeqLenTooShort(2)));
    t = SkipTrigramConfig {
        noise_tokens: TokenRange::new(4, 10),
        ..Default::default()
    };
    assert!(matches!(t.validate(), Err(TaskError::Overlap(_))));
    t = SkipTrigramConfig::default();
    t.answer_map.pop();
    assert_eq!(t.validate(), Err(TaskError::MissingAnswer(4, 4)));
    t = SkipTrigramConfig {
        signal_prob: 1.5,
        ..Default::default()
    };
    assert_eq!(t.validate(), Err(TaskError::BadSignalProb(1.5)));
}

#[test]
fn random_sequences_are_of_the_requested_kind() {
    let task = SkipTrigramConfig::default();
    let mut rng = stream_rng(0, Stream::Analysis);
    for _ in 0..100 {
        let s = task.random_sequence(true, &mut rng);
        assert!(task.expected_answer(&s).is_some(), "{s:?}");
        let n = task.random_sequence(false, &mut rng);
        assert!(!task.is_signal(&n) && n.iter().all(|t| (5..=10).contains(t)));
    }
}

#[test]
fn exhaustive_signal_space_has_96_sequences() {
    let seqs = SkipTrigramConfig::default().all_signal_sequences();
    assert_eq!(seqs.len(), 96);
    assert_eq!(seqs[0], vec![1, 5, 1, 0]);
    assert_eq!(seqs[95], vec![4, 10, 4, 0]);
}
