//! What the frame-budget benches share.

/// Prints a Markdown table of the frames' times by phase, in the order the phases first came.
pub fn print_phases(frames: &[(String, f32)]) {
    let mut phases: Vec<&str> = Vec::new();
    for (p, _) in frames {
        if !phases.contains(&p.as_str()) {
            phases.push(p);
        }
    }
    println!("\n| phase | frames | median ms | slowest ms |\n|---|---|---|---|");
    for p in phases {
        let mut ms: Vec<f32> = frames.iter().filter(|(q, _)| q == p).map(|f| f.1).collect();
        ms.sort_by(f32::total_cmp);
        println!(
            "| {p} | {} | {:.1} | {:.1} |",
            ms.len(),
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        );
    }
}
