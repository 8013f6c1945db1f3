use super::*;
use candle_core::{Device, Tensor};

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The error for `text` as a `.jsonl` file, as one line.
fn jsonl_error(text: &str, vocab: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir, "d.jsonl", text);
    let vocab = vocab.map(|v| write(&dir, "vocab.json", v));
    read_data(&data, vocab.as_deref())
        .expect_err("the file is malformed")
        .to_string()
}

#[test]
fn ids_score_every_next_token_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "d.jsonl",
        "{\"tokens\": [3, 1, 2]}\n\n{\"tokens\": [0, 4, 4], \"split\": \"val\"}\n",
    );
    let d = read_data(&path, None).unwrap();
    assert_eq!((d.len(), d.seq_len, d.d_vocab), (2, 3, 5));
    assert_eq!(d.tokens, [3, 1, 2, 0, 4, 4]);
    assert_eq!(d.targets, [1, 2, UNSCORED, 4, 4, UNSCORED]);
    assert_eq!(d.given_split, [None, Some(Split::Val)]);
    assert_eq!(d.vocab, None);
    assert_eq!(d.token_name(4), "4");
}

#[test]
fn masks_and_explicit_targets_say_what_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "d.jsonl",
        concat!(
            "{\"tokens\": [5, 3, 9, 3, 5], \"loss_mask\": [0, 0, 1, 1, 0]}\n",
            "{\"tokens\": [1, 2, 3, 4, 5], \"targets\": [null, 7, null, null, 0]}\n",
        ),
    );
    let d = read_data(&path, None).unwrap();
    assert_eq!(d.targets_of(0), [UNSCORED, UNSCORED, 3, 5, UNSCORED]);
    assert_eq!(d.targets_of(1), [UNSCORED, 7, UNSCORED, UNSCORED, 0]);
    assert_eq!(d.d_vocab, 10);
}

#[test]
fn token_names_build_a_vocabulary_or_follow_the_given_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "d.jsonl",
        "{\"tokens\": [\"b\", \"a\", \"|\", \"a\", \"b\"]}\n{\"tokens\": [\"c\", \"a\", \"|\", \"a\", \"c\"]}\n",
    );
    let built = read_data(&path, None).unwrap();
    assert_eq!(
        built.vocab.as_deref(),
        Some(&["b", "a", "|", "c"].map(String::from)[..])
    );
    assert_eq!(built.tokens, [0, 1, 2, 1, 0, 3, 1, 2, 1, 3]);
    assert_eq!(built.d_vocab, 4);
    assert_eq!(built.token_name(2), "|");
    let vocab = write(&dir, "vocab.json", "[\"|\", \"a\", \"b\", \"c\", \"d\"]");
    let given = read_data(&path, Some(&vocab)).unwrap();
    assert_eq!(given.tokens, [2, 1, 0, 1, 2, 3, 1, 0, 1, 3]);
    assert_eq!(given.d_vocab, 5);
    // Ids are checked against the vocabulary's size.
    let ids = write(&dir, "ids.jsonl", "{\"tokens\": [0, 4, 1]}\n");
    assert_eq!(read_data(&ids, Some(&vocab)).unwrap().d_vocab, 5);
}

