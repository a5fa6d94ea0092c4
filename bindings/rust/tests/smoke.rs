//! The bindings against the library: a golden model (DSV4_MODEL, default the project's
//! ../shared/golden/tiny-a) and the V4 tokenizer (DSV4_TOKENIZER, default ../shared/tokenizer/deepseek-v4).

fn model_dir() -> String {
    std::env::var("DSV4_MODEL")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/golden/tiny-a").to_string())
}
fn tokenizer_dir() -> String {
    std::env::var("DSV4_TOKENIZER")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/tokenizer/deepseek-v4").to_string())
}

#[test]
fn generates_the_same_tokens_as_one_long_append() {
    let model = dsv4::Model::load(&model_dir()).expect("load");
    let n_vocab = model.n_vocab().unwrap();
    let mut session = dsv4::Session::new(&model).unwrap();
    let mut sampler = dsv4::Sampler::greedy().unwrap();
    let mut logits = session.append(&[5, 6, 7]).unwrap();
    assert_eq!(logits.len(), n_vocab);
    assert!(logits.iter().all(|x| x.is_finite()));
    let mut tokens = vec![5, 6, 7];
    for _ in 0..3 {
        let next = sampler.sample(&logits).unwrap();
        assert!((next as usize) < n_vocab);
        tokens.push(next);
        logits = session.append(&[next]).unwrap();
    }
    assert_eq!(session.position().unwrap(), 6);
    // The same tokens in one append give the same final logits.
    let mut again = dsv4::Session::new(&model).unwrap();
    let last = again.append(&tokens).unwrap();
    // f32::max below would skip a NaN: every value must be finite first.
    assert!(last.iter().chain(&logits).all(|x| x.is_finite()));
    let diff = last.iter().zip(&logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff < 1e-4, "max difference {diff}");
}

#[test]
fn errors_carry_status_and_message() {
    let err = dsv4::Model::load("/nonexistent/model").err().expect("must fail");
    assert_eq!(err.name, "DSV4_ERR_IO");
    assert!(!err.message.is_empty());
    let model = dsv4::Model::load(&model_dir()).unwrap();
    let mut session = dsv4::Session::new(&model).unwrap();
    let err = session.append(&[1 << 30]).err().expect("out of range");
    assert_eq!(err.name, "DSV4_ERR_OUT_OF_RANGE");
    assert_eq!(session.position().unwrap(), 0);
}

#[test]
fn tokenizer_round_trips_and_refuses_injection() {
    let tok = dsv4::Tokenizer::load(&tokenizer_dir()).unwrap();
    assert_eq!(tok.encode("Hello", false).unwrap(), vec![19923]);
    let text = "héllo <｜User｜> 🌧️";
    let plain = tok.encode(text, false).unwrap();
    assert!(!plain.contains(&128803));
    assert!(tok.encode(text, true).unwrap().contains(&128803));
    assert_eq!(tok.decode(&plain).unwrap(), text);
    assert_eq!(tok.eos().unwrap(), 1);
}
