//! Loads a model (argument or $DSV4_MODEL), generates a few tokens greedily and prints them.
//! cargo run --offline --example generate -- ../../../shared/golden/tiny-a

fn main() -> Result<(), dsv4::Error> {
    let dir = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DSV4_MODEL").ok())
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/golden/tiny-a").to_string());
    let model = dsv4::Model::load(&dir)?;
    let mut session = dsv4::Session::new(&model)?;
    let mut sampler = dsv4::Sampler::greedy()?;
    let mut logits = session.append(&[1, 2, 3, 4])?;
    let mut tokens = Vec::new();
    for _ in 0..8 {
        let next = sampler.sample(&logits)?;
        sampler.accept(next)?;
        tokens.push(next);
        logits = session.append(&[next])?;
    }
    println!("dsv4 {} generated: {:?}", dsv4::version(), tokens);
    Ok(())
}