#[test]
fn every_bad_line_names_the_file_line_and_field() {
    let cases: [(&str, Option<&str>, &str); 13] = [
        ("", None, "d.jsonl: the file holds no sequences"),
        ("\n  \n", None, "d.jsonl: the file holds no sequences"),
        (
            "{\"tokens\": [1, 2, 3]}\n{\"tokens\": [1, 2]}\n",
            None,
            "d.jsonl, line 2, \"tokens\": 2 tokens, but the sequences before have 3",
        ),
        (
            "{\"tokens\": [1, 2, 7]}\n",
            Some("[\"a\", \"b\", \"c\"]"),
            "d.jsonl, line 1, \"tokens\": token 7 is outside the vocabulary (ids 0 to 2)",
        ),
        (
            "{\"tokens\": [\"a\", \"z\"]}\n",
            Some("[\"a\", \"b\"]"),
            "d.jsonl, line 1, \"tokens\": the token \"z\" is not in the vocabulary",
        ),
        (
            "{\"tokens\": [1, 2, 3], \"loss_mask\": [1, 1]}\n",
            None,
            "d.jsonl, line 1, \"loss_mask\": has 2 entries for 3 tokens",
        ),
        (
            "{\"tokens\": [1, 2, 3], \"loss_mask\": [0, 0, 0]}\n",
            None,
            "d.jsonl, line 1: no position is scored",
        ),
        (
            "{\"tokens\": [1, 2, 3], \"loss_mask\": [0, 1, 1]}\n",
            None,
            "d.jsonl, line 1, \"loss_mask\": the last position is scored, but no token follows it",
        ),
        (
            "{\"tokens\": [1, 2, 3], \"loss_mask\": [0, 2, 0]}\n",
            None,
            "d.jsonl, line 1, \"loss_mask\": entry 1 is 2; it must be 0 or 1",
        ),
        (
            "{\"tokens\": [1, \"a\"]}\n",
            None,
            "d.jsonl, line 1, \"tokens\": mixes token names and ids",
        ),
        (
            "{\"tokens\": [1, 2], \"targets\": [2, null], \"loss_mask\": [1, 0]}\n",
            None,
            "d.jsonl, line 1: give loss_mask or targets, not both",
        ),
        (
            "{\"tokens\": [1, 2], \"mask\": [1, 0]}\n",
            None,
            "d.jsonl, line 1: unknown field `mask`",
        ),
        (
            "{\"tokens\": [1]}\n",
            None,
            "d.jsonl, line 1, \"tokens\": a sequence of 1 tokens; at least 2",
        ),
    ];
    for (text, vocab, want) in cases {
        let got = jsonl_error(text, vocab);
        assert!(got.contains(want), "{text:?}: {got}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad_utf8 = dir.path().join("d.jsonl");
    std::fs::write(&bad_utf8, b"{\"tokens\": [1, 2]}\n{\"tokens\": [\xff]}\n").unwrap();
    let e = read_data(&bad_utf8, None).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("not UTF-8"), "{e}");
}

#[test]
fn vocabularies_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let data = write(&dir, "d.jsonl", "{\"tokens\": [\"a\", \"b\"]}\n");
    for (text, want) in [
        ("[\"a\", \"b\", \"a\"]", "the token \"a\" is listed twice"),
        ("[]", "0 tokens"),
        ("{\"a\": 0}", "not a JSON list of strings"),
        ("[1, 2]", "not a JSON list of strings"),
    ] {
        let vocab = write(&dir, "vocab.json", text);
        let e = read_data(&data, Some(&vocab)).unwrap_err().to_string();
        assert!(e.contains("vocab.json") && e.contains(want), "{text}: {e}");
    }
}

#[test]
fn files_of_unknown_format_or_too_large_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write(&dir, "d.csv", "1,2,3\n");
    assert!(
        read_data(&csv, None)
            .unwrap_err()
            .message
            .contains("unknown data format \".csv\"")
    );
    // A sparse file past the limit: refused by its size, never read.
    let huge = dir.path().join("huge.jsonl");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(MAX_DATA_FILE_BYTES + 1)
        .unwrap();
    let e = read_data(&huge, None).unwrap_err();
    assert!(e.message.contains("data files of at most 1 GB"), "{e}");
    assert!(
        read_data(dir.path(), None)
            .unwrap_err()
            .message
            .contains("a folder")
    );
    let missing = dir.path().join("missing.jsonl");
    assert!(
        read_data(&missing, None)
            .unwrap_err()
            .message
            .contains("cannot read it")
    );
}

