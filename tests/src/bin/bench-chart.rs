//! `bench-chart OUT.svg TITLE UNIT < rows`: the bar chart `scripts/bench.sh` draws for
//! README.md. Each input row is `label<TAB>value`; bars keep the input order, so the
//! direct baseline (first) is the yardstick the tunnel bars are read against.

use std::io::BufRead;

use plotters::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, title, unit] = args.as_slice() else {
        eprintln!("usage: bench-chart OUT.svg TITLE UNIT < label<TAB>value rows");
        std::process::exit(1);
    };
    let rows: Vec<(String, f64)> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let (label, value) = line.split_once('\t')?;
            Some((label.to_owned(), value.trim().parse().ok()?))
        })
        .collect();
    if rows.is_empty() {
        return Err("no rows".into());
    }
    let max = rows.iter().map(|(_, v)| *v).fold(0.0, f64::max) * 1.15;
    let height = 80 + 34 * u32::try_from(rows.len())?;
    let root = SVGBackend::new(out, (820, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let count = u32::try_from(rows.len())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..max, (0..count).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(unit.as_str())
        .y_labels(rows.len())
        .y_label_formatter(&|y| match y {
            SegmentValue::CenterOf(i) => rows
                .get(*i as usize)
                .map_or_else(String::new, |(label, _)| label.clone()),
            SegmentValue::Exact(_) | SegmentValue::Last => String::new(),
        })
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, (_, value))| {
        let i = u32::try_from(i).unwrap_or(0);
        let color = if i == 0 {
            RGBColor(120, 120, 120)
        } else {
            RGBColor(40, 110, 190)
        };
        let mut bar = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(i)),
                (*value, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        );
        bar.set_margin(5, 5, 0, 0);
        bar
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, (_, value))| {
        let i = u32::try_from(i).unwrap_or(0);
        Text::new(
            format!("{value:.2}"),
            (*value + max * 0.01, SegmentValue::CenterOf(i)),
            ("sans-serif", 13),
        )
    }))?;
    root.present()?;
    Ok(())
}