#[test]
fn numpy_arrays_read_with_an_optional_mask() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = Tensor::new(&[[1i64, 2, 3], [3, 2, 1]], &Device::Cpu).unwrap();
    let npy = dir.path().join("d.npy");
    tokens.write_npy(&npy).unwrap();
    let d = read_data(&npy, None).unwrap();
    assert_eq!((d.len(), d.seq_len, d.d_vocab), (2, 3, 4));
    assert_eq!(d.targets, [2, 3, UNSCORED, 2, 1, UNSCORED]);
    let mask = Tensor::new(&[[0u8, 1, 0], [1, 0, 0]], &Device::Cpu).unwrap();
    let npz = dir.path().join("d.npz");
    Tensor::write_npz(&[("tokens", &tokens), ("loss_mask", &mask)], &npz).unwrap();
    let d = read_data(&npz, None).unwrap();
    assert_eq!(d.targets, [UNSCORED, 3, UNSCORED, 2, UNSCORED, UNSCORED]);
}

#[test]
fn bad_numpy_arrays_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let write_npy = |name: &str, t: Tensor| {
        let path = dir.path().join(name);
        t.write_npy(&path).unwrap();
        path
    };
    let floats = write_npy("f.npy", Tensor::new(&[[1f32, 2.0]], &Device::Cpu).unwrap());
    assert!(
        read_data(&floats, None)
            .unwrap_err()
            .message
            .contains("must be integers")
    );
    let flat = write_npy("r.npy", Tensor::new(&[1i64, 2, 3], &Device::Cpu).unwrap());
    assert!(
        read_data(&flat, None)
            .unwrap_err()
            .message
            .contains("it must be [sequences, positions]")
    );
    let negative = write_npy("n.npy", Tensor::new(&[[1i64, -2]], &Device::Cpu).unwrap());
    let e = read_data(&negative, None).unwrap_err().to_string();
    assert!(
        e.contains("sequence 0, position 1: token -2 is outside"),
        "{e}"
    );
    let npz = dir.path().join("no-tokens.npz");
    let ids = Tensor::new(&[[1i64, 2]], &Device::Cpu).unwrap();
    Tensor::write_npz(&[("ids", &ids)], &npz).unwrap();
    assert!(
        read_data(&npz, None)
            .unwrap_err()
            .message
            .contains("no array named \"tokens\"")
    );
    let not_numpy = write(&dir, "x.npy", "not numpy");
    assert!(
        read_data(&not_numpy, None)
            .unwrap_err()
            .message
            .contains("not a NumPy file")
    );
}

#[test]
fn the_split_is_seeded_and_keeps_what_the_file_gives() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..200 {
        let split = match i {
            0 => ", \"split\": \"val\"",
            1 => ", \"split\": \"train\"",
            _ => "",
        };
        text.push_str(&format!("{{\"tokens\": [{}, 1]{split}}}\n", i % 7));
    }
    let d = read_data(&write(&dir, "d.jsonl", &text), None).unwrap();
    let (train, val) = d.split(0.25, 3);
    assert_eq!(train.len() + val.len(), 200);
    assert!(val.contains(&0) && train.contains(&1));
    assert!(
        (30..=70).contains(&val.len()),
        "{} validation sequences",
        val.len()
    );
    assert_eq!(d.split(0.25, 3), (train, val));
    assert_ne!(d.split(0.25, 4).1, d.split(0.25, 3).1);
    assert_eq!(d.split(0.0, 3).1, [0]);
}

#[test]
fn a_model_must_take_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = read_data(
        &write(&dir, "d.jsonl", "{\"tokens\": [1, 9, 2, 3]}\n"),
        None,
    )
    .unwrap();
    assert!(d.check_fits(10, 4).is_ok());
    assert!(d.check_fits(10, 3).unwrap_err().contains("at most 3"));
    assert!(d.check_fits(9, 4).unwrap_err().contains("10 token ids"));
}

#[test]
fn the_examples_read_back_with_only_the_answer_scored() {
    let dir = tempfile::tempdir().unwrap();
    let vocab = write(
        &dir,
        "vocab.json",
        &serde_json::to_string(&example_vocab()).unwrap(),
    );
    for example in [Example::Sort, Example::Reverse] {
        let text = example_jsonl(example, 4, 50, 7);
        assert_eq!(text, example_jsonl(example, 4, 50, 7), "seeded");
        let d = read_data(&write(&dir, "e.jsonl", &text), Some(&vocab)).unwrap();
        assert_eq!((d.len(), d.seq_len, d.d_vocab), (50, 9, 11));
        for i in 0..d.len() {
            let seq = d.sequence(i);
            let (input, rest) = seq.split_at(4);
            assert_eq!(rest[0], 10, "the separator");
            let mut want = input.to_vec();
            match example {
                Example::Sort => want.sort_unstable(),
                Example::Reverse => want.reverse(),
            }
            assert_eq!(&rest[1..], want.as_slice());
            // Scored: from the separator to the last but one, each predicting the next digit.
            let targets = d.targets_of(i);
            assert!(targets[..4].iter().all(|&t| t == UNSCORED));
            assert_eq!(&targets[4..8], want.as_slice());
            assert_eq!(targets[8], UNSCORED);
        }
    }
}

/// A typed sequence that begins a data sequence expects that sequence's target; the first such
/// sequence in the file wins, and only scored positions expect anything.
#[test]
fn a_typed_prefix_finds_its_target_in_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "d.jsonl",
        "{\"tokens\": [5, 1, 2, 3], \"loss_mask\": [0, 1, 1, 0]}\n\
         {\"tokens\": [0, 4, 4, 1], \"loss_mask\": [1, 1, 1, 0]}\n\
         {\"tokens\": [5, 1, 7, 3], \"loss_mask\": [0, 1, 1, 0]}\n",
    );
    let d = read_data(&path, None).unwrap();
    assert_eq!(d.find_prefix(&[5, 1]), Some((0, 2)));
    assert_eq!(d.find_prefix(&[5, 1, 7]), Some((2, 3)));
    assert_eq!(d.find_prefix(&[0]), Some((1, 4)));
    assert_eq!(
        d.find_prefix(&[5]),
        None,
        "position 0 of those is not scored"
    );
    assert_eq!(d.find_prefix(&[6]), None);
    assert_eq!(d.find_prefix(&[]), None);
    assert_eq!(
        d.find_prefix(&[5, 1, 2, 3, 0]),
        None,
        "longer than the data"
    );
}

/// A data-file task in a config: named by path (resolved against the config's folder and
/// read, with the vocabulary beside it), written back with its SHA-256, which a changed file
/// then fails.
#[test]
fn a_sequences_task_reads_its_file_and_remembers_it() {
    use crate::task::TaskConfig;
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "vocab.json", "[\"x\", \"y\", \"|\"]");
    let data = write(&dir, "d.jsonl", "{\"tokens\": [\"x\", \"|\", \"y\"]}\n");
    let mut task: TaskConfig =
        serde_json::from_str(r#"{"kind": "sequences", "path": "d.jsonl", "val_frac": 0.5}"#)
            .unwrap();
    assert!(
        task.validate()
            .unwrap_err()
            .to_string()
            .contains("not read yet")
    );
    task.load_data(dir.path()).unwrap();
    task.validate().unwrap();
    assert_eq!((task.vocab_size(), task.seq_len()), (3, 3));
    assert_eq!(task.vocab_names().unwrap(), ["x", "y", "|"]);
    assert_eq!(task.expected_next(&[0, 2]), Some(1));
    let text = serde_json::to_string(&task).unwrap();
    assert!(text.contains(&format!("\"sha256\":\"{}\"", file_sha256(&data).unwrap())));
    let mut again: TaskConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(again, task);
    std::fs::write(&data, "{\"tokens\": [\"y\", \"|\", \"x\"]}\n").unwrap();
    let err = again.load_data(Path::new("/")).unwrap_err().to_string();
    assert!(err.contains("changed since the model was saved"), "{err}");
    assert!(
        again.sequence_data().is_none(),
        "a refused file changes nothing"
    );
    for bad in [
        r#"{"kind": "sequences"}"#,
        r#"{"kind": "sequences", "path": "d.jsonl", "val_frac": 1.0}"#,
        r#"{"kind": "sequences", "path": "d.jsonl", "example": {"name": "sort", "digits": 5, "samples": 10, "seed": 0}}"#,
    ] {
        let mut task: TaskConfig = serde_json::from_str(bad).unwrap();
        assert!(task.load_data(dir.path()).is_err(), "{bad}");
    }
}
